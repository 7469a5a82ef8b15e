"""Uploads over real HTTP: the per-key storage quota (pre-signed uploads and multipart files alike),
and multipart files stored only once the request passed its checks, and never twice for a replay.
What is stored is read from the input bucket itself (the key's `uploads/<key id>/` prefix)."""

from __future__ import annotations

import json
import uuid

from tests.integration.test_api import SAMPLES, Api, error_of

QUOTA = 1_000_000


def key_id(key: str) -> str:
    return key.split("_")[1]  # tsk_<id>_<secret>


def stored(pipeline, key: str) -> dict[str, str]:
    """The key's objects under uploads/: {S3 key: ETag}."""
    return pipeline.keys(pipeline.r.input_bucket, f"uploads/{key_id(key)}/")


def ticket(api: Api, size: int, name: str = "a.wav"):
    return api.post("/v1/uploads", json={"filename": name, "content_type": "audio/wav", "bytes": size})


def avatar_files() -> dict:
    return {
        "image": ("portrait.png", (SAMPLES / "portrait.png").read_bytes(), "image/png"),
        "audio": ("speech.wav", (SAMPLES / "speech.wav").read_bytes(), "audio/wav"),
    }


def test_a_keys_live_uploads_stay_within_its_tiers_quota(pipeline):
    with pipeline.configured(upload_quota_pro_bytes=str(QUOTA)):
        key = pipeline.api_key("pro", "quota")
        api = Api(pipeline.api_url, key)
        assert ticket(api, 600_000).status_code == 201

        over = ticket(api, 400_001)
        assert over.status_code == 413, over.text
        error = error_of(over)
        assert error["code"] == "STORAGE_QUOTA_EXCEEDED" and "quota" in error["message"]
        assert error["details"]["quota_bytes"] == QUOTA and error["details"]["used_bytes"] == 600_000
        assert error["details"]["requested_bytes"] == 400_001
        # the bytes count until the uploads expire (7 days, to the end of that UTC day)
        assert 7 * 86400 <= int(over.headers["retry-after"]) <= 8 * 86400

        # a multipart file counts the same way: refused, and nothing stored
        big = (SAMPLES / "speech.wav").read_bytes()
        assert len(big) > 400_000
        before = stored(pipeline, key)
        refused = api.post(
            "/v1/voice/clone",
            data={"request": json.dumps({"inputs": {"text": "Hello there."}})},
            files={"reference_voice": ("voice.wav", big, "audio/wav")},
        )
        assert refused.status_code == 413 and error_of(refused)["code"] == "STORAGE_QUOTA_EXCEEDED"
        assert stored(pipeline, key) == before

        assert ticket(api, 400_000).status_code == 201  # what is left fits exactly
        assert error_of(ticket(api, 1))["code"] == "STORAGE_QUOTA_EXCEEDED"

        other = Api(pipeline.api_url, pipeline.api_key("pro", "quota-other"))
        assert ticket(other, 600_000).status_code == 201  # each key has its own quota


def test_a_multipart_request_that_fails_its_checks_stores_no_media(pipeline):
    key = pipeline.api_key("pro", "multipart-invalid")
    api = Api(pipeline.api_url, key)
    for request, code in (
        ({"options": {"colour": "blue"}}, "INVALID_REQUEST"),  # the parser refuses it
        ({"options": {"model": "multitalk"}}, "MODEL_UNAVAILABLE"),  # check_request: no GPU backend here
        ({"notify": {"webhook_url": "http://169.254.169.254/latest"}}, "INVALID_REQUEST"),
    ):
        answer = api.post("/v1/avatar/generate", data={"request": json.dumps(request)}, files=avatar_files())
        assert answer.status_code in (400, 422) and error_of(answer)["code"] == code, answer.text
    assert stored(pipeline, key) == {}


def test_a_replayed_multipart_request_stores_nothing_new(pipeline):
    key = pipeline.api_key("pro", "multipart-replay")
    api = Api(pipeline.api_url, key)
    idempotency = {"Idempotency-Key": str(uuid.uuid4())}
    form = {"request": json.dumps({"options": {"fps": 20}})}

    first = api.post("/v1/avatar/generate", data=form, files=avatar_files(), headers=idempotency)
    assert first.status_code == 202, first.text
    once = stored(pipeline, key)
    assert len(once) == 2

    again = api.post("/v1/avatar/generate", data=form, files=avatar_files(), headers=idempotency)
    assert again.status_code == 202, again.text
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert stored(pipeline, key) == once  # the same two objects, untouched

    # the same Idempotency-Key with another file is refused before anything is stored
    changed = avatar_files()
    changed["image"] = ("portrait.png", (SAMPLES / "portrait.png").read_bytes() + b"\0", "image/png")
    reused = api.post("/v1/avatar/generate", data=form, files=changed, headers=idempotency)
    assert reused.status_code == 422 and error_of(reused)["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert stored(pipeline, key) == once

    job_id = first.json()["job_id"]
    assert len(pipeline.executions(job_id)) == 1
    assert pipeline.wait(job_id).status == "completed"
