"""A flagged output is held, not published: finalize copies it to `held/<job>/` in the work bucket
and the job ends `held` (nothing in the output bucket, no result.json); an operator's release
publishes it with finalize's own publish code and completes the job; a delete removes it and fails
the job with CONTENT_REFUSED. An output no classifier scanned is published and says so, or held
when the operator's policy says hold."""

from __future__ import annotations

from typing import Any

import pytest

from talkstack.cli.held_listing import list_held
from talkstack.contract.events import JobEvent
from talkstack.contract.record import JobRecord
from talkstack.contract.scan import FrameScores, OutputScan
from talkstack.contract.state import NotifyRequest
from talkstack.contract.worker import StepAddress
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.audit import AuditLog
from talkstack.pipeline.finalize import finalize_job
from talkstack.pipeline.held_review import delete_job, release_job
from talkstack.pipeline.notify import event_for
from tests.support.steps import (
    JOBS_TABLE,
    OUTPUT,
    WORK,
    avatar_request,
    make_config,
    output_keys,
    worker_result,
)

FLAGGED = OutputScan(
    status="flagged",
    model="Falconsai/nsfw_image_detection",
    threshold=0.5,
    sampled_s=[0.0, 1.0, 2.0],
    flagged_frames=[FrameScores(t_s=1.0, scores={"nsfw": 0.97, "normal": 0.03})],
    categories=["nsfw"],
    reasons=["frame at 1.00 s: nsfw 0.97 (threshold 0.5)"],
)


def rendered(store: Any, s3: Any, scan: OutputScan | None) -> None:
    request = avatar_request()
    record = JobRecord.new("job-1", request)
    record.start_step("avatar", model=request.primary_model)
    record.finish_step("avatar")
    assert store.create(record)
    marker = worker_result(s3, "job-1", "avatar-1-0123456789", scan=scan)
    store.put_step_result("job-1", StepAddress(step="avatar"), marker)


def job_objects(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    return sorted(key for (b, key) in s3.objects if b == bucket and key.startswith(prefix))


@pytest.fixture
def audit(ddb: Any) -> AuditLog:
    return AuditLog(JOBS_TABLE, ddb)


def test_a_flagged_output_is_held_in_the_work_bucket_and_nothing_is_published(config, store, s3, ddb):
    rendered(store, s3, FLAGGED)

    record = finalize_job("job-1", config, store, s3)

    assert record.status == "held" and store.get("job-1").status == "held"
    assert job_objects(s3, OUTPUT) == []  # no video, no thumbnail, no result.json
    assert job_objects(s3, WORK, "held/job-1/") == ["held/job-1/thumbnail.jpg", "held/job-1/video.mp4"]
    assert record.result.outputs == [] and {o.kind for o in record.result.held} == {"video", "thumbnail"}
    assert record.result.scan.status == "flagged" and record.result.scan.speech == "not_scanned"
    # The state machine's NotifyCompleted announces what happened: job.held, with the scan.
    event, _ = event_for(NotifyRequest(job_id="job-1", type="job.completed"), store)
    assert event.type == "job.held" and event.status == "held" and event.result is None
    assert event.scan.categories == ["nsfw"]
    # A retried finalize changes nothing, and the operator's listing finds it.
    assert finalize_job("job-1", config, store, s3).status == "held"
    assert job_objects(s3, OUTPUT) == []
    assert [r.job_id for r in list_held(ddb, JOBS_TABLE)] == ["job-1"]


def test_release_publishes_the_held_outputs_and_completes_the_job(config, store, s3, audit):
    rendered(store, s3, FLAGGED)
    finalize_job("job-1", config, store, s3)
    held_video = s3.objects[(WORK, "held/job-1/video.mp4")].body
    announced: list[JobEvent] = []

    record = release_job("job-1", "alice", config, store, s3, audit, announced.append)

    keys = output_keys(record)
    assert record.status == "completed" and store.get("job-1").status == "completed"
    assert s3.objects[(OUTPUT, keys["video"])].body == held_video
    assert s3.objects[(OUTPUT, keys["video"])].metadata == {"talkstack-job-id": "job-1"}
    assert (OUTPUT, keys["result"]) in s3.objects and (OUTPUT, keys["thumbnail"]) in s3.objects
    assert job_objects(s3, WORK, "held/") == []
    assert [o.key for o in record.result.outputs] == [keys["video"], keys["thumbnail"]]
    assert record.result.held == [] and record.result.scan.status == "flagged"
    assert [e.type for e in announced] == ["job.completed"]
    entries, _ = audit.trail("operator")  # a direct start: the operator trail
    assert [(e.action, e.details["operator"]) for e in entries] == [("moderation.released", "alice")]
    with pytest.raises(TalkstackError) as again:  # released once: a second release is a conflict
        release_job("job-1", "alice", config, store, s3, audit, announced.append)
    assert again.value.code == ErrorCode.CONFLICT


def test_held_outputs_that_expired_unreviewed_cannot_be_released_but_the_job_can_be_closed(
    config, store, s3, audit
):
    rendered(store, s3, FLAGGED)
    finalize_job("job-1", config, store, s3)
    for key in job_objects(s3, WORK, "held/"):  # the work bucket's lifecycle rule took them
        s3.delete_object(Bucket=WORK, Key=key)
    announced: list[JobEvent] = []

    with pytest.raises(TalkstackError) as gone:
        release_job("job-1", "alice", config, store, s3, audit, announced.append)
    assert gone.value.code == ErrorCode.NOT_FOUND and "moderation delete job-1" in gone.value.message
    assert store.get("job-1").status == "held" and announced == [] and job_objects(s3, OUTPUT) == []

    record = delete_job("job-1", "bob", config, store, s3, audit, announced.append)
    assert record.status == "failed" and [e.type for e in announced] == ["job.failed"]


def test_delete_removes_the_held_outputs_and_fails_the_job(config, store, s3, audit):
    rendered(store, s3, FLAGGED)
    finalize_job("job-1", config, store, s3)
    announced: list[JobEvent] = []

    record = delete_job("job-1", "bob", config, store, s3, audit, announced.append)

    assert record.status == "failed" and record.error.code == ErrorCode.CONTENT_REFUSED
    assert record.error.details["category"] == "nsfw"
    assert job_objects(s3, WORK, "held/") == [] and job_objects(s3, OUTPUT) == []
    assert [e.type for e in announced] == ["job.failed"]
    entries, _ = audit.trail("operator")
    assert [(e.action, e.details["operator"]) for e in entries] == [("moderation.deleted", "bob")]


def test_an_unscanned_output_is_published_and_says_so(config, store, s3):
    rendered(store, s3, None)  # a worker without a classifier: no verdict

    record = finalize_job("job-1", config, store, s3)

    assert record.status == "completed"
    assert record.result.scan.status == "not_scanned" and record.result.scan.reasons
    assert (OUTPUT, output_keys(record)["video"]) in s3.objects


def test_the_hold_policy_holds_unscanned_outputs(no_pipeline_environment, store, s3):
    rendered(store, s3, OutputScan(status="not_scanned", reasons=["no classifier"]))

    record = finalize_job("job-1", make_config(scan_not_scanned="hold"), store, s3)

    assert record.status == "held" and job_objects(s3, OUTPUT) == []


def test_a_passed_output_is_published(config, store, s3):
    rendered(store, s3, OutputScan(status="passed", model="m", threshold=0.5, sampled_s=[0.0, 2.0]))

    assert finalize_job("job-1", config, store, s3).status == "completed"
