"""TalkstackClient against scripted HTTP answers.

`httpx.MockTransport` is a boundary mock: it replaces only the network under httpx, so the client's
own request building, retry policy (tenacity), error parsing and pydantic parsing all run for real.
Sleeping is injected (the client's `sleep` hook, which it hands to tenacity), so every wait is
recorded and asserted instead of slept. The real HTTP path is covered by
tests/integration/test_python_client.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from talkstack.api.models import (
    AvatarGenerate,
    JobAccepted,
    JobLinks,
    JobList,
    JobSummary,
    JobView,
    OutputView,
    ResultView,
)
from talkstack.client import ApiConnectionError, ApiError, JobWaitTimeout, TalkstackClient
from talkstack.errors import ErrorCode, TalkstackError

BASE = "http://api.test"
KEY = "tsk_abcdefabcdef_0123456789abcdefghijklmnopqrstuv"
JOB_ID = "avatar-0123456789abcdef"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
MODELS = {"models": []}
Handler = Callable[[httpx.Request], httpx.Response]


class Script:
    """Answers requests in order from a list of responses (or exceptions), recording each request."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        request.read()
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None, **details):
    body = {"error": {"code": code, "message": message, "details": details}}
    return httpx.Response(status, json=body, headers=headers)


def job_view(status: str = "running", progress: float = 0.5, **extra) -> JobView:
    return JobView(
        job_id=JOB_ID,
        task="avatar",
        model="lite-avatar",
        status=status,
        progress=progress,
        created_at=NOW,
        links=JobLinks(self=f"/v1/jobs/{JOB_ID}", cancel=f"/v1/jobs/{JOB_ID}/cancel"),
        **extra,
    )


def ok(model) -> httpx.Response:
    return httpx.Response(200, content=model.model_dump_json(), headers={"Content-Type": "application/json"})


