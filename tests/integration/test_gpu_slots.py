"""GPU tasks, not jobs, count against a key's concurrency: over real HTTP, a free key's parallel long
avatar renders its chunks one at a time (its tier runs one GPU task), a pro key's the same job side
by side. The evidence is the workers' own: each chunk's result marker says when the worker took
the task and when it finished; the local pool has two workers, so only the state machine's Map
concurrency (from the key's tier, through MaxConcurrencyPath) can keep two chunks apart."""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest

from talkstack.contract.state import Plan, SegmentPlan
from talkstack.contract.worker import ResultMarker, StepAddress
from tests.integration.test_api import SAMPLES, Api, error_of

# Chunks of ≤ 6 s of the 13.5 s sample: three chunks. Heartbeats long enough for a chunk queued
# behind another in the two-worker pool (it sends none while it waits).
CHUNKED = {"parallel_chunk_seconds": "6", "parallel_min_chunk_seconds": "2", "heartbeat_seconds": "20"}


def render_chunked(pipeline, tier: str) -> tuple[str, list[tuple[datetime, datetime]], Plan]:
    """A parallel long avatar submitted over HTTP by a fresh key of `tier`; (job id, each chunk's
    render interval as its worker reported it, the job's plan)."""
    api = Api(pipeline.api_url, pipeline.api_key(tier, f"gpu-slots-{tier}"))
    image = api.upload(SAMPLES / "portrait.png", "image/png")
    audio = api.upload(SAMPLES / "speech.wav", "audio/wav")
    body = {"inputs": {"image": image, "audio": audio}, "options": {"long_audio": "parallel"}}
    accepted = api.post("/v1/avatar/generate", json=body)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    # (waiting through the table: a free key's 10 requests a minute would not last a poll loop)
    record = pipeline.wait(job_id, timeout_s=240)
    assert record.status == "completed", record.error
    chunks = pipeline.store.get_step_result(job_id, "segment", SegmentPlan).chunks
    assert len(chunks) >= 3
    intervals = []
    for chunk in chunks:
        marker = pipeline.store.get_step_result(
            job_id, StepAddress(step="avatar", chunk=chunk.index), ResultMarker
        )
        intervals.append((marker.started_at, marker.at))
    return job_id, sorted(intervals), pipeline.store.get_step_result(job_id, "plan", Plan)


def overlaps(intervals: list[tuple[datetime, datetime]]) -> int:
    """How many chunk renders started before the one before them had finished."""
    return sum(1 for (_, end), (start, _) in itertools.pairwise(intervals) if start < end)


@pytest.fixture(scope="module")
def chunked(pipeline):
    with pipeline.configured(**CHUNKED):
        yield


def test_a_free_keys_parallel_avatar_renders_one_chunk_at_a_time(pipeline, chunked):
    job_id, intervals, plan = render_chunked(pipeline, "free")
    assert plan.max_concurrency == 1
    assert overlaps(intervals) == 0, intervals
    record = pipeline.store.get(job_id)
    assert record.source.gpu_slots == 1


def test_a_pro_keys_same_job_renders_chunks_side_by_side(pipeline, chunked):
    # the same job with room to spare: the limit above is the tier's, not the pool's or the job's
    _, intervals, plan = render_chunked(pipeline, "pro")
    assert plan.max_concurrency == 8  # all of a pro key's GPU tasks: it runs nothing else
    assert overlaps(intervals) >= 1, intervals


def test_a_key_holding_all_its_gpu_tasks_gets_429_for_another_job(pipeline, chunked):
    pro = Api(pipeline.api_url, pipeline.api_key("pro", "gpu-slots-full"))
    image = pro.upload(SAMPLES / "portrait.png", "image/png")
    audio = pro.upload(SAMPLES / "speech.wav", "audio/wav")
    wide = pro.post(
        "/v1/avatar/generate",
        json={"inputs": {"image": image, "audio": audio}, "options": {"long_audio": "parallel"}},
    )
    assert wide.status_code == 202, wide.text
    # one job running, four job slots free: but it holds all 8 GPU tasks
    refused = pro.post("/v1/voice/clone", json={"inputs": {"text": "Me too."}})
    assert refused.status_code == 429, refused.text
    error = error_of(refused)
    assert error["code"] == "RATE_LIMITED" and error["details"]["limit"] == "gpu_tasks"
    assert error["details"]["allowed"] == 8 and error["details"]["active"] == [wide.json()["job_id"]]
    assert int(refused.headers["retry-after"]) >= 1
    assert pipeline.wait(wide.json()["job_id"], timeout_s=240).status == "completed"
    after = pro.post("/v1/voice/clone", json={"inputs": {"text": "Now there is room."}})
    assert after.status_code == 202, after.text
    pipeline.wait(after.json()["job_id"])
