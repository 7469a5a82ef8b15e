"""The REST API over real HTTP: the local API Gateway in front of the `api` handler, the real state
machine and workers behind it. What a client of the deployed API would see."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from talkstack.contract.worker import cancel_flag_key
from talkstack.local.resources import repo_root
from talkstack.media.video import probe_video

SAMPLES = repo_root() / "talkstack" / "assets" / "samples"
TERMINAL = {"completed", "failed", "cancelled"}


class Api:
    """A thin HTTP helper bound to one key (the tests exercise the wire, not the Python client)."""

    def __init__(self, url: str, key: str | None) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def get(self, path: str, **kw) -> httpx.Response:
        return self.http.get(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return self.http.post(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def upload(self, path: Path, content_type: str) -> str:
        data = path.read_bytes()
        ticket = self.post(
            "/v1/uploads", json={"filename": path.name, "content_type": content_type, "bytes": len(data)}
        )
        assert ticket.status_code == 201, ticket.text
        body = ticket.json()
        put = httpx.put(body["url"], content=data, headers=body["headers"])
        assert put.status_code == 200, put.text
        return body["upload_id"]

    def wait(self, job_id: str, timeout_s: float = 120, until=lambda job: job["status"] in TERMINAL) -> dict:
        deadline, job = time.monotonic() + timeout_s, None
        while time.monotonic() < deadline:
            answer = self.get(f"/v1/jobs/{job_id}")
            if (
                answer.status_code == 429
            ):  # a pro key polls 60 times a minute at most: wait, as a client would
                time.sleep(
                    min(float(answer.headers.get("Retry-After", "1")), max(0.0, deadline - time.monotonic()))
                )
                continue
            job = answer.json()
            if until(job):
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not get there in {timeout_s} s: {job}")


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


@pytest.fixture
def api(pipeline) -> Api:
    return Api(pipeline.api_url, pipeline.api_key("enterprise", "tests"))


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory) -> Path:
    """The sample speech three times over (~40 s): a render long enough to cancel in the middle."""
    audio, rate = sf.read(SAMPLES / "speech.wav", dtype="float32")
    path = tmp_path_factory.mktemp("media") / "long-speech.wav"
    sf.write(path, np.concatenate([audio, audio, audio]), rate)
    return path


def test_upload_generate_poll_download_and_webhook(pipeline, api, tmp_path):
    image = api.upload(SAMPLES / "portrait.png", "image/png")
    audio = api.upload(SAMPLES / "speech.wav", "audio/wav")
    body = {
        "inputs": {"image": image, "audio": audio},
        "notify": {"webhook_url": pipeline.hooks.url},
        "metadata": {"order": "42"},
    }
    accepted = api.post("/v1/avatar/generate", json=body)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    assert accepted.headers["location"] == f"/v1/jobs/{job_id}"

    seen: list[float] = []
    job = api.wait(job_id, until=lambda j: seen.append(j["progress"]) or j["status"] in TERMINAL)
    assert job["status"] == "completed", job["error"]
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert job["metadata"] == {"order": "42"} and [s["name"] for s in job["steps"]][-1] == "finalize"
    video = next(o for o in job["result"]["outputs"] if o["kind"] == "video")
    local = tmp_path / "video.mp4"
    local.write_bytes(httpx.get(video["url"]).content)  # the pre-signed URL: no AWS credentials
    info = probe_video(local)
    assert info.video.codec == "h264" and info.audio is not None
    assert abs(info.duration_s - sf.info(SAMPLES / "speech.wav").duration) < 0.2
    assert local.stat().st_size == video["bytes"]

    delivery = pipeline.hooks.wait_for(job_id, "job.completed")
    assert delivery.verified and json.loads(delivery.body)["metadata"] == {"order": "42"}


def test_multipart_request_carries_small_media_inline(pipeline, api):
    files = {
        "image": ("portrait.png", (SAMPLES / "portrait.png").read_bytes(), "image/png"),
        "audio": ("speech.wav", (SAMPLES / "speech.wav").read_bytes(), "audio/wav"),
    }
    answer = api.post(
        "/v1/avatar/generate", data={"request": json.dumps({"options": {"fps": 20}})}, files=files
    )
    assert answer.status_code == 202, answer.text
    job = api.wait(answer.json()["job_id"])
    assert job["status"] == "completed", job["error"]
    assert job["result"]["fps"] == 20


def test_a_multipart_composition_is_refused_as_json_only(pipeline):
    """A composition's media sit in its scenes, not in `inputs`: its endpoint takes JSON only, says
    so (not "inputs: unknown field"), stores none of the files, and its OpenAPI operation offers no
    multipart body."""
    key = pipeline.api_key("pro", "multipart composition")
    api = Api(pipeline.api_url, key)
    files = {"image": ("portrait.png", (SAMPLES / "portrait.png").read_bytes(), "image/png")}
    request = {"scenes": [{"source": {"type": "title", "title": "Hi"}}]}
    answer = api.post("/v1/composition/generate", data={"request": json.dumps(request)}, files=files)
    assert answer.status_code == 415, answer.text
    error = answer.json()["error"]
    assert error["code"] == "UNSUPPORTED_MEDIA"
    assert "upload id" in error["message"] and "JSON only" in error["message"]
    uploads = f"uploads/{key.split('_')[1]}/"  # tsk_<key id>_<secret>
    assert pipeline.s3.list_objects_v2(Bucket=pipeline.r.input_bucket, Prefix=uploads).get("KeyCount") == 0
    document = api.get("/openapi.json").json()
    body = document["paths"]["/v1/composition/generate"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json"}


def test_a_multitalk_v0_manifest_is_accepted(pipeline, api):
    image = api.upload(SAMPLES / "portrait.png", "image/png")
    audio = api.upload(SAMPLES / "speech.wav", "audio/wav")
    manifest = {
        "input": {"reference_image_s3_url": image, "audio_s3_url": audio},
        "output": {"filename": "legacy.mp4"},
        "options": {"resolution": "480p"},
    }
    answer = api.post("/v1/avatar/generate", json=manifest)
    assert answer.status_code == 202, answer.text
    job = api.wait(answer.json()["job_id"])
    assert job["status"] == "completed", job["error"]
    assert job["result"]["outputs"][0]["key"].endswith("legacy.mp4")


def test_keys_are_required_and_tenants_are_isolated(pipeline, api):
    anonymous = Api(pipeline.api_url, None)
    missing = anonymous.get("/v1/jobs")
    assert missing.status_code == 401 and error_of(missing)["code"] == "UNAUTHORIZED"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    key = api.headers["Authorization"][7:]
    almost = key[:-1] + ("y" if key.endswith("x") else "x")  # one character off (a key may end in x)
    for wrong in ("nonsense", "tsk_aaaaaaaaaaaa_" + "A" * 32, almost):
        answer = anonymous.get("/v1/jobs", headers={"x-api-key": wrong})
        assert answer.status_code == 401 and error_of(answer) == {
            "code": "UNAUTHORIZED",
            "message": "invalid API key",
            "details": {},
        }
    assert anonymous.get("/health").status_code == 200  # public

    mine = api.post("/v1/voice/clone", json={"inputs": {"text": "Hello there."}})
    assert mine.status_code == 202, mine.text
    job_id = mine.json()["job_id"]
    other = Api(pipeline.api_url, pipeline.api_key("pro", "other tenant"))
    for answer in (other.get(f"/v1/jobs/{job_id}"), other.post(f"/v1/jobs/{job_id}/cancel")):
        assert answer.status_code == 404 and error_of(answer)["code"] == "NOT_FOUND"
    assert other.get("/v1/jobs").json()["jobs"] == []
    assert job_id in [j["job_id"] for j in api.get("/v1/jobs").json()["jobs"]]
    # uploads are per key too
    upload = api.upload(SAMPLES / "portrait.png", "image/png")
    borrowed = other.post("/v1/avatar/generate", json={"inputs": {"image": upload, "text": "Hi"}})
    assert borrowed.status_code == 404 and error_of(borrowed)["code"] == "INPUT_NOT_FOUND"
    assert api.wait(job_id)["status"] == "completed"


def test_over_the_rate_answers_429_with_retry_after(pipeline):
    free = Api(pipeline.api_url, pipeline.api_key("free", "rate"))
    answers = [free.get("/v1/models") for _ in range(12)]
    codes = [a.status_code for a in answers]
    # 10 a minute on the free tier (a minute boundary may reset the count once)
    assert codes.count(200) in (10, 11) and 429 in codes, codes
    limited = answers[codes.index(429)]
    error = error_of(limited)
    assert error["code"] == "RATE_LIMITED" and error["details"]["limit"] == "requests_per_minute"
    assert 1 <= int(limited.headers["retry-after"]) <= 60


def test_concurrent_jobs_over_the_tier_answer_429(pipeline, long_speech):
    free = Api(pipeline.api_url, pipeline.api_key("free", "concurrency"))
    first = free.post("/v1/voice/clone", json={"inputs": {"text": "One moment, please. " * 20}})
    assert first.status_code == 202, first.text
    second = free.post("/v1/voice/clone", json={"inputs": {"text": "And another."}})
    assert second.status_code == 429, second.text
    error = error_of(second)
    assert error["details"]["limit"] == "concurrent_jobs" and error["details"]["active"] == [
        first.json()["job_id"]
    ]
    assert int(second.headers["retry-after"]) >= 1
    # (waiting through the table, not by polling: 10 requests a minute would not last long)
    assert pipeline.wait(first.json()["job_id"]).status == "completed"
    third = free.post("/v1/voice/clone", json={"inputs": {"text": "Now there is room."}})
    assert third.status_code == 202, third.text  # the finished job freed its slot
    pipeline.wait(third.json()["job_id"])


def test_idempotency_key_returns_the_original_job(pipeline, api):
    key = str(uuid.uuid4())
    body = {"inputs": {"text": "Say it once."}}
    first = api.post("/v1/voice/clone", json=body, headers={"Idempotency-Key": key})
    again = api.post("/v1/voice/clone", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    changed = api.post(
        "/v1/voice/clone", json={"inputs": {"text": "Say it twice."}}, headers={"Idempotency-Key": key}
    )
    assert changed.status_code == 422 and error_of(changed)["code"] == "IDEMPOTENCY_KEY_REUSED"
    # another key may use the same Idempotency-Key for its own request
    other = Api(pipeline.api_url, pipeline.api_key("pro"))
    theirs = other.post("/v1/voice/clone", json=body, headers={"Idempotency-Key": key})
    assert theirs.status_code == 202 and theirs.json()["job_id"] != first.json()["job_id"]
    job_id = first.json()["job_id"]
    assert len(pipeline.executions(job_id)) == 1
    api.wait(job_id)
    other.wait(theirs.json()["job_id"])


def test_cancel_during_rendering(pipeline, api, long_speech):
    image = api.upload(SAMPLES / "portrait.png", "image/png")
    audio = api.upload(long_speech, "audio/wav")
    body = {"inputs": {"image": image, "audio": audio}, "notify": {"webhook_url": pipeline.hooks.url}}
    job_id = api.post("/v1/avatar/generate", json=body).json()["job_id"]
    rendering = api.wait(
        job_id,
        until=lambda j: (
            j["status"] in TERMINAL
            or (
                any(s["name"] == "avatar" and s["status"] == "running" for s in j["steps"])
                and j["progress"] >= 0.1
            )
        ),
    )
    assert rendering["status"] == "running", rendering

    cancelled = api.post(f"/v1/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert [s["status"] for s in cancelled.json()["steps"] if s["name"] == "avatar"] == ["cancelled"]
    again = api.post(f"/v1/jobs/{job_id}/cancel")  # idempotent
    assert again.status_code == 200 and again.json()["status"] == "cancelled"

    execution = pipeline.stack.wait_for_execution(job_id, timeout_s=30)
    assert execution["status"] == "ABORTED"
    event = pipeline.hooks.wait_for(job_id, "job.cancelled")
    assert event.verified and json.loads(event.body)["status"] == "cancelled"
    assert pipeline.wait_until(lambda: pipeline.sns.for_job(job_id, "job.cancelled"), 10)

    # The worker sees the flag at its next heartbeat and stops: no outputs, no result marker, ever.
    assert pipeline.s3.head_object(Bucket=pipeline.r.work_bucket, Key=cancel_flag_key(job_id))
    time.sleep(6)
    assert pipeline.keys(pipeline.r.output_bucket, f"{job_id}/") == {}
    markers = pipeline.keys(pipeline.r.work_bucket, f"markers/{job_id}/")
    assert not [k for k in markers if k.endswith(("result.json", "error.json"))], markers
    assert not pipeline.keys(pipeline.r.work_bucket, f"work/{job_id}/")
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    assert [e["type"] for e in pipeline.sns.for_job(job_id)][-1] == "job.cancelled"


def test_cancel_right_after_submit_ends_the_job_quietly(pipeline, api):
    image = api.upload(SAMPLES / "portrait.png", "image/png")
    body = {"inputs": {"image": image, "text": "Never said."}, "notify": {"webhook_url": pipeline.hooks.url}}
    job_id = api.post("/v1/avatar/generate", json=body).json()["job_id"]
    answer = api.post(f"/v1/jobs/{job_id}/cancel")
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled", answer.text
    execution = pipeline.stack.wait_for_execution(job_id, timeout_s=30)
    # The record turns cancelled before the execution is stopped (talkstack/pipeline/cancel.py): it
    # ends ABORTED, or, when a state read the cancelled record before the stop arrived, through the
    # failure path's Fail state with the error CANCELLED. Either way nothing else runs.
    stopped = execution["status"] == "ABORTED"
    assert stopped or (execution["status"] == "FAILED" and execution.get("error") == "CANCELLED"), execution
    assert pipeline.hooks.wait_for(job_id, "job.cancelled").verified
    time.sleep(3)  # anything still in flight has had its chance to misbehave
    types = [e["type"] for e in pipeline.sns.for_job(job_id)]
    assert types[-1] == "job.cancelled" and "job.failed" not in types and "job.completed" not in types
    assert pipeline.keys(pipeline.r.output_bucket, f"{job_id}/") == {}
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"


def test_cancelling_a_finished_job_is_a_conflict(pipeline, api):
    job_id = api.post("/v1/voice/clone", json={"inputs": {"text": "Done soon."}}).json()["job_id"]
    assert api.wait(job_id)["status"] == "completed"
    answer = api.post(f"/v1/jobs/{job_id}/cancel")
    assert answer.status_code == 409 and error_of(answer)["code"] == "CONFLICT"


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"inputs": {}}, 400, "INVALID_REQUEST", "inputs.image"),
        ({"inputs": {"image": "portrait.png", "text": "hi"}}, 400, "INVALID_REQUEST", "inputs.image"),
        ({"task": "video", "inputs": {"image": "upl_x"}}, 400, "INVALID_REQUEST", "task"),
        ({"job_id": "mine", "inputs": {"image": "upl_x"}}, 400, "INVALID_REQUEST", "job_id"),
        (
            {"inputs": {"image": "upl_aaaaaaaaaaaaaaaaaaaaaaaa", "text": "hi"}},
            404,
            "INPUT_NOT_FOUND",
            "inputs.image",
        ),
        ({"inputs": {"image": "s3://not-ours/x.png", "text": "hi"}}, 404, "INPUT_NOT_FOUND", "inputs.image"),
        (
            {"inputs": {"image": "upl_x", "text": "hi"}, "options": {"model": "multitalk"}},
            422,
            "MODEL_UNAVAILABLE",
            "",
        ),
    ],
)
def test_bad_requests_get_specific_errors(api, body, status, code, field):
    answer = api.post("/v1/avatar/generate", json=body)
    assert answer.status_code == status, answer.text
    error = error_of(answer)
    assert error["code"] == code and error["message"].startswith(field), error


def test_a_deployments_default_models_apply_to_requests_that_name_none(pipeline, api):
    """The CDK stack sets GPU defaults (the lite engines exist only locally). Here the local workers
    cannot run GPU models, so a default that took effect shows as that model being refused."""
    with pipeline.configured(default_models="avatar=multitalk,voice=chatterbox"):
        models = {m["id"]: m for m in api.get("/v1/models").json()["models"]}
        assert models["multitalk"]["default"] and models["chatterbox"]["default"]
        assert not models["lite-avatar"]["default"] and models["ltx-video"]["default"]  # unset: contract's
        unnamed = api.post("/v1/voice/clone", json={"inputs": {"text": "Hello there."}})
        assert unnamed.status_code == 422 and error_of(unnamed)["code"] == "MODEL_UNAVAILABLE"
        assert error_of(unnamed)["message"].startswith("options.model: chatterbox is a GPU model")
        named = {"inputs": {"text": "Hello there."}, "options": {"model": "lite-voice"}}
        assert api.post("/v1/voice/clone", json=named).status_code == 202  # a named model wins

        # The same through an S3 drop: the validate step applies the defaults too.
        dropped = pipeline.drop(
            {"task": "voice", "inputs": {"text": "Hi."}}, {}, f"defaults-{uuid.uuid4().hex[:8]}"
        )
        record = pipeline.wait(dropped.job_id)
    assert record.status == "failed" and record.error.code == "MODEL_UNAVAILABLE"
    assert "chatterbox" in record.error.message


def test_upload_limits_and_types(api):
    wrong = api.post(
        "/v1/uploads", json={"filename": "x.exe", "content_type": "application/x-msdos", "bytes": 10}
    )
    assert wrong.status_code == 415 and error_of(wrong)["code"] == "UNSUPPORTED_MEDIA"
    big = api.post("/v1/uploads", json={"filename": "x.wav", "content_type": "audio/wav", "bytes": 10**9})
    assert big.status_code == 413 and error_of(big)["details"]["max_bytes"] == 50 * 1024 * 1024
    ticket = api.post(
        "/v1/uploads", json={"filename": "a.wav", "content_type": "audio/wav", "bytes": 100}
    ).json()
    # The URL signs the declared type and size, so S3 refuses any other. (moto does not check
    # signatures, so here we can only check what was signed.)
    signed = httpx.URL(ticket["url"]).params["X-Amz-SignedHeaders"].split(";")
    assert {"content-length", "content-type"} <= set(signed)
    assert ticket["headers"] == {"Content-Type": "audio/wav", "Content-Length": "100"}


def test_list_filter_pagination_usage_models_and_docs(pipeline):
    api = Api(pipeline.api_url, pipeline.api_key("enterprise", "lister"))
    ids = [
        api.post("/v1/voice/clone", json={"inputs": {"text": f"Number {i}."}}).json()["job_id"]
        for i in range(3)
    ]
    for job_id in ids:
        api.wait(job_id)
    first = api.get("/v1/jobs", params={"limit": 2}).json()
    second = api.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [j["job_id"] for j in first["jobs"] + second["jobs"]] == ids[::-1] and second[
        "next_cursor"
    ] is None
    assert api.get("/v1/jobs", params={"status": "failed"}).json()["jobs"] == []
    assert len(api.get("/v1/jobs", params={"status": "completed,failed"}).json()["jobs"]) == 3
    bad = api.get("/v1/jobs", params={"status": "done"})
    assert bad.status_code == 400 and "status" in error_of(bad)["message"]
    assert api.get("/v1/jobs", params={"cursor": "garbage"}).status_code == 400

    usage = api.get("/v1/usage", params={"period": "month"}).json()
    assert usage["totals"]["jobs"] == usage["totals"]["completed"] == 3
    assert usage["totals"]["seconds_rendered"] > 0 and usage["tier"] == "enterprise"
    assert len(usage["buckets"]) == 1 and usage["buckets"][0]["jobs"] == 3

    models = {m["id"]: m for m in api.get("/v1/models").json()["models"]}
    assert models["lite-avatar"]["available"] and models["lite-avatar"]["backend"] == "lite"
    assert models["lite-avatar"]["default"] and not models["multitalk"]["default"]
    assert models["multitalk"]["backend"] == "modal"  # where it runs, whatever this stack can run
    assert not models["multitalk"]["available"] and models["multitalk"]["unavailable_reason"]
    assert models["multitalk"]["licence"]

    served = httpx.get(pipeline.api_url + "/openapi.json").json()
    assert served == json.loads((repo_root() / "schemas" / "openapi.json").read_text())
    page = httpx.get(pipeline.api_url + "/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
