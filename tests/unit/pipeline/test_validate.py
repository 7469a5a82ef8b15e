"""Validate: the execution input → a checked request and the queued record, or a TalkstackError whose
code says exactly what is wrong (the failure path records it). Nothing is created for a bad request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from talkstack.contract.record import JobSource
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.aws import reset_clients
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.store import JobStore
from talkstack.pipeline.validate import open_job, validate_request
from talkstack.settings import MediaLimits
from tests.support.fakes import REGION, FakeS3
from tests.support.steps import INPUT, make_config, put_sample_media

EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:jobs:"
MANIFEST_KEY = "inputs/talk/job.json"


def envelope(**changes: Any) -> dict[str, Any]:
    """What ingest hands the state machine for inputs/talk/job.json (media beside it)."""
    request: dict[str, Any] = {"task": "avatar", "inputs": {"image": "portrait.png", "audio": "speech.wav"}}
    request.update(changes)
    return {"request": request, "source": {"kind": "s3", "bucket": INPUT, "key": MANIFEST_KEY, "etag": "e"}}


@pytest.fixture
def media(s3: FakeS3) -> dict[str, str]:
    return put_sample_media(s3, "inputs/talk")


def rejected(
    raw: Any, config: PipelineConfig, store: JobStore, s3: FakeS3, job_id: str = "job-1"
) -> TalkstackError:
    """Run the step expecting a refusal; no record may have been created."""
    with pytest.raises(TalkstackError) as caught:
        open_job(raw, job_id, EXECUTION + job_id, config, store, s3)
    assert store.get(job_id) is None
    return caught.value


def test_a_valid_manifest_becomes_a_queued_record_with_absolute_media(config, store, s3, media):
    # When validate runs on ingest's envelope
    record, created = open_job(envelope(), "job-1", EXECUTION + "job-1", config, store, s3)

    # Then the queued record is stored, its media resolved against the manifest's folder, and the
    # source kept (with the execution that validated it); each input was checked with a HEAD
    assert created and record.status == "queued" and record.task == "avatar"
    stored = store.get("job-1")
    assert stored == record
    assert str(stored.request.inputs.image) == f"s3://{INPUT}/{media['image']}"
    assert str(stored.request.inputs.audio) == f"s3://{INPUT}/{media['audio']}"
    assert stored.source.kind == "s3" and stored.source.key == MANIFEST_KEY
    assert stored.source.execution_arn == EXECUTION + "job-1"
    assert sorted(c["Key"] for c in s3.called("HeadObject")) == sorted(media.values())
    # nothing is downloaded but the one object of a bundled sample's size, to recognise it by hash
    # (the bundled portrait needs no consent); the speech is not read
    assert [c["Key"] for c in s3.called("GetObject")] == [media["image"]]


def test_a_rerun_returns_the_stored_record_and_writes_nothing(config, store, s3, media):
    # Given a job validated once (a retried Lambda runs again)
    first, _ = open_job(envelope(), "job-1", EXECUTION + "job-1", config, store, s3)
    before = store.get_versioned("job-1")
    s3.calls.clear()

    # When it runs again, even after the media was removed
    s3.delete_object(Bucket=INPUT, Key=media["audio"])
    again, created = open_job(envelope(), "job-1", EXECUTION + "job-1", config, store, s3)

    # Then it is the same record, not created again, not re-checked, not rewritten
    assert not created and again == first
    assert store.get_versioned("job-1") == before
    assert s3.called("HeadObject") == []


def test_a_direct_start_with_absolute_refs_is_an_execution_source(config, store, s3, media):
    bare = {
        "task": "avatar",
        "inputs": {"image": f"s3://{INPUT}/{media['image']}", "audio": f"s3://{INPUT}/{media['audio']}"},
    }

    record, created = open_job(bare, "direct-1", EXECUTION + "direct-1", config, store, s3)

    assert created and record.source == JobSource(kind="execution", execution_arn=EXECUTION + "direct-1")


@pytest.mark.parametrize(
    ("changes", "code", "mention"),
    [
        ({"inputs": {"image": "portrait.png", "audio": "nowhere.wav"}}, "INPUT_NOT_FOUND", "nowhere.wav"),
        (
            {"inputs": {"image": "s3://someone-elses-bucket/portrait.png", "audio": "speech.wav"}},
            "INPUT_NOT_FOUND",
            "s3://someone-elses-bucket/portrait.png does not exist or this drop folder may not read it",
        ),
        ({"inputs": {"image": "../secret/portrait.png", "audio": "speech.wav"}}, "INVALID_REQUEST", ".."),
        ({"colour": "blue"}, "INVALID_REQUEST", "colour"),
        ({"options": {"model": "sora"}}, "INVALID_REQUEST", "options.model"),
        ({"options": {"model": "chatterbox"}}, "INVALID_REQUEST", "options.model"),
        ({"options": {"model": "multitalk"}}, "MODEL_UNAVAILABLE", "local workers do not run it"),
        ({"inputs": {"image": "portrait.png", "text": "word " * 1200}}, "TEXT_TOO_LONG", "limit is 5000"),
        ({"output": {"bucket": "not-ours"}}, "INVALID_REQUEST", "output.bucket"),
        (
            {"notify": {"webhook_url": "https://169.254.169.254/hook"}},
            "INVALID_REQUEST",
            "notify.webhook_url",
        ),
        ({"notify": {"webhook_url": "http://127.0.0.1:9/hook"}}, "INVALID_REQUEST", "notify.webhook_url"),
        ({"job_id": "another-id"}, "INVALID_REQUEST", "differs from the execution name"),
    ],
    ids=[
        "missing media",
        "bucket not allowed",
        "path traversal",
        "unknown field",
        "unknown model",
        "model of another task",
        "GPU model without a worker",
        "text too long",
        "output bucket not allowed",
        "private webhook",
        "loopback webhook",
        "job_id differs",
    ],
)
def test_a_bad_request_is_refused_with_its_specific_code(config, store, s3, media, changes, code, mention):
    error = rejected(envelope(**changes), config, store, s3)

    assert error.code == code and mention in error.message


def test_a_forbidden_bucket_is_refused_before_it_is_read(config, store, s3, media):
    s3.buckets.add("someone-elses-bucket")
    put_sample_media(s3, "x", bucket="someone-elses-bucket")

    rejected(
        envelope(inputs={"image": "s3://someone-elses-bucket/x/portrait.png", "audio": "speech.wav"}),
        config,
        store,
        s3,
    )

    assert all(c["Bucket"] == INPUT for c in s3.called("HeadObject"))


def test_an_input_the_stack_may_not_read_is_forbidden(config, store, s3, media):
    s3.denied.add((INPUT, media["audio"]))  # S3 answers a HEAD without permission with a bare 403

    error = rejected(envelope(), config, store, s3)

    assert error.code == "INPUT_FORBIDDEN" and "inputs.audio" in error.message


def test_a_readable_bucket_may_be_named_by_an_operator(no_pipeline_environment, store, s3):
    config = make_config(readable_buckets="shared-media")
    s3.buckets.add("shared-media")
    keys = put_sample_media(s3, "lib", bucket="shared-media")
    raw = {
        "task": "avatar",
        "inputs": {
            "image": f"s3://shared-media/{keys['image']}",
            "audio": f"s3://shared-media/{keys['audio']}",
        },
    }  # a direct StartExecution: an operator's

    record, created = open_job(raw, "job-1", None, config, store, s3)

    assert created and str(record.request.inputs.image) == f"s3://shared-media/{keys['image']}"


def test_a_drop_folder_reads_another_bucket_only_when_granted(no_pipeline_environment, store, s3, media):
    s3.buckets.add("shared-media")
    keys = put_sample_media(s3, "lib", bucket="shared-media")
    raw = envelope(inputs={"image": f"s3://shared-media/{keys['image']}", "audio": "speech.wav"})

    # readable_buckets is the operator's list, not the drop folders'
    refused = rejected(raw, make_config(readable_buckets="shared-media"), store, s3)
    assert refused.code == "INPUT_NOT_FOUND" and INPUT not in refused.message
    assert all(c["Bucket"] == INPUT for c in s3.called("HeadObject"))

    granted = make_config(read_grants="drop:talk=s3://shared-media/lib/")
    record, created = open_job(raw, "job-1", None, granted, store, s3)
    assert created and str(record.request.inputs.image) == f"s3://shared-media/{keys['image']}"


@pytest.mark.parametrize(
    "ref",
    [
        "s3://in-bucket/inputs/other/speech.wav",  # another drop folder
        "s3://in-bucket/uploads/somekey/upl_x/speech.wav",  # an API key's upload
        "s3://in-bucket/inputs/talkative/speech.wav",  # a folder whose name merely starts alike
    ],
)
def test_a_drop_folder_never_reads_another_folder_or_an_upload(config, store, s3, media, ref):
    bucket, _, key = ref.removeprefix("s3://").partition("/")
    s3.put_object(Bucket=bucket, Key=key, Body=b"RIFF....WAVE")  # it exists

    error = rejected(envelope(inputs={"image": "portrait.png", "audio": ref}), config, store, s3)

    assert error.code == "INPUT_NOT_FOUND"
    assert error.message == f"inputs.audio: {ref} does not exist or this drop folder may not read it"
    assert key not in [c["Key"] for c in s3.called("HeadObject")]  # refused before any S3 call


def test_an_output_bucket_refusal_lists_no_bucket(config, store, s3, media):
    error = rejected(envelope(output={"bucket": "not-ours"}), config, store, s3)

    assert error.code == "INVALID_REQUEST" and "'not-ours'" in error.message
    assert "out-bucket" not in error.message and "in-bucket" not in error.message


def test_loopback_webhooks_are_allowed_only_where_configured(no_pipeline_environment, store, s3, media):
    config = make_config(allow_loopback_webhooks=True)

    record, _ = open_job(
        envelope(notify={"webhook_url": "http://127.0.0.1:9/hook"}), "job-1", None, config, store, s3
    )

    assert str(record.request.notify.webhook_url) == "http://127.0.0.1:9/hook"


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch, ddb: Any) -> Iterator[Any]:
    """Secrets Manager on moto (inside the same mock_aws as the jobs table). Validate reads the Modal
    token through talkstack.pipeline.aws.client, a process-wide cached client: give it a region and
    forget it afterwards, so no later test gets a client made here."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    reset_clients()
    yield boto3.client("secretsmanager", region_name=REGION)
    reset_clients()


