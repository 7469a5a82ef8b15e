"""Deletion on request over real HTTP against the local stack (real state machine, handlers, workers):
after `DELETE /v1/jobs/{id}` or `DELETE /v1/data`, listing every bucket and the table finds nothing of
the job (or the key) but audit entries, and another key's job is untouched."""

from __future__ import annotations

import time

from talkstack.local.resources import repo_root
from tests.integration.test_api import Api

SAMPLES = repo_root() / "talkstack" / "assets" / "samples"


def everything(pipeline) -> list[str]:
    """Every object in every bucket of the stack and every item of its table (tests may Scan)."""
    r = pipeline.r
    found = []
    for bucket in (r.input_bucket, r.output_bucket, r.work_bucket):
        for page in pipeline.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            found += [f"{bucket}/{o['Key']}" for o in page.get("Contents", [])]
    ddb = pipeline.store.ddb
    for page in ddb.get_paginator("scan").paginate(TableName=r.jobs_table):
        found += [f"{i['pk']['S']}|{i['sk']['S']}|{i}" for i in page["Items"]]
    return found


def left_of(pipeline, *needles: str) -> list[str]:
    """What mentions any of `needles`, audit entries aside."""
    return [t for t in everything(pipeline) if any(n in t for n in needles) and not t.startswith("AUDIT")]


def voice_job(api: Api, text: str) -> tuple[str, str]:
    """A finished voice clone of an uploaded reference voice: (job id, upload id)."""
    voice = api.upload(SAMPLES / "speech.wav", "audio/wav")
    accepted = api.post("/v1/voice/clone", json={"inputs": {"text": text, "reference_voice": voice}})
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    assert api.wait(job_id)["status"] == "completed"
    return job_id, voice


def delete(api: Api, path: str):
    """DELETE, waiting out a 409 while the job's execution sends its last notification."""
    for _ in range(50):
        answer = api.http.delete(path, headers=api.headers)
        if answer.status_code != 409:
            return answer
        time.sleep(float(answer.headers.get("Retry-After", "1")))
    raise AssertionError(f"{path}: still 409")


def test_deleting_a_job_leaves_nothing_of_it_but_its_audit_entry(pipeline):
    a = Api(pipeline.api_url, pipeline.api_key("pro", "deleter a"))
    b = Api(pipeline.api_url, pipeline.api_key("pro", "bystander b"))
    job, upload = voice_job(a, "Please forget me.")
    b_job, b_upload = voice_job(b, "Keep me.")
    assert left_of(pipeline, job, upload)  # there was something to delete: inputs, outputs, records
    b_before = left_of(pipeline, b_job, b_upload)

    answer = delete(a, f"/v1/jobs/{job}")

    assert answer.status_code == 200, answer.text
    receipt = answer.json()
    assert receipt["job_id"] == job and receipt["counts"]["outputs"] >= 2  # audio + result.json
    assert receipt["counts"]["uploads"] == 1 and receipt["counts"]["table_items"] > 0
    assert left_of(pipeline, job, upload) == []
    assert left_of(pipeline, b_job, b_upload) == b_before
    audit = a.get("/v1/audit", params={"action": "job.deleted"}).json()["entries"]
    assert [e["object"]["id"] for e in audit] == [job]
    # B cannot delete A's job, nor A delete it twice: the answer of a job that never was.
    for who, job_id in ((b, job), (a, job), (a, b_job)):
        gone = who.http.delete(f"/v1/jobs/{job_id}", headers=who.headers)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "NOT_FOUND"


def test_erasing_a_keys_data_leaves_nothing_of_the_key_and_the_key_stops_working(pipeline):
    a = Api(pipeline.api_url, pipeline.api_key("pro", "eraser a"))
    b = Api(pipeline.api_url, pipeline.api_key("pro", "bystander b2"))
    a_id = a.headers["Authorization"].split("_")[1]
    jobs = [voice_job(a, f"Erase number {n}.") for n in (1, 2)]
    b_job, b_upload = voice_job(b, "Not mine to erase.")
    hook = a.post("/v1/webhooks", json={"url": pipeline.hooks.url})
    assert hook.status_code == 201, hook.text
    b_before = left_of(pipeline, b_job, b_upload)

    answer = delete(a, "/v1/data")

    assert answer.status_code == 200, answer.text
    receipt = answer.json()
    assert receipt["complete"] and receipt["key_removed"]
    assert sorted(receipt["jobs"]) == sorted(j for j, _ in jobs)
    assert receipt["counts"]["webhooks"] == 1 and receipt["counts"]["key"] == 1
    assert left_of(pipeline, a_id, *(n for pair in jobs for n in pair)) == []
    assert left_of(pipeline, b_job, b_upload) == b_before
    assert a.get("/v1/jobs").status_code == 401  # the key is gone
    assert b.get(f"/v1/jobs/{b_job}").json()["status"] == "completed"