def accepted() -> httpx.Response:
    body = JobAccepted(
        job_id=JOB_ID,
        task="avatar",
        status="queued",
        created_at=NOW,
        links=JobLinks(self=f"/v1/jobs/{JOB_ID}", cancel=f"/v1/jobs/{JOB_ID}/cancel"),
    )
    return httpx.Response(202, content=body.model_dump_json())


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make(sleeps):
    clients: list[TalkstackClient] = []

    def factory(script: Script, **kwargs) -> TalkstackClient:
        client = TalkstackClient(
            BASE, KEY, transport=httpx.MockTransport(script), sleep=sleeps.append, **kwargs
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


# --- retries ------------------------------------------------------------------------------------------


def test_retry_after_is_waited_exactly_then_the_request_succeeds(make, sleeps):
    script = Script(
        error(429, "RATE_LIMITED", "more than 10 requests per minute", {"Retry-After": "7"}),
        httpx.Response(200, json=MODELS),
    )
    assert make(script).models().models == []
    assert sleeps == [7.0]
    assert len(script.requests) == 2


def test_retry_after_as_an_http_date(make, sleeps):
    when = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    script = Script(
        httpx.Response(503, text="busy", headers={"Retry-After": when}), httpx.Response(200, json=MODELS)
    )
    make(script).models()
    assert len(sleeps) == 1 and 27 <= sleeps[0] <= 30


def test_5xx_is_retried_with_exponential_backoff_then_succeeds(make, sleeps):
    script = Script(
        error(500, "GENERATION_FAILED", "internal error: KeyError; it was logged"),
        httpx.Response(503, text="Service Unavailable"),
        httpx.Response(200, json=MODELS),
    )
    make(script).models()
    assert len(script.requests) == 3
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 1.5  # 0.5 · 2ⁿ plus up to 0.5 s of jitter


def test_gives_up_after_max_retries_with_the_last_error(make, sleeps):
    script = Script(httpx.Response(503, json={"message": "Service Unavailable"}))
    with pytest.raises(ApiError) as caught:
        make(script, max_retries=2).models()
    assert caught.value.status == 503
    assert len(script.requests) == 3 and len(sleeps) == 2


def test_4xx_is_not_retried(make, sleeps):
    script = Script(
        error(400, "INVALID_REQUEST", "inputs.image: field required", field="inputs.image"),
        httpx.Response(200, json=MODELS),
    )
    with pytest.raises(ApiError) as caught:
        make(script).models()
    assert len(script.requests) == 1 and sleeps == []
    assert caught.value.status == 400 and caught.value.code is ErrorCode.INVALID_REQUEST


def test_transport_errors_are_retried_and_end_as_a_connection_error(make, sleeps):
    script = Script(httpx.ConnectError("refused"), httpx.Response(200, json=MODELS))
    make(script).models()
    assert len(script.requests) == 2 and len(sleeps) == 1

    down = Script(httpx.ConnectError("connection refused"))
    with pytest.raises(ApiConnectionError) as caught:
        make(down, max_retries=1).models()
    assert len(down.requests) == 2
    assert "cannot reach http://api.test/v1/models" in caught.value.message
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


# --- errors -------------------------------------------------------------------------------------------


def test_error_body_code_message_details_and_retry_after_are_parsed(make):
    script = Script(
        error(
            429,
            "RATE_LIMITED",
            "more than 10 requests per minute for the free tier",
            {"Retry-After": "12"},
            retry_after_s=12,
            limit="requests_per_minute",
        )
    )
    with pytest.raises(ApiError) as caught:
        make(script, max_retries=0).models()
    exc = caught.value
    assert (exc.status, exc.code, exc.retry_after) == (429, ErrorCode.RATE_LIMITED, 12.0)
    assert exc.message == "more than 10 requests per minute for the free tier"
    assert exc.details == {"retry_after_s": 12, "limit": "requests_per_minute"}
    assert str(exc) == "RATE_LIMITED: more than 10 requests per minute for the free tier"


def test_not_found(make):
    script = Script(error(404, "NOT_FOUND", f"no job {'nope'!r} for this API key"))
    with pytest.raises(ApiError) as caught:
        make(script).get_job("nope")
    assert caught.value.code is ErrorCode.NOT_FOUND and caught.value.retry_after is None
    assert script.requests[0].url.path == "/v1/jobs/nope"


def test_non_json_502_from_a_gateway(make):
    script = Script(httpx.Response(502, json={"message": "Internal server error"}))
    with pytest.raises(ApiError) as caught:
        make(script, max_retries=0).models()
    exc = caught.value
    assert exc.status == 502 and exc.code is ErrorCode.GENERATION_FAILED
    assert exc.message == "HTTP 502 from api.test: Internal server error"
    assert exc.details == {}


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (502, "<html><body>Bad Gateway</body></html>", ErrorCode.GENERATION_FAILED, "Bad Gateway"),
        (
            403,
            "<Error><Code>SignatureDoesNotMatch</Code><Message>The signature differs</Message></Error>",
            ErrorCode.INPUT_FORBIDDEN,
            "SignatureDoesNotMatch: The signature differs",
        ),
        (401, "", ErrorCode.UNAUTHORIZED, "HTTP 401 from api.test (Unauthorized)"),
    ],
)
def test_other_bodies_still_give_a_code_and_a_message(make, status, body, code, message):
    with pytest.raises(ApiError) as caught:
        make(Script(httpx.Response(status, text=body)), max_retries=0).models()
    assert caught.value.code is code and message in caught.value.message


def test_an_unknown_code_keeps_the_status_meaning_and_the_raw_code(make):
    script = Script(error(409, "SOMETHING_NEW", "a newer server's code"))
    with pytest.raises(ApiError) as caught:
        make(script).cancel(JOB_ID)
    assert caught.value.code is ErrorCode.CONFLICT and caught.value.details["server_code"] == "SOMETHING_NEW"


# --- generation and idempotency -----------------------------------------------------------------------


