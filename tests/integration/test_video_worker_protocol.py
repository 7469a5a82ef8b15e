"""The video engine speaking the worker protocol against S3 (the local stack's moto server), as a
Modal container does: the task document arrives as JSON-ready dict, the first-frame image comes
through a pre-signed GET, outputs and markers go out through pre-signed PUTs. A tiny random
LTX-Video pipeline stands in for the real weights; everything else is production code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from talkstack.contract.worker import (
    ErrorMarker,
    Markers,
    ProgressMarker,
    ResultMarker,
    StepAddress,
    VideoTask,
    WorkerTask,
    marker_key,
    work_key,
)
from talkstack.media.video import probe_video
from talkstack.pipeline.dispatch import Presigner, attempt_id_for
from talkstack.workers.runner import run_task
from tests.conftest import PORTRAIT
from tests.support.tiny_video import TINY_SIZES, tiny_video_engine

BUCKET = "talkstack-test-video-worker"
"""A bucket of our own: the stack's work bucket would pass these markers to its complete λ."""
MODEL = "ltx-video"


@pytest.fixture(scope="module")
def s3(pipeline) -> Any:
    client = pipeline.s3
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="inputs/portrait.png", Body=PORTRAIT.read_bytes())
    return client


def build_task(s3: Any, job_id: str, text: str | None, **options: Any) -> WorkerTask:
    """What dispatch builds: pre-signed URLs only (no credentials reach the worker)."""
    sign = Presigner(s3, expires_in=600)
    attempt_id = attempt_id_for(StepAddress(step="video"), 0, f"token-of-{job_id}")
    return VideoTask(
        job_id=job_id,
        step="video",
        attempt_id=attempt_id,
        attempt=1,
        model=MODEL,
        options={"model": MODEL, "duration_s": 2, "fps": 24, "seed": 11, **options},
        text=text,
        inputs={"image": sign.get(BUCKET, "inputs/portrait.png", "image.png")},
        outputs={
            "video": sign.put(BUCKET, work_key(job_id, attempt_id, "video.mp4")),
            "thumbnail": sign.put(BUCKET, work_key(job_id, attempt_id, "thumbnail.jpg")),
        },
        markers=Markers(
            **{
                kind: sign.put(BUCKET, marker_key(job_id, attempt_id, kind))
                for kind in ("progress", "result", "error")
            }
        ),
        heartbeat_interval_s=0.5,
        deadline=datetime.now(UTC) + timedelta(minutes=10),
    )


def read(s3: Any, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def exists(s3: Any, key: str) -> bool:
    return s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount", 0) > 0


def test_a_video_task_ends_with_outputs_and_a_result_marker_in_s3(s3, tmp_path):
    task = build_task(s3, "video-protocol-ok", "a dog runs on the beach at sunset", aspect="16:9")
    engine = tiny_video_engine(MODEL)

    assert run_task(task.model_dump(mode="json"), step=engine) is True

    marker = ResultMarker.model_validate_json(read(s3, task.markers.result.key))
    assert marker.attempt_id == task.attempt_id
    assert set(marker.outputs) == {"video", "thumbnail"}
    width, height = TINY_SIZES["16:9"]
    assert (marker.width, marker.height, marker.fps, marker.duration_s) == (width, height, 24, 2.0)
    assert marker.warnings == ["image 512×512 centre-cropped to the video's 64×32 frame"]
    for role, target in task.outputs.items():
        head = s3.head_object(Bucket=BUCKET, Key=target.key)
        assert marker.outputs[role].key == target.key
        assert marker.outputs[role].bytes == head["ContentLength"] > 0
        assert head["ContentType"] == target.content_type == marker.outputs[role].content_type
    video = tmp_path / "video.mp4"
    video.write_bytes(read(s3, task.outputs["video"].key))
    info = probe_video(video)
    assert (info.width, info.height, info.frames, info.fps, info.video.codec) == (
        width,
        height,
        48,
        24,
        "h264",
    )
    assert read(s3, task.outputs["thumbnail"].key)[:3] == b"\xff\xd8\xff"  # a JPEG
    # The heartbeat wrote one (its value depends on timing: a tiny render ends within a beat).
    progress = ProgressMarker.model_validate_json(read(s3, task.markers.progress.key))
    assert progress.attempt_id == task.attempt_id and 0 <= progress.progress <= 1
    assert not exists(s3, task.markers.error.key)


def test_a_task_without_a_prompt_ends_with_a_fatal_error_marker(s3):
    task = build_task(s3, "video-protocol-no-prompt", None)
    engine = tiny_video_engine(MODEL)

    assert run_task(task.model_dump_json(), step=engine) is False

    marker = ErrorMarker.model_validate_json(read(s3, task.markers.error.key))
    assert marker.attempt_id == task.attempt_id
    assert marker.error.code == "INVALID_REQUEST" and marker.retryable is False
    assert "prompt" in marker.error.message
    assert not exists(s3, task.markers.result.key)
    assert not exists(s3, task.outputs["video"].key)
