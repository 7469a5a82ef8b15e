"""GPU models through the running local stack: the real state machine, handlers and dispatch, with
the worker backend chosen per model by configuration.

- `modal` backend: Modal's real client library talks to a fake Modal control plane (the network
  boundary, tests/support/fake_modal.py), whose "container" runs the real engine on the task it was
  spawned with — here the LTX-Video engine with tiny random components (no weights can be downloaded).
- `local` backend with a GPU engine: the local worker pool runs the same tiny engine in process.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from talkstack.contract.state import SegmentPlan
from talkstack.contract.worker import ResultMarker, StepAddress
from talkstack.engines.gpu.base import load_engine
from talkstack.media.video import probe_video
from talkstack.pipeline.cost import MODAL_GPU_USD_PER_S
from talkstack.workers import runner

pytestmark = pytest.mark.slow
TINY_LTX = "tests.support.tiny_video:tiny_video_engine"


def _video_manifest(pipeline, model: str = "ltx-video") -> dict:
    return {
        "task": "video",
        "inputs": {"prompt": "a cat walks on the beach at sunset"},
        "options": {"model": model, "duration_s": 2, "fps": 24, "seed": 3},
        "notify": {"webhook_url": pipeline.hooks.url},
    }


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _assert_video(pipeline, record, tmp_path: Path) -> None:
    assert record.status == "completed", record.error
    local = tmp_path / "video.mp4"
    pipeline.s3.download_file(pipeline.r.output_bucket, record.request.output_key(record.job_id), str(local))
    info = probe_video(local)
    assert info.video is not None and info.video.codec == "h264"
    assert info.frames == 48  # 2 s at 24 fps


def test_a_modal_model_without_a_modal_token_fails_clearly(pipeline):
    with pipeline.configured(model_backends="ltx-video=modal"):
        dropped = pipeline.drop(_video_manifest(pipeline), {}, _name("modal-no-token"))
        record = pipeline.wait(dropped.job_id)
    assert record.status == "failed"
    assert record.error.code == "MODEL_UNAVAILABLE"
    assert "modal worker backend" in record.error.message
    assert "no Modal token is configured" in record.error.message
    assert "TALKSTACK_MODAL_TOKEN_SECRET" in record.error.message
    assert pipeline.hooks.wait_for(dropped.job_id, "job.failed").event["error"]["code"] == "MODEL_UNAVAILABLE"
    assert pipeline.keys(pipeline.r.output_bucket, f"{dropped.job_id}/") == {}


def test_a_video_job_runs_on_the_modal_backend(pipeline, fake_modal, tmp_path, monkeypatch):
    # No GPU here: the driver's answer is what an H100 container gives (the cost is priced by it).
    monkeypatch.setattr(runner, "accelerator", lambda: "NVIDIA H100 80GB HBM3")

    def container(task: dict) -> None:
        # What LTXVideo.run does in the Modal container, with the tiny engine instead of 47 GB.
        engine = load_engine(TINY_LTX, "ltx-video")
        runner.run_task(task, step=engine)

    fake_modal.deploy("talkstack-video", "LTXVideo", container=container)
    pipeline.stack.store_modal_token("ak-test", "as-test")
    with pipeline.configured(model_backends="ltx-video=modal"):
        dropped = pipeline.drop(_video_manifest(pipeline), {}, _name("modal-video"))
        record = pipeline.wait(dropped.job_id, timeout_s=180)
    _assert_video(pipeline, record, tmp_path)
    [spawned] = fake_modal.spawned
    assert (spawned.app, spawned.cls, spawned.method) == ("talkstack-video", "LTXVideo", "run")
    assert spawned.payload["model"] == "ltx-video" and spawned.payload["text"].startswith("a cat")
    step = record.step("video")
    assert step.backend == "modal" and step.call_id == f"modal:{spawned.call_id}"
    # The worker's own time, priced as H100 seconds, is in the job's cost.
    assert step.accelerator == "NVIDIA H100 80GB HBM3" and 0 < step.worker_s <= step.duration_s
    assert record.result.estimated_cost_usd >= step.worker_s * MODAL_GPU_USD_PER_S["H100"]
    assert pipeline.hooks.wait_for(dropped.job_id, "job.completed").verified


def test_an_app_that_is_not_deployed_fails_the_job_with_the_deploy_command(pipeline, fake_modal):
    pipeline.stack.store_modal_token("ak-test", "as-test")
    with pipeline.configured(model_backends="wan2.2-ti2v-5b=modal"):
        dropped = pipeline.drop(_video_manifest(pipeline, "wan2.2-ti2v-5b"), {}, _name("modal-missing"))
        record = pipeline.wait(dropped.job_id)
    assert record.status == "failed" and record.error.code == "MODEL_UNAVAILABLE"
    assert "modal deploy -m modal_workers.video" in record.error.message


def test_a_gpu_engine_runs_in_the_local_pool_when_configured(pipeline, tmp_path):
    with pipeline.configured(local_engines=f"ltx-video={TINY_LTX}"):
        dropped = pipeline.drop(_video_manifest(pipeline), {}, _name("local-gpu"))
        record = pipeline.wait(dropped.job_id, timeout_s=180)
    _assert_video(pipeline, record, tmp_path)
    assert record.step("video").backend == "local"


def test_a_gpu_model_the_local_pool_does_not_run_is_refused(pipeline):
    dropped = pipeline.drop(_video_manifest(pipeline), {}, _name("local-refused"))
    record = pipeline.wait(dropped.job_id)
    assert record.error.code == "MODEL_UNAVAILABLE"
    assert "TALKSTACK_MODEL_BACKENDS=ltx-video=modal" in record.error.message


def test_a_long_avatar_renders_its_chunks_in_parallel_and_stitches_them(pipeline, media, tmp_path):
    """The Map path, end to end with the lite engine: segment at pauses → one worker per chunk → stitch."""
    manifest = {
        "task": "avatar",
        "inputs": {"image": "portrait.png", "audio": "speech.wav"},
        "options": {"long_audio": "parallel"},
        "notify": {"webhook_url": pipeline.hooks.url},
    }
    # A chunk waiting for a free process in the local pool sends no heartbeat; each lite render
    # (with its quality report) takes a few seconds, so 4 s heartbeats would time the queued ones out.
    settings = {"parallel_chunk_seconds": "6", "parallel_min_chunk_seconds": "2", "heartbeat_seconds": "20"}
    with pipeline.configured(**settings):
        dropped = pipeline.drop(
            manifest, {"portrait.png": media["portrait"], "speech.wav": media["speech"]}, _name("long")
        )
        record = pipeline.wait(dropped.job_id, timeout_s=240)
    assert record.status == "completed", record.error
    segments = pipeline.store.get_step_result(dropped.job_id, "segment", SegmentPlan)
    chunks = segments.chunks
    assert len(chunks) >= 3 and all(c.at_pause for c in chunks)
    worked = {}
    for chunk in chunks:  # every chunk was rendered by its own worker task
        address = StepAddress(step="avatar", chunk=chunk.index)
        result = pipeline.store.get_step_result(dropped.job_id, address, ResultMarker)
        worked[result.attempt_id] = round((result.at - result.started_at).total_seconds(), 3)
    # The avatar step's worker time is every chunk's (what parallel GPUs bill), not its wall time.
    assert record.step("avatar").worker_seconds == worked
    assert record.step("avatar").accelerator is None  # the lite engine runs on the CPU
    assert [s.name for s in record.steps][:3] == ["moderate", "avatar", "stitch"]
    assert all(s.status == "completed" for s in record.steps)
    local = tmp_path / "video.mp4"
    pipeline.s3.download_file(pipeline.r.output_bucket, record.request.output_key(record.job_id), str(local))
    info = probe_video(local)
    assert info.frames == round(chunks[-1].end_s * 25)
    assert info.audio is not None and abs(info.duration_s - chunks[-1].end_s) < 0.15
