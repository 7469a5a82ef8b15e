"""Templates, previews and bundled template media over real HTTP: the local API Gateway in front of
the `api` handler, the emulated S3 and the real state machine behind it; the Python client and
`talkstack api templates …` against the same stack. The bundled templates are talkstack.templates'
real ones. What a client of the deployed API would see."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from typer.testing import CliRunner

import talkstack.templates as templates
from talkstack.cli import app
from talkstack.client import ApiError, TalkstackClient
from talkstack.errors import ErrorCode
from talkstack.local.resources import repo_root
from talkstack.pipeline.bundled_assets import BUNDLED_PREFIX, BundledAssets, bundled_key
from tests.integration.test_api import Api, error_of

SAMPLES = repo_root() / "talkstack" / "assets" / "samples"
SOCIAL = "social-ad"
runner = CliRunner()


def key_id(key: str) -> str:
    return key.split("_")[1]


def own_document(template_id: str) -> dict:
    data = json.loads(templates.bundled_templates()[SOCIAL].model_dump_json())
    return {**data, "id": template_id, "name": "Our launch ad"}


def test_templates_crud_generate_preview_and_render_over_http(pipeline):
    key_a, key_b = pipeline.api_key("pro", "templates-a"), pipeline.api_key("pro", "templates-b")
    a, b = Api(pipeline.api_url, key_a), Api(pipeline.api_url, key_b)

    listed = a.get("/v1/templates")
    assert listed.status_code == 200, listed.text
    assert {t["id"] for t in listed.json()["templates"]} == set(templates.bundled_templates())
    shown = a.get(f"/v1/templates/{SOCIAL}").json()
    assert shown["source"] == "bundled" and shown["template"]["variables"]["script"]["required"] is True

    # A key's own template: stored, listed, shown; another key gets the answer a missing id gets.
    put = a.http.put("/v1/templates/launch-ad", headers=a.headers, json=own_document("launch-ad"))
    assert put.status_code == 201, put.text
    assert (
        a.http.put("/v1/templates/launch-ad", headers=a.headers, json=own_document("launch-ad")).status_code
        == 200
    )
    assert "launch-ad" in {t["id"] for t in a.get("/v1/templates").json()["templates"]}
    assert pipeline.keys(pipeline.r.input_bucket, f"templates/{key_id(key_a)}/").keys() == {
        f"templates/{key_id(key_a)}/launch-ad.json"
    }
    foreign, missing = b.get("/v1/templates/launch-ad"), b.get("/v1/templates/launch-ae")
    assert foreign.status_code == missing.status_code == 404
    assert error_of(foreign)["message"].replace("launch-ad", "X") == error_of(missing)["message"].replace(
        "launch-ae", "X"
    )
    assert b.post("/v1/templates/launch-ad/generate", json={"variables": {}}).status_code == 404
    assert b.http.delete("/v1/templates/launch-ad", headers=b.headers).status_code == 404
    clash = a.http.put(f"/v1/templates/{SOCIAL}", headers=a.headers, json=own_document(SOCIAL))
    assert (clash.status_code, error_of(clash)["code"]) == (409, "CONFLICT")
    bad = a.http.put("/v1/templates/broken", headers=a.headers, json={**own_document("broken"), "version": 0})
    assert (bad.status_code, error_of(bad)["code"]) == (422, "TEMPLATE_INVALID")

    # Every variable problem at once, with B's real upload named by A: not found, as a missing one is.
    upload_b = b.upload(SAMPLES / "portrait.png", "image/png")
    refused = a.post(
        "/v1/templates/launch-ad/generate",
        json={"variables": {"script": "Hi.", "nope": 1, "brand_colour": "red", "presenter": upload_b}},
    )
    assert refused.status_code == 422, refused.text
    error = error_of(refused)
    assert error["code"] == "TEMPLATE_VARIABLES_INVALID"
    assert {(p["variable"], p["code"]) for p in error["details"]["problems"]} >= {
        ("headline", "missing"),
        ("nope", "unknown"),
        ("brand_colour", "wrong_type"),
        ("presenter", "asset_not_found"),
    }

    # A preview from the example variables and A's own photo (an upload id): a composition job, with
    # its template named, that starts.
    upload_a = a.upload(SAMPLES / "portrait.png", "image/png")
    example = {**templates.bundled_templates()[SOCIAL].example, "presenter": upload_a}
    accepted = a.post(
        f"/v1/templates/{SOCIAL}/generate",
        json={"variables": example, "preview": True},
        headers={"Idempotency-Key": "preview-1"},
    )
    assert accepted.status_code == 202, accepted.text
    preview_id = accepted.json()["job_id"]
    assert accepted.json()["task"] == "composition"
    again = a.post(
        f"/v1/templates/{SOCIAL}/generate",
        json={"variables": example, "preview": True},
        headers={"Idempotency-Key": "preview-1"},
    )
    assert again.json()["job_id"] == preview_id and again.headers.get("Idempotent-Replayed") == "true"
    record = pipeline.store.get(preview_id)
    assert record is not None and record.request.preview and record.request.template.id == SOCIAL
    assert record.request.template.variables == example  # as the caller gave them
    refs = record.request.referenced_media()
    (photo,) = [r for path, r in refs.items() if path.endswith("inputs.image")]
    assert photo.key.startswith(f"uploads/{key_id(key_a)}/{upload_a}/")
    others = [r for r in refs.values() if r is not photo]
    assert others and all(r.key.startswith(BUNDLED_PREFIX) for r in others)  # background, music
    assert pipeline.executions(preview_id)  # the state machine was started

    # Its full render: a new job with the same scenes, preview off. Another key's preview is not found.
    assert b.post(f"/v1/jobs/{preview_id}/render").status_code == 404
    full = a.post(f"/v1/jobs/{preview_id}/render")
    assert full.status_code == 202, full.text
    full_id = full.json()["job_id"]
    assert full_id != preview_id
    full_record = pipeline.store.get(full_id)
    assert full_record is not None and not full_record.request.preview
    assert full_record.request.scenes == record.request.scenes
    not_a_preview = a.post(f"/v1/jobs/{full_id}/render")
    assert (not_a_preview.status_code, error_of(not_a_preview)["code"]) == (409, "CONFLICT")
    for job_id in (preview_id, full_id):
        a.post(f"/v1/jobs/{job_id}/cancel")
        pipeline.stack.wait_for_execution(job_id)

    assert a.http.delete("/v1/templates/launch-ad", headers=a.headers).status_code == 204
    assert a.get("/v1/templates/launch-ad").status_code == 404


def test_every_key_reads_the_bundled_media_and_nothing_else_beside_them(pipeline):
    key_a, key_b = pipeline.api_key("pro", "assets-a"), pipeline.api_key("pro", "assets-b")
    a = Api(pipeline.api_url, key_a)
    bucket = pipeline.r.input_bucket
    portrait = BundledAssets(pipeline.s3, bucket).ensure(["samples/portrait.png"], templates.asset_path)
    assert portrait["samples/portrait.png"].key == bundled_key(SAMPLES / "portrait.png")
    audio = a.upload(SAMPLES / "speech.wav", "audio/wav")

    def avatar(image: str) -> httpx.Response:
        return a.post("/v1/avatar/generate", json={"inputs": {"image": image, "audio": audio}})

    # B's upload and B's template, addressed through the bundled folder or directly: not found.
    upload_b = Api(pipeline.api_url, key_b).upload(SAMPLES / "portrait.png", "image/png")
    (b_key,) = pipeline.keys(bucket, f"uploads/{key_id(key_b)}/{upload_b}/")
    pipeline.s3.put_object(Bucket=bucket, Key=f"templates/{key_id(key_b)}/secret.json", Body=b"{}")
    pipeline.s3.put_object(
        Bucket=bucket, Key="assets/other/portrait.png", Body=(SAMPLES / "portrait.png").read_bytes()
    )
    digest = bundled_key(SAMPLES / "portrait.png").split("/")[2]
    for key in (f"{BUNDLED_PREFIX}{digest}/../../{b_key}", f"{BUNDLED_PREFIX}{digest}/x/../../../{b_key}"):
        answer = avatar(f"s3://{bucket}/{key}")  # a path trick is no reference at all
        assert (answer.status_code, error_of(answer)["code"]) == (400, "INVALID_REQUEST"), answer.text
    for key in (
        f"{BUNDLED_PREFIX}{digest}/portrait.png/{b_key}",  # deeper than a bundled file
        f"{BUNDLED_PREFIX}{b_key}",
        f"templates/{key_id(key_b)}/secret.json",
        "assets/other/portrait.png",
        b_key,
    ):
        answer = avatar(f"s3://{bucket}/{key}")
        assert answer.status_code == 404, (key, answer.text)
        assert error_of(answer)["code"] == "INPUT_NOT_FOUND"

    # The bundled portrait itself: every key may use it.
    accepted = avatar(str(portrait["samples/portrait.png"]))
    assert accepted.status_code == 202, accepted.text
    a.post(f"/v1/jobs/{accepted.json()['job_id']}/cancel")
    pipeline.stack.wait_for_execution(accepted.json()["job_id"])


def test_client_and_cli_list_show_and_refuse_bad_variables(pipeline, tmp_path):
    key = pipeline.api_key("pro", "templates-cli")
    env = {"TALKSTACK_API_URL": pipeline.api_url, "TALKSTACK_API_KEY": key}
    with TalkstackClient(pipeline.api_url, key, timeout=60) as client:
        assert {t.id for t in client.list_templates().templates} == set(templates.bundled_templates())
        assert client.get_template(SOCIAL).template["id"] == SOCIAL
        view = client.put_template(own_document("cli-ad"))
        assert view.source == "own"
        with pytest.raises(ApiError) as caught:
            client.generate_from_template("cli-ad", {"nope": "x"})
        assert caught.value.code == ErrorCode.TEMPLATE_VARIABLES_INVALID
        assert {p["variable"] for p in caught.value.details["problems"]} >= {"nope", "headline", "script"}
        client.delete_template("cli-ad")

    listed = runner.invoke(app, ["api", "templates", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert SOCIAL in {t["id"] for t in json.loads(listed.stdout)["templates"]}
    shown = runner.invoke(app, ["api", "templates", "show", SOCIAL], env=env)
    assert shown.exit_code == 0 and "headline" in shown.output
    bad = runner.invoke(
        app, ["api", "templates", "generate", SOCIAL, "--var", "nope=1", "--no-wait"], env=env
    )
    assert bad.exit_code == 2, bad.output
    assert "TEMPLATE_VARIABLES_INVALID" in bad.output
    assert re.search(r"nope: \[unknown\]", bad.output) and re.search(r"headline: \[missing\]", bad.output)

    # A local file for a media variable is uploaded first; the preview starts and is followed no further.
    script = templates.bundled_templates()[SOCIAL].example["script"]
    started = runner.invoke(
        app,
        [
            *("api", "templates", "generate", SOCIAL, "--preview", "--no-wait"),
            *("--var", "headline=Hello", "--var", f"script={script}"),
            *("--var", f"presenter={SAMPLES / 'portrait.png'}"),
        ],
        env=env,
    )
    assert started.exit_code == 0, started.output
    assert f"uploading {SAMPLES / 'portrait.png'}" in started.output
    job_id = re.search(r"submitted (composition-\S+)", started.output).group(1)
    assert f"talkstack api render {job_id}" in started.output
    record = pipeline.store.get(job_id)
    assert record.request.preview and record.request.template.variables["presenter"].startswith("upl_")
    assert runner.invoke(app, ["api", "cancel", job_id], env=env).exit_code == 0
    pipeline.stack.wait_for_execution(job_id)
