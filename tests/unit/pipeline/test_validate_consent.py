"""Likeness and voice consent at the Validate step: a user's photo or a cloned voice needs an
attestation of the right scope (bundled samples none), a voice clone may need a recorded clip, a
clip must be speech, and an accepted attestation is stored with the job and in the audit trail.
Real step code, the real JobStore and AuditLog on moto's DynamoDB, real media decoded by PyAV."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile

from talkstack.contract.parse import parse_job_request
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.audit import AuditLog
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.store import JobStore
from talkstack.pipeline.validate import open_job
from talkstack.safety.consent import BUNDLED_SAMPLES
from tests.support.consent import consent_block, user_photo_bytes, with_consent
from tests.support.fakes import FakeS3
from tests.support.steps import INPUT, JOBS_TABLE, SAMPLES, make_config

REPO = Path(__file__).resolve().parents[3]
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:jobs:"
FOLDER = "inputs/talk"


@pytest.fixture
def audit(ddb: Any) -> AuditLog:
    return AuditLog(JOBS_TABLE, ddb)


@pytest.fixture
def media(s3: FakeS3) -> dict[str, str]:
    """In the drop folder: the bundled samples, a user's photo, and speech to clone."""
    files = {
        "portrait.png": (SAMPLES / "portrait.png").read_bytes(),
        "speech.wav": (SAMPLES / "speech.wav").read_bytes(),
        "me.png": user_photo_bytes(),
        "my-voice.wav": (SAMPLES / "speech.wav").read_bytes()[:-2] + b"\x01\x00",  # not the sample
    }
    for name, body in files.items():
        s3.put_object(Bucket=INPUT, Key=f"{FOLDER}/{name}", Body=body)
    return {name: f"{FOLDER}/{name}" for name in files}


def put_clip(s3: FakeS3, tmp_path: Path, name: str, samples: np.ndarray, rate: int = 16000) -> str:
    path = tmp_path / name
    soundfile.write(path, samples.astype(np.float32), rate)
    s3.put_object(Bucket=INPUT, Key=f"{FOLDER}/{name}", Body=path.read_bytes())
    return name


def envelope(request: dict[str, Any]) -> dict[str, Any]:
    return {"request": request, "source": {"kind": "s3", "bucket": INPUT, "key": f"{FOLDER}/job.json"}}


def avatar(image: str = "me.png", **changes: Any) -> dict[str, Any]:
    return {"task": "avatar", "inputs": {"image": image, "audio": "speech.wav"}, **changes}


def voice_clone(**changes: Any) -> dict[str, Any]:
    return {"task": "voice", "inputs": {"text": "Hello there.", "reference_voice": "my-voice.wav"}, **changes}


def refused(request: dict[str, Any], config: PipelineConfig, store: JobStore, s3: FakeS3, audit: AuditLog):
    with pytest.raises(TalkstackError) as caught:
        open_job(envelope(request), "job-1", EXECUTION + "job-1", config, store, s3, audit)
    assert store.get("job-1") is None  # nothing was created
    assert audit.trail("drop:talk")[0] == []  # nothing was attested
    return caught.value


def test_a_user_photo_without_consent_is_refused_naming_what_to_add(config, store, s3, media, audit):
    error = refused(avatar(), config, store, s3, audit)

    assert error.code == ErrorCode.CONSENT_REQUIRED
    assert error.details["missing"] == ["likeness"]
    assert "inputs.image" in error.message and '"scope": "likeness"' in error.message


def test_with_consent_the_record_and_the_audit_trail_carry_the_attestation(config, store, s3, media, audit):
    _, created = open_job(
        envelope(with_consent(avatar())), "job-1", EXECUTION + "job-1", config, store, s3, audit
    )

    assert created
    stored = store.get("job-1")
    assert stored.request.consent.subject == "Grace Subject" and stored.request.consent.scope == "likeness"
    (entry,), _ = audit.trail("drop:talk")
    assert entry.action == "consent.attested" and entry.object.id == "job-1"
    statement = consent_block()["statement"]
    assert entry.details == {
        "job_id": "job-1",
        "attested_by_sha256": hashlib.sha256(b"Ada Operator <ada@example.com>").hexdigest(),
        "subject_sha256": hashlib.sha256(b"Grace Subject").hexdigest(),
        "scope": "likeness",
        "attested_at": stored.request.consent.attested_at.isoformat(),
        "statement_sha256": hashlib.sha256(statement.encode()).hexdigest(),
    }


def test_the_bundled_sample_needs_no_consent_even_renamed_but_an_edited_copy_does(
    config, store, s3, media, audit
):
    s3.put_object(Bucket=INPUT, Key=f"{FOLDER}/renamed.png", Body=(SAMPLES / "portrait.png").read_bytes())
    edited = bytearray((SAMPLES / "portrait.png").read_bytes())
    edited[-20] ^= 0xFF  # same size, other bytes
    s3.put_object(Bucket=INPUT, Key=f"{FOLDER}/edited.png", Body=bytes(edited))

    record, created = open_job(
        envelope(avatar("renamed.png")), "job-2", EXECUTION + "job-2", config, store, s3
    )
    assert created and record.request.consent is None
    # Only the object of a sample's exact size was read (to hash it); the speech never was
    assert [c["Key"] for c in s3.called("GetObject")] == [f"{FOLDER}/renamed.png"]

    assert refused(avatar("edited.png"), config, store, s3, audit).code == ErrorCode.CONSENT_REQUIRED


