"""API keys, the per-minute budget and job admission, on moto's in-process DynamoDB (the same table
layout the stack creates), plus the local gateway's event mapping."""

from __future__ import annotations

import base64
import io
import json
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from talkstack.api.keys import INVALID_KEY, KeyStore, Principal, hash_key, key_from_headers
from talkstack.api.limits import Admission, RateLimiter
from talkstack.api.service import ApiService
from talkstack.contract.composition import JOB_REQUEST_ADAPTER
from talkstack.contract.record import JobRecord, JobResult, JobSource, OutputFile
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.local.gateway import http_response, proxy_event
from talkstack.pipeline.jobs_table import create_table_request
from talkstack.pipeline.store import JobStore
from tests.support.steps import avatar_request, make_config, quality_report

TABLE = "unit-jobs"


@pytest.fixture
def ddb():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**create_table_request(TABLE))
        yield client


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"Authorization": "Bearer tsk_a"}, "tsk_a"),
        ({"authorization": "bearer  tsk_b "}, "tsk_b"),
        ({"X-Api-Key": "tsk_c"}, "tsk_c"),
        ({"Authorization": "Basic abc", "x-api-key": "tsk_d"}, "tsk_d"),
    ],
)
def test_key_from_either_header(headers, key):
    assert key_from_headers(headers) == key


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic x"}])
def test_missing_key_is_unauthorized(headers):
    with pytest.raises(TalkstackError) as caught:
        key_from_headers(headers)
    assert caught.value.code == ErrorCode.UNAUTHORIZED and "Bearer" in caught.value.message


def test_keys_are_stored_hashed_and_authenticate(ddb):
    keys = KeyStore(TABLE, ddb)
    new = keys.create("pro", "acme")
    item = ddb.get_item(
        TableName=TABLE, Key={"pk": {"S": f"APIKEY#{new.principal.key_id}"}, "sk": {"S": "KEY"}}
    )
    stored = json.dumps(item["Item"])
    assert new.key not in stored and hash_key(new.key) in stored  # only the hash is kept
    assert keys.authenticate({"Authorization": f"Bearer {new.key}"}) == Principal(
        new.principal.key_id, "pro", "acme"
    )
    tampered = new.key[:-1] + ("A" if new.key[-1] != "A" else "B")
    for bad in (tampered, "tsk_zzzzzzzzzzzz_" + "a" * 32, "nonsense"):
        with pytest.raises(TalkstackError) as caught:
            keys.authenticate({"x-api-key": bad})
        assert (caught.value.code, caught.value.message) == (ErrorCode.UNAUTHORIZED, INVALID_KEY)
    keys.disable(new.principal.key_id)
    with pytest.raises(TalkstackError):
        keys.authenticate({"x-api-key": new.key})
    with pytest.raises(TalkstackError) as caught:
        keys.create("platinum")
    assert caught.value.code == ErrorCode.INVALID_REQUEST


def test_rate_limit_counts_per_minute_and_says_when_to_retry(ddb):
    now = [600.0 + 42.4]  # 42.4 s into a minute
    limiter = RateLimiter(TABLE, ddb, clock=lambda: now[0])
    free = Principal("k1", "free", "k1")
    for _ in range(10):
        limiter.hit(free)
    with pytest.raises(TalkstackError) as caught:
        limiter.hit(free)
    assert caught.value.code == ErrorCode.RATE_LIMITED
    assert (
        caught.value.details["retry_after_s"] == 18 and caught.value.details["limit"] == "requests_per_minute"
    )
    limiter.hit(Principal("k2", "free", "k2"))  # another key has its own budget
    now[0] = 660.0  # the next minute
    limiter.hit(free)


def _record(job_id: str, owner: str) -> JobRecord:
    request = JOB_REQUEST_ADAPTER.validate_python({"task": "voice", "inputs": {"text": "hi"}})
    record = JobRecord.new(job_id, request)
    record.source = JobSource(kind="api", api_key_id=owner)
    return record