@pytest.mark.parametrize(
    ("secret", "mention"),
    [
        (None, "no Modal token is configured"),
        ("modal-token-missing", "could not be used"),
    ],
)
def test_a_modal_model_without_a_usable_token_is_unavailable(
    no_pipeline_environment, store, s3, media, secrets, secret, mention
):
    # Given a stack that runs multitalk on Modal, without a token or with a secret that does not exist
    config = make_config(model_backends="multitalk=modal", modal_token_secret=secret)

    error = rejected(envelope(options={"model": "multitalk"}), config, store, s3)

    assert error.code == "MODEL_UNAVAILABLE" and "runs on the modal worker backend" in error.message
    assert mention in error.message


def test_a_modal_model_with_a_token_is_accepted(no_pipeline_environment, store, s3, media, secrets):
    token = {"token_id": "ak-test", "token_secret": "as-test"}
    secrets.create_secret(Name="modal-token-ok", SecretString=json.dumps(token))
    config = make_config(model_backends="multitalk=modal", modal_token_secret="modal-token-ok")

    record, created = open_job(envelope(options={"model": "multitalk"}), "job-1", None, config, store, s3)

    assert created and record.model == "multitalk"


@pytest.mark.parametrize(
    ("name", "size", "code"),
    [
        ("image", 0, ErrorCode.EMPTY_INPUT),
        ("image", 1001, ErrorCode.IMAGE_TOO_LARGE),
        ("audio", 1001, ErrorCode.INPUT_TOO_LARGE),
    ],
)
def test_input_sizes_are_checked_against_the_limits(config, s3, media, name, size, code):
    # Given one input of `size` bytes and a 1000-byte limit for images and audio
    s3.put_object(Bucket=INPUT, Key=media[name], Body=b"\0" * size)
    limits = MediaLimits(max_image_bytes=1000, max_audio_bytes=1000)
    s3.put_object(Bucket=INPUT, Key=media["audio" if name == "image" else "image"], Body=b"\0" * 10)
    source = JobSource(kind="s3", bucket=INPUT, key=MANIFEST_KEY)

    with pytest.raises(TalkstackError) as caught:
        validate_request(envelope()["request"], source, "job-1", config, s3, limits)

    assert caught.value.code == code and f"inputs.{name}" in caught.value.message
