"""A job that fails stops the GPU tasks it still has running: over real HTTP, a pro key's parallel
long avatar whose one chunk fails fatally (a FaultPlan fault at the worker boundary) while the
others render. Its GPU slots are free for the key's next job as soon as the record is failed, so
the other chunks' workers must stop too, not render on: the failure path raises the job's cancel
flag, which the local workers poll with their heartbeat (a Modal call is also cancelled outright,
which the unit tests cover: tests/unit/pipeline/test_ended_jobs_stop_workers.py).

The evidence is the workers' own: a worker still running writes a progress marker every heartbeat
interval and, in the end, its outputs and a result marker; a stopped one falls silent, with none."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from talkstack.contract.state import SegmentPlan
from talkstack.contract.worker import cancel_flag_key
from tests.integration.test_api import SAMPLES, Api

QUIET_S = 6.0
"""A worker that still runs writes a progress marker every heartbeat_seconds / 3 (4 / 3 s in the
test stack): markers unchanged this long mean it stopped."""


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory) -> Path:
    """The sample speech three times over (~40 s): chunks long enough to be stopped mid-render."""
    audio, rate = sf.read(SAMPLES / "speech.wav", dtype="float32")
    path = tmp_path_factory.mktemp("media") / "long-speech.wav"
    sf.write(path, np.concatenate([audio, audio, audio]), rate)
    return path


def markers(pipeline, job_id: str) -> dict[str, dict[str, str]]:
    """Each attempt's markers: attempt id → {kind: ETag}."""
    found: dict[str, dict[str, str]] = {}
    for key, etag in pipeline.keys(pipeline.r.work_bucket, f"markers/{job_id}/").items():
        _, _, attempt, name = key.split("/")
        found.setdefault(attempt, {})[name.removesuffix(".json")] = etag
    return found


def quiet(pipeline, job_id: str, timeout_s: float) -> dict[str, dict[str, str]]:
    """The job's markers once none has changed for QUIET_S (AssertionError after timeout_s)."""
    deadline = time.monotonic() + timeout_s
    last, since = markers(pipeline, job_id), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = markers(pipeline, job_id)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= QUIET_S:
            return now
    raise AssertionError(f"the workers of {job_id} still write markers after {timeout_s} s: {last}")


def test_a_chunk_that_fails_fatally_stops_the_chunks_still_rendering(pipeline, long_speech):
    key = pipeline.api_key("pro", "failed-job-stops-workers")
    pro = Api(pipeline.api_url, key)
    image = pro.upload(SAMPLES / "portrait.png", "image/png")
    audio = pro.upload(long_speech, "audio/wav")
    body = {"inputs": {"image": image, "audio": audio}, "options": {"long_audio": "parallel"}}
    # The first chunk a worker takes fails fatally, at once. The fault is this key's alone: a "*"
    # fault was once taken by a task another test left in the pool, and one added for the job id
    # after the 202 came too late on a loaded machine (the first chunk had already started).
    pipeline.stack.faults.add_for_key(key.split("_")[1], "avatar", "fatal")
    try:
        accepted = pro.post("/v1/avatar/generate", json=body)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        record = pipeline.wait(job_id, timeout_s=120)
    finally:
        pipeline.stack.faults.clear()

    # The job failed with the chunk's error, and its other chunks had started rendering by then
    assert record.status == "failed", record
    assert record.error.message.startswith("injected fatal worker failure"), record.error
    chunks = pipeline.store.get_step_result(job_id, "segment", SegmentPlan).chunks
    assert len(chunks) >= 2
    assert pipeline.s3.head_object(Bucket=pipeline.r.work_bucket, Key=cancel_flag_key(job_id))

    # Then every worker of the job falls silent: the one that failed with its error marker, each
    # other one without a result, and no chunk's outputs were uploaded
    settled = quiet(pipeline, job_id, timeout_s=60)
    failed = [a for a, kinds in settled.items() if "error" in kinds]
    others = {a: kinds for a, kinds in settled.items() if a not in failed}
    assert len(failed) == 1 and others, settled
    assert all(set(kinds) == {"progress"} for kinds in others.values()), settled
    for attempt in settled:
        assert pipeline.keys(pipeline.r.work_bucket, f"work/{job_id}/{attempt}/") == {}

    # and the key's GPU slots are free again: the failed job held all 8 of the tier's
    after = pro.post("/v1/voice/clone", json={"inputs": {"text": "Now there is room."}})
    assert after.status_code == 202, after.text
    assert pipeline.wait(after.json()["job_id"]).status == "completed"
