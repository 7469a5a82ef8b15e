"""A composition publishes many files (captions, preview, a still per scene, alpha files): the paths
that move or remove a job's outputs treat them all as the job's, not just its video, thumbnail and
result.json. A held composition's release publishes every held file (two share the kind `captions`,
one per scene the kind `scene_thumbnail`); a failure removes every file it had published."""

from __future__ import annotations

from typing import Any

import pytest

from talkstack.contract.events import JobEvent
from talkstack.contract.record import JobError, JobRecord
from talkstack.contract.scan import OutputScan
from talkstack.contract.worker import StepAddress
from talkstack.errors import ErrorCode
from talkstack.pipeline.audit import AuditLog
from talkstack.pipeline.finalize import finalize_job
from talkstack.pipeline.held_review import release_job
from talkstack.pipeline.outputs import remove_published
from tests.support.steps import JOBS_TABLE, OUTPUT, WORK
from tests.unit.pipeline.test_composition_steps import COMPOSED, composition, delivered

FLAGGED = OutputScan(status="flagged", model="m", threshold=0.5, categories=["nsfw"], reasons=["frame"])
PUBLISHED = {
    "films/intro/intro.mp4",
    "films/intro/intro.thumbnail.jpg",
    "films/intro/intro.preview.webp",
    "films/intro/intro.srt",
    "films/intro/intro.vtt",
    "films/intro/intro.scene-1.jpg",
    "films/intro/intro.scene-2.jpg",
    "films/intro/intro.scene-3.jpg",
    "films/intro/intro.result.json",
}


def composed(store: Any, s3: Any, scan: OutputScan | None = None) -> None:
    request = composition(preview=True, output={"prefix": "films/intro", "filename": "intro.mp4"})
    record = JobRecord.new("job-1", request)
    for step in request.worker_steps:
        record.start_step(step)  # type: ignore[arg-type]
        record.finish_step(step)  # type: ignore[arg-type]
    assert store.create(record)
    marker = delivered(store, s3, StepAddress(step="compose"), COMPOSED)
    if scan is not None:
        store.put_step_result("job-1", StepAddress(step="compose"), marker.model_copy(update={"scan": scan}))


def output_objects(s3: Any) -> set[str]:
    return {key for bucket, key in s3.objects if bucket == OUTPUT}


@pytest.fixture
def audit(ddb: Any) -> AuditLog:
    return AuditLog(JOBS_TABLE, ddb)


def test_releasing_a_held_composition_publishes_every_held_file(config, store, s3, audit):
    composed(store, s3, FLAGGED)
    assert finalize_job("job-1", config, store, s3).status == "held"
    assert output_objects(s3) == set()
    announced: list[JobEvent] = []

    record = release_job("job-1", "alice", config, store, s3, audit, announced.append)

    assert record.status == "completed"
    assert output_objects(s3) == PUBLISHED
    # each file is the one the compose step made for its role, not another file of the same kind
    assert s3.objects[(OUTPUT, "films/intro/intro.vtt")].body == b"captions_vtt of compose"
    assert s3.objects[(OUTPUT, "films/intro/intro.scene-2.jpg")].body == b"scene_thumbnail_1 of compose"
    assert {key for bucket, key in s3.objects if bucket == WORK and key.startswith("held/")} == set()


def test_a_failure_after_publishing_removes_every_file_the_composition_published(config, store, s3):
    composed(store, s3)
    published = finalize_job("job-1", config, store, s3)  # then, say, a later step failed the job
    assert output_objects(s3) == PUBLISHED
    s3.put_object(Bucket=OUTPUT, Key="films/intro/notes.txt", Body=b"the user's own file")
    failed = published.model_copy(deep=True)
    failed.status = "running"
    failed.mark_failed(JobError(code=ErrorCode.GENERATION_FAILED, message="notify crashed", step="finalize"))

    removed = remove_published(failed, config, s3)

    assert set(removed) == PUBLISHED
    assert output_objects(s3) == {"films/intro/notes.txt"}
