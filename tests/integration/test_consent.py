"""Likeness consent over real HTTP: the API refuses a user's photo without an attestation before any
job exists, and with one the job runs, its record keeps the attestation and the key's audit trail
holds `consent.attested`."""

from __future__ import annotations

import hashlib
import json

from talkstack.local.resources import repo_root
from tests.integration.test_api import Api, error_of
from tests.support.consent import consent_block, user_photo_bytes


def test_a_user_photo_needs_consent_and_an_attested_job_runs_and_is_audited(pipeline, tmp_path):
    api = Api(pipeline.api_url, pipeline.api_key("pro", "consent"))
    photo = tmp_path / "me.png"
    photo.write_bytes(user_photo_bytes())  # a face, but not a bundled sample
    hello = repo_root() / "docs" / "examples" / "hello" / "speech.wav"  # bundled: 2.35 s
    body = {"inputs": {"image": api.upload(photo, "image/png"), "audio": api.upload(hello, "audio/wav")}}

    refused = api.post("/v1/avatar/generate", json=body)

    assert refused.status_code == 422, refused.text
    error = error_of(refused)
    assert error["code"] == "CONSENT_REQUIRED" and error["details"]["missing"] == ["likeness"]
    assert api.get("/v1/jobs").json()["jobs"] == []  # no job, so no worker task

    accepted = api.post("/v1/avatar/generate", json={**body, "consent": consent_block()})
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    job = api.wait(job_id)

    assert job["status"] == "completed", job["error"]
    record = pipeline.store.get(job_id)
    assert record.request.consent.subject == "Grace Subject" and record.request.consent.scope == "likeness"
    (entry,) = api.get("/v1/audit", params={"action": "consent.attested"}).json()["entries"]
    assert entry["object"] == {"type": "job", "id": job_id}
    # names as digests (the audit trail outlives the job and the key's erasure; the record has them)
    assert entry["details"]["subject_sha256"] == hashlib.sha256(b"Grace Subject").hexdigest()
    assert (
        entry["details"]["attested_by_sha256"]
        == hashlib.sha256(b"Ada Operator <ada@example.com>").hexdigest()
    )
    assert entry["details"]["scope"] == "likeness" and "Grace" not in json.dumps(entry)
