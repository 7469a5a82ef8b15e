"""A step retried (heartbeat timeout, transient error, quality re-render) runs as a new attempt; the
attempt it replaced may still deliver its markers late. Only the attempt dispatched last can change
what the step leaves (its result, its set-aside render, its error), so finalize always publishes
the retry's outputs. Real dispatch, complete and finalize on the real JobStore (moto's DynamoDB)."""

from __future__ import annotations

from typing import Any

import pytest

from talkstack.contract.record import JobError, JobRecord, utc_now
from talkstack.contract.state import DispatchInput
from talkstack.contract.worker import (
    ErrorMarker,
    Marker,
    MarkerKind,
    ResultMarker,
    StepAddress,
    marker_key,
)
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.complete import Completer
from talkstack.pipeline.dispatch import dispatch_step
from talkstack.pipeline.finalize import finalize_job
from talkstack.pipeline.plan import plan_job
from talkstack.pipeline.step_results import rejected_result
from talkstack.pipeline.store import JobStore
from tests.support.fakes import FakeBackends, FakeS3, FakeStepFunctions
from tests.support.steps import (
    OUTPUT,
    WORK,
    avatar_request,
    output_keys,
    parallel_avatar_job,
    quality_report,
    worker_result,
)

AVATAR = StepAddress(step="avatar")


@pytest.fixture
def backends() -> FakeBackends:
    return FakeBackends()


@pytest.fixture
def complete(config, store, s3, sfn, emit) -> Completer:
    return Completer(config, store, s3, sfn, emit)


@pytest.fixture
def planned(config, store: JobStore) -> str:
    """An avatar job, planned (the Plan state ran)."""
    assert store.create(JobRecord.new("job-1", avatar_request()))
    plan_job("job-1", config, store)
    return "job-1"


@pytest.fixture
def parallel(config, store: JobStore) -> str:
    """A parallel long avatar, planned, its speech cut into two chunks."""
    return parallel_avatar_job(config, store, chunks=2)


def dispatch(config, store, s3, backends, retry_count: int, token: str, step: str = "avatar", **fields: Any):
    """The state machine (re)entering a worker state: attempt retry_count + 1, with its own token."""
    event = DispatchInput.model_validate(
        {"task_token": token, "job_id": "job-1", "step": step, "retry_count": retry_count, **fields}
    )
    task, _, _ = dispatch_step(event, config, store, s3, backends)
    return task.attempt_id


def land(complete: Completer, s3: FakeS3, marker: Marker, kind: MarkerKind) -> str:
    key = marker_key("job-1", marker.attempt_id, kind)
    s3.put_object(Bucket=WORK, Key=key, Body=marker.model_dump_json().encode())
    return complete.handle(WORK, key)


def timed_out(sfn: FakeStepFunctions, token: str) -> None:
    """Step Functions gave up on the task (heartbeat timeout) and retried the state."""
    sfn.closed_tokens[token] = "TaskTimedOut"


def published_video(config, store, s3: FakeS3) -> bytes:
    record = finalize_job("job-1", config, store, s3)
    assert record.status == "completed"
    return s3.objects[(OUTPUT, output_keys(record)["video"])].body


def test_a_late_result_of_the_replaced_attempt_cannot_replace_the_retrys(
    config, store, s3, sfn, backends, complete, planned
):
    # Given attempt 1 went silent, Step Functions retried the step, and attempt 2 delivered
    first = dispatch(config, store, s3, backends, 0, "token-1")
    timed_out(sfn, "token-1")
    second = dispatch(config, store, s3, backends, 1, "token-2")
    retry = worker_result(s3, "job-1", second)
    assert land(complete, s3, retry, "result") == "success"

    # When attempt 1's result arrives after all (before finalize runs)
    late = worker_result(s3, "job-1", first)
    outcome = land(complete, s3, late, "result")

    # Then it changes nothing: the step result is attempt 2's, and finalize publishes attempt 2's video
    assert outcome == "ignored: attempt superseded (result)"
    assert store.get_step_result("job-1", AVATAR, ResultMarker) == retry
    assert store.get_token("job-1", first).state == "closed"
    assert [c["taskToken"] for c in sfn.called("SendTaskSuccess")] == ["token-2"]
    assert published_video(config, store, s3) == f"video rendered by {second}".encode()