def test_admission_holds_the_concurrent_job_limit_and_frees_finished_slots(ddb):
    store = JobStore(TABLE, ddb)
    admission = Admission(TABLE, ddb, store)
    pro = Principal("k1", "pro", "k1")  # 5 at once
    for i in range(5):
        admission.admit(pro, _record(f"job-{i}", "k1"))
    with pytest.raises(TalkstackError) as caught:
        admission.admit(pro, _record("job-5", "k1"))
    assert caught.value.code == ErrorCode.RATE_LIMITED and caught.value.details["limit"] == "concurrent_jobs"
    assert caught.value.details["active"] == [f"job-{i}" for i in range(5)]
    assert store.get("job-5") is None  # refused: no record written

    store.update("job-2", lambda r: r.mark_cancelled())
    admission.admit(pro, _record("job-5", "k1"))
    assert list(admission.active(pro)[0]) == ["job-0", "job-1", "job-3", "job-4", "job-5"]
    with pytest.raises(TalkstackError) as caught:
        admission.admit(Principal("k1", "enterprise", "k1"), _record("job-0", "k1"))
    assert caught.value.code == ErrorCode.CONFLICT  # the id exists: the transaction wrote nothing
    assert [r.job_id for r in store.list_owned("k1", limit=10)[0]] == [f"job-{i}" for i in (5, 4, 3, 2, 1, 0)]


def test_admission_rereads_when_another_submission_won_the_race(ddb):
    store = JobStore(TABLE, ddb)
    admission = Admission(TABLE, ddb, store)
    free = Principal("k1", "free", "k1")  # 1 at once
    real_active = admission.active
    calls = []

    def racing_active(principal):
        calls.append(1)
        if len(calls) == 1:
            seen = real_active(principal)  # we read "no jobs" …
            admission_b = Admission(TABLE, ddb, store)
            admission_b.admit(principal, _record("theirs", "k1"))  # … and another submission takes the slot
            return seen
        return real_active(principal)

    admission.active = racing_active  # type: ignore[method-assign]
    with pytest.raises(TalkstackError) as caught:
        admission.admit(free, _record("mine", "k1"))
    assert caught.value.code == ErrorCode.RATE_LIMITED and caught.value.details["active"] == ["theirs"]
    assert store.get("mine") is None and len(calls) == 2


def test_gateway_builds_rest_proxy_events():
    json_request = Request(
        EnvironBuilder(
            method="POST", path="/v1/jobs", query_string="status=running&limit=2", json={"a": 1}
        ).get_environ()
    )
    event = proxy_event(json_request)
    assert (event["httpMethod"], event["path"], event["isBase64Encoded"]) == ("POST", "/v1/jobs", False)
    assert json.loads(event["body"]) == {"a": 1}
    assert event["queryStringParameters"] == {"status": "running", "limit": "2"}
    assert event["requestContext"]["stage"] == "local" and event["requestContext"]["requestId"]

    form = Request(
        EnvironBuilder(
            method="POST",
            path="/v1/avatar/generate",
            data={"request": "{}", "image": (io.BytesIO(b"\x89PNG fake"), "a.png")},
        ).get_environ()
    )
    event = proxy_event(form)
    assert event["isBase64Encoded"] and b"a.png" in base64.b64decode(event["body"])

    response = http_response(
        {
            "statusCode": 429,
            "headers": {"Retry-After": "7"},
            "body": '{"error": {}}',
            "isBase64Encoded": False,
        }
    )
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"


def test_the_job_view_shows_an_avatar_jobs_quality_report(ddb, no_pipeline_environment):
    # Given a completed avatar job of this key whose report failed its lip-sync check
    s3 = boto3.client("s3", region_name="us-east-1")
    store = JobStore(TABLE, ddb)
    services = SimpleNamespace(config=make_config(jobs_table=TABLE), store=store, s3=s3, presign=s3)
    record = JobRecord.new("job-1", avatar_request())
    record.source = JobSource(kind="api", api_key_id="k1")
    video = OutputFile(
        kind="video", bucket="out-bucket", key="job-1/video.mp4", content_type="video/mp4", bytes=9
    )
    report = quality_report(lipsync=0.1)
    record.mark_completed(JobResult(outputs=[video], quality=report))
    assert store.create(record)

    view = ApiService(services, ddb, backends=None).get_job(Principal("k1", "pro", "k1"), "job-1")

    # Then GET /v1/jobs/{id} carries it, as the published OpenAPI document describes it
    assert view.result is not None and view.result.quality == report
    body = json.loads(view.model_dump_json())
    assert body["result"]["quality"]["checks"][0] == {
        "name": "lipsync",
        "value": 0.1,
        "threshold": 0.3,
        "passed": False,
        "detail": None,
    }
