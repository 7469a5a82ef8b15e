"""The audit trail over real HTTP on the running local stack: what key A does shows up in A's trail,
in order, with A's key id and its source IP; key B sees none of it; the CLI prints the same; the
daily export (the real handler, invoked through the emulated Lambda service) writes it to S3."""

from __future__ import annotations

import json
import re
import uuid

from typer.testing import CliRunner

from talkstack.cli import app
from tests.integration.test_api import SAMPLES, Api, error_of

runner = CliRunner()


def key_id(key: str) -> str:
    return re.fullmatch(r"tsk_([a-z0-9]{12})_\w+", key).group(1)


def test_the_trail_shows_a_runs_actions_in_order_and_only_to_their_key(pipeline):
    key_a, key_b = pipeline.api_key("pro", "audit-a"), pipeline.api_key("pro", "audit-b")
    a, b = Api(pipeline.api_url, key_a), Api(pipeline.api_url, key_b)
    b.upload(SAMPLES / "portrait.png", "image/png")  # B's own doings stay in B's trail

    image = a.upload(SAMPLES / "portrait.png", "image/png")
    audio = a.upload(SAMPLES / "speech.wav", "audio/wav")
    body = {"inputs": {"image": image, "audio": audio}}
    done = a.post("/v1/avatar/generate", json=body).json()["job_id"]
    pipeline.wait(done)
    job = a.get(f"/v1/jobs/{done}").json()  # completed: download URLs are issued
    assert job["status"] == "completed" and job["result"]["outputs"][0]["url"]
    other = a.post("/v1/avatar/generate", json=body).json()["job_id"]
    cancelled = a.post(f"/v1/jobs/{other}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text

    trail = a.get("/v1/audit", params={"order": "oldest"})
    assert trail.status_code == 200, trail.text
    entries = trail.json()["entries"]
    assert [(e["action"], e["object"]["id"]) for e in entries] == [
        ("key.created", key_id(key_a)),
        ("upload.created", image),
        ("upload.created", audio),
        ("job.submitted", done),
        ("output.url_issued", done),
        ("job.submitted", other),
        ("job.cancelled", other),
    ]
    assert {e["key_id"] for e in entries} == {key_id(key_a)}
    assert entries[0]["source_ip"] == "cli"  # `talkstack keys create` (the stack's create_api_key)
    assert {e["source_ip"] for e in entries[1:]} == {"127.0.0.1"}  # the local API Gateway's peer
    assert all(e["request_id"] for e in entries[1:]) and len({e["request_id"] for e in entries[1:]}) == 6
    times = [e["time"] for e in entries]
    assert times == sorted(times)
    newest = a.get("/v1/audit").json()["entries"]
    assert [e["entry_id"] for e in newest] == [e["entry_id"] for e in entries][::-1]

    # filters and pages
    submitted = a.get("/v1/audit", params={"action": "job.submitted,job.cancelled", "order": "oldest"})
    assert [e["action"] for e in submitted.json()["entries"]] == [
        "job.submitted",
        "job.submitted",
        "job.cancelled",
    ]
    window = a.get("/v1/audit", params={"start": times[3], "end": times[5], "order": "oldest"})
    assert [e["action"] for e in window.json()["entries"]] == ["job.submitted", "output.url_issued"]
    first = a.get("/v1/audit", params={"limit": 4, "order": "oldest"}).json()
    rest = a.get("/v1/audit", params={"limit": 4, "order": "oldest", "cursor": first["next_cursor"]}).json()
    assert [e["entry_id"] for e in first["entries"] + rest["entries"]] == [e["entry_id"] for e in entries]
    assert "next_cursor" not in rest or rest["next_cursor"] is None

    # B: none of A's entries, and A's cursor does not open A's trail to B
    theirs = b.get("/v1/audit").json()["entries"]
    assert [e["action"] for e in theirs] == ["upload.created", "key.created"]
    assert {e["key_id"] for e in theirs} == {key_id(key_b)}
    stolen = b.get("/v1/audit", params={"limit": 4, "cursor": first["next_cursor"]})
    assert stolen.status_code == 400 and error_of(stolen)["code"] == "INVALID_REQUEST"
    unknown = a.get("/v1/audit", params={"action": "job.exploded"})
    assert unknown.status_code == 400 and "job.exploded" in error_of(unknown)["message"]
    assert Api(pipeline.api_url, None).get("/v1/audit").status_code == 401

    # the CLI prints the same: the operator's view from the table, the tenant's through the API
    stack = ["--port", str(pipeline.r.port), "--stack", pipeline.r.stack]
    operator = runner.invoke(app, ["audit", key_id(key_a), "--order", "oldest", "--json", *stack])
    assert operator.exit_code == 0, operator.output
    assert [json.loads(line) for line in operator.output.splitlines()] == entries
    tenant = runner.invoke(
        app, ["api", "audit", "--order", "oldest", "--json", "--url", pipeline.api_url, "--key", key_a]
    )
    assert tenant.exit_code == 0, tenant.output
    assert [json.loads(line) for line in tenant.output.splitlines()] == entries
    table = runner.invoke(
        app, ["api", "audit", "--url", pipeline.api_url, "--key", key_a], env={"COLUMNS": "240"}
    )
    assert table.exit_code == 0 and "output.url_issued" in table.output and "127.0.0.1" in table.output

    # revoking the key through the CLI is the last entry of its trail
    revoked = runner.invoke(app, ["keys", "revoke", key_id(key_a), *stack])
    assert revoked.exit_code == 0, revoked.output
    assert a.get("/v1/audit").status_code == 401
    last = runner.invoke(app, ["audit", key_id(key_a), "--limit", "1", "--json", *stack])
    assert json.loads(last.output.splitlines()[0])["action"] == "key.revoked"


def test_the_daily_export_writes_the_days_entries_to_s3(pipeline):
    key = pipeline.api_key("pro", "audit-export")
    upload = Api(pipeline.api_url, key).upload(SAMPLES / "portrait.png", "image/png")
    trail = Api(pipeline.api_url, key).get("/v1/audit", params={"order": "oldest"}).json()["entries"]
    day = trail[-1]["time"][:10]

    lam = pipeline.stack.client("lambda")
    answer = lam.invoke(
        FunctionName=pipeline.r.function_name("audit_export"), Payload=json.dumps({"day": day}).encode()
    )
    assert "FunctionError" not in answer, answer["Payload"].read()
    result = json.loads(answer["Payload"].read())
    assert result["key"] == f"audit/{day[:4]}/{day[5:7]}/{day[8:]}.jsonl"
    assert result["bucket"] == pipeline.r.output_bucket  # no audit bucket set locally: the output one
    body = pipeline.s3.get_object(Bucket=result["bucket"], Key=result["key"])["Body"].read().decode()
    lines = [json.loads(line) for line in body.splitlines()]
    assert len(lines) == result["entries"] >= 2
    exported = {line["entry_id"]: line for line in lines}
    for entry in trail:
        assert exported[entry["entry_id"]] == entry  # the same entries, as stored
    assert [line["time"] for line in lines] == sorted(line["time"] for line in lines)
    assert any(line["object"]["id"] == upload for line in lines)


def test_an_s3_drop_job_is_logged_under_its_folder(pipeline):
    name = f"audit-drop-{uuid.uuid4().hex[:8]}"
    dropped = pipeline.drop({"task": "voice", "inputs": {"text": "Logged."}}, {}, name)
    pipeline.wait(dropped.job_id)
    stack = ["--port", str(pipeline.r.port), "--stack", pipeline.r.stack]
    shown = runner.invoke(app, ["audit", f"drop:{name}", "--json", *stack])
    assert shown.exit_code == 0, shown.output
    (entry,) = [json.loads(line) for line in shown.output.splitlines()]
    assert (entry["action"], entry["object"], entry["source_ip"]) == (
        "job.submitted",
        {"type": "job", "id": dropped.job_id},
        "pipeline",
    )


def test_files_sent_inline_are_logged_as_uploads_of_the_job(pipeline):
    key = pipeline.api_key("pro", "audit-multipart")
    api = Api(pipeline.api_url, key)
    files = {
        "image": ("portrait.png", (SAMPLES / "portrait.png").read_bytes(), "image/png"),
        "audio": ("speech.wav", (SAMPLES / "speech.wav").read_bytes(), "audio/wav"),
    }
    answer = api.post("/v1/avatar/generate", data={"request": "{}"}, files=files)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    api.post(f"/v1/jobs/{job_id}/cancel")  # not needed here: spare the workers
    entries = api.get("/v1/audit", params={"order": "oldest"}).json()["entries"]
    assert [e["action"] for e in entries] == [
        "key.created",
        "upload.created",
        "upload.created",
        "job.submitted",
        "job.cancelled",
    ]
    assert {e["object"]["id"] for e in entries[1:3]} == {v for v in _job_inputs(pipeline, job_id)}
    assert len({e["request_id"] for e in entries[1:4]}) == 1  # one request did all three


def _job_inputs(pipeline, job_id: str) -> set[str]:
    """The upload ids behind a job's media (each object's key has the id as one of its folders)."""
    record = pipeline.store.get(job_id)
    assert record is not None and record.request is not None
    refs = record.request.media_inputs().values()
    return {next(part for part in ref.key.split("/") if part.startswith("upl_")) for ref in refs}


def test_webhook_endpoint_changes_are_in_the_trail_without_secrets_or_url_tokens(pipeline):
    key = pipeline.api_key("pro", "audit-webhooks")
    a = Api(pipeline.api_url, key)
    url = f"{pipeline.hooks.url}?token=s3cr3t-token"
    created = a.post("/v1/webhooks", json={"url": url, "events": ["job.completed"]})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert a.post(f"/v1/webhooks/{endpoint['id']}/rotate").status_code == 200
    assert a.post("/v1/webhooks/secret/rotate").status_code == 200
    assert a.get("/v1/webhooks/secret").status_code == 200
    assert a.http.delete(f"/v1/webhooks/{endpoint['id']}", headers=a.headers).status_code == 204

    actions = "webhook.created,webhook.rotated,webhook.secret_read,webhook.deleted"
    entries = a.get("/v1/audit", params={"order": "oldest", "action": actions}).json()["entries"]
    assert [(e["action"], e["object"]["id"]) for e in entries] == [
        ("webhook.created", endpoint["id"]),
        ("webhook.rotated", endpoint["id"]),
        ("webhook.rotated", "key-secret"),
        ("webhook.secret_read", "key-secret"),
        ("webhook.deleted", endpoint["id"]),
    ]
    text = json.dumps(entries)
    assert "s3cr3t-token" not in text and "whsec_" not in text
    assert entries[0]["details"]["url"] == f"{pipeline.hooks.url}?redacted"
