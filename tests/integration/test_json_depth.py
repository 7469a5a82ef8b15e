"""Deeply nested JSON (issue 15, finding 8) over the real entry points: HTTP through the local API
Gateway, and an S3 drop through ingest. Python's JSON parser recurses once per level, so 100k `[`
used to end in a RecursionError: a 500 from the API, and an ingest crash with no job record."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from talkstack.contract.fields import MAX_REQUEST_BYTES
from talkstack.pipeline.jobids import job_id_for_object

DEEP = {
    "brackets": "[" * 200_000,  # under MAX_REQUEST_BYTES: only the depth limit stands in the way
    "objects": '{"a":' * 50_000,
}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def http(pipeline):
    key = pipeline.api_key("pro")
    with httpx.Client(base_url=pipeline.api_url, timeout=60, headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


def error_of(response: httpx.Response) -> dict:
    return response.json()["error"]


@pytest.mark.parametrize("shape", DEEP)
@pytest.mark.parametrize("path", ["/v1/avatar/generate", "/v1/uploads", "/v1/jobs/x/cancel"])
def test_deep_json_body_is_a_400_invalid_request_on_every_route(http, path, shape):
    body = DEEP[shape]
    assert len(body) <= MAX_REQUEST_BYTES

    answer = http.post(path, content=body, headers=JSON)

    assert answer.status_code == 400, answer.text
    assert error_of(answer)["code"] == "INVALID_REQUEST"
    assert "nested deeper than 32 levels" in error_of(answer)["message"]


def test_deep_json_in_a_multipart_request_field_is_a_400(http):
    answer = http.post("/v1/avatar/generate", files={"request": (None, DEEP["brackets"], "application/json")})

    assert answer.status_code == 400, answer.text
    assert error_of(answer)["code"] == "INVALID_REQUEST"


def test_megabytes_of_brackets_are_refused_by_size_never_a_500(http):
    # 5 MB reaches the handler (under Lambda's 6 MB payload): refused by size before any parsing.
    answer = http.post("/v1/avatar/generate", content="[" * 5_000_000, headers=JSON)
    assert answer.status_code == 400 and error_of(answer)["code"] == "INVALID_REQUEST", answer.text
    assert "larger than 256 KiB" in error_of(answer)["message"]
    # 10 MB never reaches it: over Lambda's 6 MB invoke payload, the gateway answers 413.
    answer = http.post("/v1/avatar/generate", content="[" * 10_000_000, headers=JSON)
    assert answer.status_code == 413 and error_of(answer)["code"] == "INPUT_TOO_LARGE", answer.text


def test_a_normal_request_still_passes_the_depth_check(http):
    # Same route, a real (shallow) document: it gets past the depth check to ordinary validation.
    answer = http.post("/v1/avatar/generate", json={"task": "avatar", "inputs": {"text": "Hi."}})
    assert answer.status_code == 400 and "inputs.image" in error_of(answer)["message"], answer.text


@pytest.mark.parametrize("shape", DEEP)
def test_a_deep_s3_manifest_fails_its_job_with_an_event_and_a_dead_letter(pipeline, shape):
    key = f"inputs/deep-{uuid.uuid4().hex[:8]}/job.json"
    body = DEEP[shape].encode()
    assert len(body) <= MAX_REQUEST_BYTES  # fits under the manifest size limit: depth must refuse it

    put = pipeline.s3.put_object(Bucket=pipeline.r.input_bucket, Key=key, Body=body)

    job_id = job_id_for_object(pipeline.r.input_bucket, key, put["ETag"], key.split("/")[1])
    record = pipeline.wait_rejected(job_id)
    assert record.status == "failed" and record.error.code == "INVALID_REQUEST"
    assert "nested deeper than 32 levels" in record.error.message
    events = pipeline.wait_until(lambda: pipeline.sns.for_job(job_id, "job.failed"))
    assert events[0]["error"]["code"] == "INVALID_REQUEST"
    sqs = pipeline.stack.client("sqs")

    def letter() -> list[dict]:
        received = sqs.receive_message(QueueUrl=pipeline.r.dlq_url, MaxNumberOfMessages=10)
        messages = received.get("Messages", [])
        return [body for m in messages if (body := json.loads(m["Body"]))["key"] == key]

    letters = pipeline.wait_until(letter)
    assert "nested deeper" in letters[0]["reason"] and letters[0]["job_id"] == job_id