def test_generation_post_gets_one_idempotency_key_for_all_its_retries(make, sleeps):
    script = Script(httpx.Response(503, text="busy"), httpx.ReadTimeout("slow"), accepted())
    client = make(script)
    job = client.generate_avatar({"inputs": {"image": "upl_" + "a" * 24, "text": "Hello"}})
    assert isinstance(job, JobAccepted) and job.job_id == JOB_ID
    keys = [r.headers.get("Idempotency-Key") for r in script.requests]
    assert len(keys) == 3 and len(set(keys)) == 1
    assert uuid.UUID(keys[0]).version == 4
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in script.requests)
    assert json.loads(script.requests[0].content) == {"inputs": {"image": "upl_" + "a" * 24, "text": "Hello"}}

    again = Script(accepted())
    make(again).generate_avatar({"inputs": {"image": "upl_" + "a" * 24, "text": "Hello"}})
    assert again.requests[0].headers["Idempotency-Key"] != keys[0]  # a new call, a new key


def test_a_callers_key_and_a_typed_body(make):
    script = Script(accepted())
    body = AvatarGenerate.model_validate({"inputs": {"image": "upl_" + "b" * 24, "audio": "upl_" + "c" * 24}})
    make(script).generate_avatar(body, idempotency_key="order-42")
    request = script.requests[0]
    assert request.url.path == "/v1/avatar/generate" and request.headers["Idempotency-Key"] == "order-42"
    assert json.loads(request.content) == {"inputs": {"image": "upl_" + "b" * 24, "audio": "upl_" + "c" * 24}}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("generate_avatar", "/v1/avatar/generate"),
        ("clone_voice", "/v1/voice/clone"),
        ("generate_video", "/v1/video/generate"),
    ],
)
def test_each_task_has_its_endpoint(make, method, path):
    script = Script(accepted())
    getattr(make(script), method)({"inputs": {}})
    assert script.requests[0].method == "POST" and script.requests[0].url.path == path


# --- uploads and downloads ------------------------------------------------------------------------------


def test_upload_declares_the_file_then_puts_it_with_exactly_the_signed_headers(make, tmp_path):
    image = tmp_path / "face.png"
    image.write_bytes(b"\x89PNG fake bytes")
    signed = {"Content-Type": "image/png", "Content-Length": str(len(image.read_bytes()))}
    ticket = {
        "upload_id": "upl_" + "d" * 24,
        "method": "PUT",
        "url": "http://s3.test/in/uploads/face.png?X-Amz-Signature=abc",
        "headers": signed,
        "expires_at": "2025-01-02T04:04:05Z",
        "max_bytes": 20_000_000,
    }
    script = Script(httpx.Response(201, json=ticket), httpx.Response(200))
    assert make(script).upload(image) == "upl_" + "d" * 24
    declare, put = script.requests
    assert declare.url.path == "/v1/uploads"
    assert json.loads(declare.content) == {"filename": "face.png", "content_type": "image/png", "bytes": 15}
    assert put.method == "PUT" and str(put.url) == ticket["url"]
    assert put.content == image.read_bytes()
    assert {k: put.headers[k] for k in signed} == signed
    assert "Authorization" not in put.headers  # the API key never goes to the storage host
    assert "Transfer-Encoding" not in put.headers


def test_upload_bytes_needs_a_type(make):
    with pytest.raises(TalkstackError, match="cannot tell the media type"):
        make(Script(httpx.Response(500))).upload(b"data")


