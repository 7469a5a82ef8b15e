"""Finalize publishes a composition's files on aioboto3 (talkstack/pipeline/aioboto3_s3.py), against a
real moto server: every file lands at its key with its bytes, content type and job-id metadata, and
one copy that fails fails the job's publish with no result.json written. Not `mock_aws()`: it
patches botocore's synchronous HTTP only, and aiobotocore sends its own."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from talkstack.contract.record import JobRecord
from talkstack.contract.worker import OutputObject
from talkstack.pipeline import aioboto3_s3
from talkstack.pipeline.bundled_assets import BundledAssets, bundled_key
from talkstack.pipeline.finalize import finalize_job
from talkstack.pipeline.outputs import JOB_ID_METADATA, final_key
from talkstack.pipeline.store import JobStore
from talkstack.settings import get_local_settings
from talkstack.templates import asset_path
from tests.support.fakes import REGION, create_jobs_table
from tests.support.steps import INPUT, JOBS_TABLE, OUTPUT, WORK, avatar_request, worker_result

# A composition's outputs (COMPOSE_OUTPUTS and two scene thumbnails): role → (file, content type).
FILES = {
    "video": ("video.mp4", "video/mp4"),
    "thumbnail": ("thumbnail.jpg", "image/jpeg"),
    "captions_srt": ("captions.srt", "application/x-subrip"),
    "captions_vtt": ("captions.vtt", "text/vtt"),
    "preview": ("preview.webp", "image/webp"),
    "video_webm": ("video.webm", "video/webm"),
    "video_mov": ("video.mov", "video/quicktime"),
    "scene_thumbnail_0": ("scene-0.jpg", "image/jpeg"),
    "scene_thumbnail_1": ("scene-1.jpg", "image/jpeg"),
}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """boto3 clients on the server, and the environment `aioboto3_s3.session_s3()` reads (as the local
    stack sets it for its Lambdas)."""
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    get_local_settings.cache_clear()
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
    ddb = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
    for bucket in (INPUT, OUTPUT, WORK):
        s3.create_bucket(Bucket=bucket)
    create_jobs_table(ddb, JOBS_TABLE)
    yield {"s3": s3, "store": JobStore(JOBS_TABLE, ddb)}
    for bucket in (INPUT, OUTPUT, WORK):
        for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)
    ddb.delete_table(TableName=JOBS_TABLE)
    get_local_settings.cache_clear()


def composed(aws: dict[str, Any], job_id: str, missing: str | None = None) -> dict[str, bytes]:
    """A job whose last step left a composition's files in the work bucket (all but `missing`,
    which the marker still names); each file's bytes by role."""
    s3, store = aws["s3"], aws["store"]
    record = JobRecord.new(job_id, avatar_request())
    record.start_step("avatar", model="lite-avatar")
    record.finish_step("avatar")
    assert store.create(record)
    marker = worker_result(s3, job_id, f"avatar-1-{job_id}", roles=())
    bodies: dict[str, bytes] = {}
    for role, (name, content_type) in FILES.items():
        key, body = f"jobs/{job_id}/avatar/{name}", f"{role} of {job_id}".encode() * 40
        if role != missing:
            s3.put_object(Bucket=WORK, Key=key, Body=body, ContentType="binary/octet-stream")
        marker.outputs[role] = OutputObject(key=key, bytes=len(body), content_type=content_type)
        bodies[role] = body
    store.put_step_result(job_id, "avatar", marker)
    return bodies


def test_every_output_lands_with_its_bytes_and_content_type(aws, config):
    bodies = composed(aws, "job-1")

    record = finalize_job("job-1", config, aws["store"], aws["s3"], aioboto3_s3.session_s3())

    assert record.status == "completed" and record.result is not None and record.request is not None
    assert len(record.result.outputs) == len(FILES)
    for role, (_, content_type) in FILES.items():
        key = final_key(record.request, "job-1", role)
        got = aws["s3"].get_object(Bucket=OUTPUT, Key=key)
        assert (got["Body"].read(), got["ContentType"]) == (bodies[role], content_type), role
        assert got["Metadata"] == {JOB_ID_METADATA: "job-1"}
    assert record.result.outputs[0].key == final_key(record.request, "job-1", "video")  # the video first
    result = aws["s3"].get_object(Bucket=OUTPUT, Key=record.request.sibling_key("job-1", "result"))
    assert JobRecord.model_validate_json(result["Body"].read()).status == "completed"


def test_one_failed_copy_fails_the_publish_and_writes_no_result(aws, config):
    composed(aws, "job-2", missing="captions_vtt")  # the worker claimed a file it never uploaded

    with pytest.raises(ClientError) as caught:
        finalize_job("job-2", config, aws["store"], aws["s3"], aioboto3_s3.session_s3())

    assert caught.value.response["Error"]["Code"] == "NoSuchKey"
    request = avatar_request()
    with pytest.raises(ClientError):
        aws["s3"].head_object(Bucket=OUTPUT, Key=request.sibling_key("job-2", "result"))
    assert aws["store"].get("job-2").status != "completed"
    # The other copies ran to their end (none left writing behind the failure) and are the job's,
    # so the failure path can take them back.
    landed = aws["s3"].list_objects_v2(Bucket=OUTPUT).get("Contents", [])
    assert len(landed) == len(FILES) - 1


def test_bundled_assets_are_put_once_with_their_content_type(aws):
    names = ["samples/portrait.png", "music-loop.m4a"]
    assets = BundledAssets(aws["s3"], INPUT, aioboto3_s3.session_s3())

    refs = assets.ensure(names, asset_path)

    for name in names:
        assert refs[name].key == bundled_key(asset_path(name))
        got = aws["s3"].get_object(Bucket=INPUT, Key=refs[name].key)
        assert got["Body"].read() == asset_path(name).read_bytes()
    assert aws["s3"].head_object(Bucket=INPUT, Key=refs["music-loop.m4a"].key)["ContentType"] == "audio/mp4"
    # Present keys are not written again: a marker put over one copy is still there after a second run.
    aws["s3"].put_object(Bucket=INPUT, Key=refs["music-loop.m4a"].key, Body=b"marker")
    assert assets.ensure(names, asset_path) == refs
    assert aws["s3"].get_object(Bucket=INPUT, Key=refs["music-loop.m4a"].key)["Body"].read() == b"marker"