def test_a_voice_clone_needs_voice_scope_and_a_likeness_attestation_does_not_cover_it(
    config, store, s3, media, audit
):
    assert refused(voice_clone(), config, store, s3, audit).code == ErrorCode.CONSENT_REQUIRED
    wrong = refused(with_consent(voice_clone(), scope="likeness"), config, store, s3, audit)
    assert wrong.code == ErrorCode.CONSENT_REQUIRED and wrong.message.startswith("consent.scope:")

    _, created = open_job(
        envelope(with_consent(voice_clone(), scope="voice")), "job-1", EXECUTION + "job-1", config, store, s3
    )
    assert created


def test_a_text_avatar_cloning_a_voice_needs_both_scopes(config, store, s3, media, audit):
    request = {
        "task": "avatar",
        "inputs": {"image": "me.png", "text": "Hi.", "reference_voice": "my-voice.wav"},
    }

    error = refused(with_consent(request, scope="likeness"), config, store, s3, audit)
    assert error.code == ErrorCode.CONSENT_REQUIRED and error.details["missing"] == ["voice"]
    _, created = open_job(
        envelope(with_consent(request, scope="both")), "job-1", EXECUTION + "job-1", config, store, s3
    )
    assert created


def test_when_the_operator_requires_a_clip_a_voice_clone_without_one_is_refused(
    store, s3, media, audit, tmp_path, no_pipeline_environment
):
    config = make_config(voice_clone_consent_clip="required")

    error = refused(with_consent(voice_clone(), scope="voice"), config, store, s3, audit)
    assert error.code == ErrorCode.CONSENT_REQUIRED and error.details["field"] == "consent.clip"

    s3.put_object(Bucket=INPUT, Key=f"{FOLDER}/consent.wav", Body=(SAMPLES / "speech.wav").read_bytes())
    request = with_consent(voice_clone(), scope="voice", clip="consent.wav")
    record, created = open_job(envelope(request), "job-1", EXECUTION + "job-1", config, store, s3, audit)

    # The clip is resolved like the inputs (kept where it was dropped) and named in the audit entry
    assert created and str(record.request.consent.clip) == f"s3://{INPUT}/{FOLDER}/consent.wav"
    (entry,), _ = audit.trail("drop:talk")
    assert entry.details["clip"] == f"s3://{INPUT}/{FOLDER}/consent.wav"


@pytest.mark.parametrize(
    ("name", "samples", "says"),
    [
        ("short.wav", 0.3 * np.sin(2 * np.pi * 220 * np.arange(3200) / 16000), "long"),  # 0.2 s
        ("silence.wav", np.zeros(16000 * 3), "silent"),
        ("tone.wav", 0.3 * np.sin(2 * np.pi * 220 * np.arange(16000 * 3) / 16000), "barely changes"),
    ],
)
def test_a_clip_that_is_not_speech_is_refused(config, store, s3, media, audit, tmp_path, name, samples, says):
    clip = put_clip(s3, tmp_path, name, samples)

    error = refused(with_consent(avatar(), clip=clip), config, store, s3, audit)

    assert error.code == ErrorCode.CONSENT_CLIP_INVALID and says in error.message
    assert error.details["field"] == "consent.clip"


def test_a_clip_that_is_not_audio_is_refused(config, store, s3, media, audit):
    s3.put_object(Bucket=INPUT, Key=f"{FOLDER}/clip.wav", Body=b"not audio at all" * 100)

    error = refused(with_consent(avatar(), clip="clip.wav"), config, store, s3, audit)
    assert error.code == ErrorCode.CONSENT_CLIP_INVALID


def test_a_video_clip_of_the_person_speaking_is_accepted(config, store, s3, media, audit, tmp_path):
    video = tmp_path / "consent.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi",
         "-i", "color=c=gray:s=64x64:d=4", "-i", str(SAMPLES / "speech.wav"),
         "-t", "4", "-c:v", "libx264", "-c:a", "aac", "-shortest", str(video)],
        check=True,
    )  # fmt: skip
    s3.put_object(Bucket=INPUT, Key=f"{FOLDER}/consent.mp4", Body=video.read_bytes())

    _, created = open_job(
        envelope(with_consent(avatar(), clip="consent.mp4")), "job-1", EXECUTION + "job-1", config, store, s3
    )
    assert created


def test_the_operator_may_turn_the_requirement_off(store, s3, media, audit, no_pipeline_environment):
    config = make_config(consent_required=False)

    _, created = open_job(envelope(avatar()), "job-1", EXECUTION + "job-1", config, store, s3, audit)
    assert created


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"attested_at": "2999-01-01T00:00:00Z"}, "in the future"),
        ({"attested_at": "1990-01-01T00:00:00Z"}, "ten years"),
        ({"attested_at": "2024-01-01T00:00:00"}, "timezone"),
        ({"statement": None}, "statement"),
        ({"statement_id": "form-v3"}, "not both"),
        ({"subject": "   "}, "subject"),
        ({"scope": "everything"}, "scope"),
    ],
)
def test_an_attestation_is_validated_strictly(change, says):
    block = {k: v for k, v in consent_block(**change).items() if v is not None}
    with pytest.raises(TalkstackError) as caught:
        parse_job_request({**avatar("s3://in-bucket/me.png"), "consent": block})
    assert caught.value.code == ErrorCode.INVALID_REQUEST and says in caught.value.message


def test_video_requests_take_no_attestation():
    request = {"task": "video", "inputs": {"prompt": "a lake"}, "consent": consent_block()}
    with pytest.raises(TalkstackError, match="consent"):
        parse_job_request(request)


def test_the_bundled_sample_fingerprints_match_the_files():
    for sample in BUNDLED_SAMPLES:
        data = (REPO / sample.path).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (sample.bytes, sample.sha256), sample.path