def test_a_late_result_arriving_while_the_retry_renders_leaves_no_result(
    config, store, s3, sfn, backends, complete, planned
):
    first = dispatch(config, store, s3, backends, 0, "token-1")
    timed_out(sfn, "token-1")
    second = dispatch(config, store, s3, backends, 1, "token-2")

    # Attempt 1's result lands while attempt 2 still renders: no step result yet
    assert land(complete, s3, worker_result(s3, "job-1", first), "result").startswith("ignored")
    assert store.get_step_result("job-1", AVATAR, ResultMarker) is None
    assert sfn.called("SendTaskSuccess") == []

    # and attempt 2's, when it comes, is the one finalize publishes
    assert land(complete, s3, worker_result(s3, "job-1", second), "result") == "success"
    assert published_video(config, store, s3) == f"video rendered by {second}".encode()


def test_a_late_error_of_the_replaced_attempt_is_not_recorded_as_the_steps(
    config, store, s3, sfn, backends, complete, planned
):
    first = dispatch(config, store, s3, backends, 0, "token-1")
    timed_out(sfn, "token-1")
    dispatch(config, store, s3, backends, 1, "token-2")
    error = JobError(code=ErrorCode.NO_FACE_DETECTED, message="no face", step="avatar")
    late = ErrorMarker(attempt_id=first, error=error, retryable=False, worker="gpu:1", at=utc_now())

    assert land(complete, s3, late, "error") == "ignored: attempt superseded (error)"

    assert store.get_worker_error("job-1", AVATAR) is None and sfn.called("SendTaskFailure") == []


def test_each_chunk_has_its_own_current_attempt(config, store, s3, sfn, backends, complete, parallel):
    # Chunk 0 is on its second attempt; chunk 1 still on its first, which is current for chunk 1
    chunk = {"chunk": 0}
    first_c0 = dispatch(config, store, s3, backends, 0, "c0-1", **chunk)
    timed_out(sfn, "c0-1")
    second_c0 = dispatch(config, store, s3, backends, 1, "c0-2", **chunk)
    first_c1 = dispatch(config, store, s3, backends, 0, "c1-1", chunk=1)

    assert land(complete, s3, worker_result(s3, "job-1", first_c1), "result") == "success"
    assert land(complete, s3, worker_result(s3, "job-1", first_c0), "result").startswith("ignored")
    assert land(complete, s3, worker_result(s3, "job-1", second_c0), "result") == "success"

    chunk_0 = store.get_step_result("job-1", StepAddress(step="avatar", chunk=0), ResultMarker)
    chunk_1 = store.get_step_result("job-1", StepAddress(step="avatar", chunk=1), ResultMarker)
    assert chunk_0.attempt_id == second_c0 and chunk_1.attempt_id == first_c1


def test_a_late_failing_render_of_a_replaced_chunk_attempt_is_not_set_aside(
    config, store, s3, sfn, backends, complete, parallel
):
    # A chunk's failing render counts as "sent back" for the next attempt (used whatever its score):
    # one from an attempt already replaced must not be taken for that.
    c1 = StepAddress(step="avatar", chunk=1)
    first = dispatch(config, store, s3, backends, 0, "c1-1", chunk=1)
    timed_out(sfn, "c1-1")
    dispatch(config, store, s3, backends, 1, "c1-2", chunk=1)
    poor = worker_result(s3, "job-1", first, quality=quality_report(lipsync=0.1))

    assert land(complete, s3, poor, "result") == "ignored: attempt superseded (result)"

    assert rejected_result(store, "job-1", c1) is None and sfn.called("SendTaskFailure") == []


def test_a_dispatch_that_runs_after_a_later_attempts_starts_no_worker(config, store, s3, backends, planned):
    # Attempt 2 is dispatched (the state machine gave up on attempt 1 while its dispatch was slow)
    second = dispatch(config, store, s3, backends, 1, "token-2")

    with pytest.raises(TalkstackError, match="a later attempt of avatar is already dispatched"):
        dispatch(config, store, s3, backends, 0, "token-1")

    assert [t.attempt_id for t in backends.submitted] == [second]
    assert store.current_attempt("job-1", AVATAR) == second