def test_download_streams_every_output_to_disk(make, tmp_path):
    def output(kind: str, key: str, ctype: str) -> OutputView:
        return OutputView(
            kind=kind,
            content_type=ctype,
            bytes=3,
            bucket="out",
            key=key,
            url=f"http://s3.test/out/{key}?X-Amz-Signature=x",
            url_expires_at=NOW,
        )

    job = job_view(
        "completed",
        1.0,
        result=ResultView(
            outputs=[
                output("video", f"{JOB_ID}/video.mp4", "video/mp4"),
                output("thumbnail", f"{JOB_ID}/thumbnail.jpg", "image/jpeg"),
            ]
        ),
    )
    script = Script(lambda r: httpx.Response(200, content=r.url.path.encode()))
    client = make(script)
    files = client.download(job, tmp_path / "out")
    assert files == [tmp_path / "out" / "video.mp4", tmp_path / "out" / "thumbnail.jpg"]
    assert files[0].read_bytes() == f"/out/{JOB_ID}/video.mp4".encode()
    assert all("Authorization" not in r.headers for r in script.requests)

    named = client.download(job, tmp_path / "clip.mp4")
    assert named == [tmp_path / "clip.mp4", tmp_path / "clip.thumbnail.jpg"]
    assert not list(tmp_path.rglob("*.part"))


# --- jobs ---------------------------------------------------------------------------------------------


def test_wait_reports_each_change_and_returns_the_final_view(make, sleeps):
    views = [job_view("queued", 0.0), job_view("running", 0.3), job_view("running", 0.3)]
    views += [job_view("running", 0.7), job_view("completed", 1.0)]
    script = Script(*(ok(v) for v in views))
    seen: list[tuple[str, float]] = []
    final = make(script).wait(JOB_ID, on_progress=lambda j: seen.append((j.status, j.progress)), poll=0.25)
    assert final.status == "completed"
    assert seen == [("queued", 0.0), ("running", 0.3), ("running", 0.7), ("completed", 1.0)]
    assert sleeps == [0.25] * 4


def test_wait_times_out_with_a_clear_error(make):
    script = Script(ok(job_view("running", 0.4)))
    with pytest.raises(JobWaitTimeout) as caught:
        make(script).wait(JOB_ID, timeout=0)
    assert isinstance(caught.value, TimeoutError)
    assert f"job {JOB_ID} did not finish within 0 s (still running, 40%)" in caught.value.message


def test_iter_jobs_follows_the_cursor(make):
    def summary(n: int) -> JobSummary:
        return JobSummary(
            job_id=f"avatar-{n:016x}",
            task="avatar",
            model="lite-avatar",
            status="completed",
            progress=1.0,
            created_at=NOW,
        )

    script = Script(
        ok(JobList(jobs=[summary(1), summary(2)], next_cursor="c2")), ok(JobList(jobs=[summary(3)]))
    )
    ids = [j.job_id for j in make(script).iter_jobs(status=["completed", "failed"], page_size=2)]
    assert ids == [f"avatar-{n:016x}" for n in (1, 2, 3)]
    first, second = (dict(r.url.params) for r in script.requests)
    assert first == {"limit": "2", "status": "completed,failed"}
    assert second == {"limit": "2", "status": "completed,failed", "cursor": "c2"}


def test_usage_sends_aware_datetimes(make):
    body = {
        "period": "day",
        "start": "2025-01-01T00:00:00Z",
        "end": "2025-01-02T00:00:00Z",
        "tier": "free",
        "limits": {"requests_per_minute": 10},
        "totals": {"start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"},
        "buckets": [],
    }
    script = Script(httpx.Response(200, json=body))
    usage = make(script).usage("day", start=NOW - timedelta(days=1), end=NOW)
    assert usage.tier == "free"
    assert script.requests[0].url.params["start"] == "2025-01-01T03:04:05+00:00"


def test_context_manager_closes_the_http_clients():
    with TalkstackClient(BASE, KEY, transport=httpx.MockTransport(Script(httpx.Response(200)))) as client:
        pass
    assert client._http.is_closed and client._storage.is_closed


def test_job_ids_stay_one_path_segment(make):
    script = Script(error(404, "NOT_FOUND", "no job"))
    with pytest.raises(ApiError):
        make(script).get_job("../models")
    assert script.requests[0].url.raw_path == b"/v1/jobs/..%2Fmodels"
