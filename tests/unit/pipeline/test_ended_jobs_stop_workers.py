"""A job that ends stops the GPU tasks it started, and a retry stops the attempt it replaces: a key's
concurrency counts GPU tasks, and its slots are free as soon as the job's record has ended, so a
chunk still rendering (or a silent worker the state machine gave up on) must not go on for hours.

Real dispatch, complete, failure path and cancel on the real JobStore (moto's DynamoDB); worker calls
run on the backends fake, named as Modal calls are (`modal:…`), the kind a cancel can stop."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from talkstack.contract.record import JobError, JobRecord, JobResult, utc_now
from talkstack.contract.state import DispatchInput
from talkstack.contract.worker import (
    ErrorMarker,
    StepAddress,
    WorkerTaskBase,
    cancel_flag_key,
    marker_key,
)
from talkstack.errors import ErrorCode
from talkstack.pipeline.cancel import cancel_job
from talkstack.pipeline.complete import Completer
from talkstack.pipeline.dispatch import dispatch_step
from talkstack.pipeline.failure import record_failure
from talkstack.pipeline.plan import plan_job
from talkstack.pipeline.store import JobStore
from tests.support.fakes import FakeBackends, FakeStepFunctions
from tests.support.steps import WORK, avatar_request, parallel_avatar_job

FLAG = (WORK, cancel_flag_key("job-1"))
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:jobs:job-1"


@pytest.fixture
def backends() -> FakeBackends:
    return FakeBackends(name="modal")


@pytest.fixture
def parallel(config, store: JobStore) -> str:
    """A parallel long avatar, planned, its speech cut into three chunks."""
    return parallel_avatar_job(config, store, chunks=3)


@pytest.fixture
def planned(config, store: JobStore) -> str:
    """A single-step avatar job, planned."""
    assert store.create(JobRecord.new("job-1", avatar_request()))
    plan_job("job-1", config, store)
    return "job-1"


def dispatch(config, store, s3, backends, token: str, retry_count: int = 0, **fields: Any) -> str:
    """The state machine entering a worker state (attempt retry_count + 1); the attempt id."""
    event = DispatchInput.model_validate(
        {"task_token": token, "job_id": "job-1", "step": "avatar", "retry_count": retry_count, **fields}
    )
    task, _, _ = dispatch_step(event, config, store, s3, backends)
    return task.attempt_id


def call_of(store: JobStore, attempt_id: str) -> str:
    token = store.get_token("job-1", attempt_id)
    assert token is not None and token.call_id is not None
    return token.call_id


def fail(config, store, s3, backends, states_error: dict[str, Any]) -> JobRecord:
    return record_failure("job-1", states_error, None, EXECUTION, config, store, s3, backends)


def fatal_error_lands(complete: Completer, s3, attempt_id: str, code: ErrorCode) -> dict[str, str]:
    """A worker's fatal error marker, handled by complete; the Catch's error the Map then raises."""
    error = JobError(code=code, message="no face in the picture", step="avatar")
    marker = ErrorMarker(attempt_id=attempt_id, error=error, retryable=False, worker="gpu:1", at=utc_now())
    key = marker_key("job-1", attempt_id, "error")
    s3.put_object(Bucket=WORK, Key=key, Body=marker.model_dump_json().encode())
    assert complete.handle(WORK, key) == "failure Worker.Fatal"
    return {"Error": "Worker.Fatal", "Cause": json.dumps(error.model_dump(mode="json"))}


# --- the failure path ---------------------------------------------------------------------------------


def test_a_job_that_times_out_cancels_every_chunk_call_still_running(config, store, s3, backends, parallel):
    # Given three chunks render side by side on three calls, one of which already delivered
    attempts = [dispatch(config, store, s3, backends, f"c{i}", chunk=i) for i in range(3)]
    calls = [call_of(store, a) for a in attempts]
    assert len(set(calls)) == 3
    store.set_token_state("job-1", attempts[2], "succeeded")

    # When the chunk Map runs past its time limit and the failure path records it
    record = fail(config, store, s3, backends, {"Error": "States.Timeout", "Cause": ""})

    # Then the job failed with its own error, both calls still running were cancelled (not only the
    # last one dispatched, the one the job record names), and the cancel flag is up for any worker
    assert record.status == "failed" and record.error.code == "WORKER_TIMEOUT"
    assert sorted(backends.cancelled) == sorted(calls[:2])
    assert json.loads(s3.objects[FLAG].body)["job_id"] == "job-1"


def test_a_chunk_that_fails_fatally_stops_the_chunks_still_rendering(
    config, store, s3, sfn: FakeStepFunctions, emit, backends, parallel
):
    attempts = [dispatch(config, store, s3, backends, f"c{i}", chunk=i) for i in range(3)]
    calls = [call_of(store, a) for a in attempts]
    complete = Completer(config, store, s3, sfn, emit)

    # When chunk 1's worker reports a fatal error (its call has ended), the Map fails, and the Catch
    # runs the failure path
    states_error = fatal_error_lands(complete, s3, attempts[1], ErrorCode.NO_FACE_DETECTED)
    record = fail(config, store, s3, backends, states_error)

    # Then chunks 0 and 2 are cancelled, chunk 1 (finished) is not, and the job fails with chunk 1's error
    assert record.error.code == "NO_FACE_DETECTED" and store.get("job-1").status == "failed"
    assert sorted(backends.cancelled) == [calls[0], calls[2]]
    assert FLAG in s3.objects


def test_a_cancel_that_fails_is_logged_and_the_job_fails_with_its_own_error(
    config, store, s3, parallel, caplog
):
    backends = FakeBackends(name="modal")
    attempts = [dispatch(config, store, s3, backends, f"c{i}", chunk=i) for i in range(2)]
    backends.fail = RuntimeError("modal is down")

    with caplog.at_level(logging.WARNING):
        record = fail(config, store, s3, backends, {"Error": "States.HeartbeatTimeout", "Cause": ""})

    stored = store.get("job-1")
    assert record.status == stored.status == "failed" and stored.error.code == "WORKER_TIMEOUT"
    assert sorted(backends.cancelled) == sorted(call_of(store, a) for a in attempts)  # each was tried
    assert FLAG in s3.objects  # the workers still stop at their next heartbeat
    assert "modal is down" in caplog.text


def test_a_cancel_flag_that_cannot_be_written_still_fails_the_job_and_cancels_the_calls(
    config, store, s3, backends, parallel, caplog
):
    attempts = [dispatch(config, store, s3, backends, f"c{i}", chunk=i) for i in range(2)]
    s3.denied.add(FLAG)

    with caplog.at_level(logging.WARNING):
        record = fail(config, store, s3, backends, {"Error": "States.Timeout", "Cause": ""})

    assert record.status == "failed" and record.error.code == "WORKER_TIMEOUT"
    assert sorted(backends.cancelled) == sorted(call_of(store, a) for a in attempts)
    assert FLAG not in s3.objects and "AccessDenied" in caplog.text


def test_a_completed_job_is_left_alone(config, store, s3, backends, planned):
    # Finalize completed the job, then failed before returning: nothing of it is stopped or removed
    dispatch(config, store, s3, backends, "t1")
    store.update("job-1", lambda r: r.mark_completed(JobResult(outputs=[])))

    record = fail(config, store, s3, backends, {"Error": "States.Timeout", "Cause": ""})

    assert record.status == "completed" and backends.cancelled == [] and FLAG not in s3.objects


def test_a_job_dispatched_before_calls_were_kept_per_attempt_still_has_its_call_cancelled(
    config, store, s3, backends
):
    # A job in flight across the deploy: its running step names its call, no TOKEN item does
    record = JobRecord.new("job-1", avatar_request())
    record.start_step("avatar", backend="modal").call_id = "modal:fc-old"
    assert store.create(record)

    fail(config, store, s3, backends, {"Error": "States.Timeout", "Cause": ""})

    assert backends.cancelled == ["modal:fc-old"] and FLAG in s3.objects


def test_cancelling_through_the_api_cancels_every_chunk_call(
    config, store, s3, sfn, emit, backends, parallel
):
    attempts = [dispatch(config, store, s3, backends, f"c{i}", chunk=i) for i in range(3)]

    cancel_job("job-1", config, store, s3, sfn, backends, emit)

    assert sorted(backends.cancelled) == sorted(call_of(store, a) for a in attempts)


# --- superseded attempts ------------------------------------------------------------------------------


def test_a_retry_cancels_the_call_of_the_attempt_it_replaces(config, store, s3, backends, planned):
    # Given attempt 1 went silent and Step Functions retried the step (its token never answered)
    first = dispatch(config, store, s3, backends, "token-1")

    second = dispatch(config, store, s3, backends, "token-2", retry_count=1)

    # Then attempt 1's call is cancelled, attempt 2's is not
    assert backends.cancelled == [call_of(store, first)]
    assert call_of(store, second) != call_of(store, first)


def test_a_retry_of_a_chunk_cancels_only_that_chunks_replaced_call(config, store, s3, backends, parallel):
    c0 = dispatch(config, store, s3, backends, "c0-1", chunk=0)
    dispatch(config, store, s3, backends, "c1-1", chunk=1)

    dispatch(config, store, s3, backends, "c0-2", retry_count=1, chunk=0)

    assert backends.cancelled == [call_of(store, c0)]


@pytest.mark.parametrize("state", ["failed", "succeeded"])
def test_a_retry_after_the_worker_answered_cancels_nothing(config, store, s3, backends, planned, state):
    # A transient error or a quality re-render: the replaced worker has already ended
    first = dispatch(config, store, s3, backends, "token-1")
    store.set_token_state("job-1", first, state)

    dispatch(config, store, s3, backends, "token-2", retry_count=1)

    assert backends.cancelled == []


def test_the_same_attempt_dispatched_again_does_not_cancel_itself(config, store, s3, backends, planned):
    # A dispatch Lambda retried with the same token: the same attempt id, not a replaced attempt
    dispatch(config, store, s3, backends, "token-1")
    dispatch(config, store, s3, backends, "token-1")

    assert backends.cancelled == []


class RetriedWhileStarting(FakeBackends):
    """Attempt 1's call starts, and before its dispatch stores the call id, Step Functions has
    already retried the step and attempt 2's dispatch ran (it found no call to cancel)."""

    def __init__(self, retry: Any) -> None:
        super().__init__(name="modal")
        self.retry = retry

    def submit(self, task: WorkerTaskBase) -> str:
        call_id = super().submit(task)
        if task.attempt == 1:
            self.retry()
        return call_id


def test_an_attempt_replaced_while_its_call_started_cancels_its_own_call(config, store, s3, planned):
    backends = RetriedWhileStarting(lambda: dispatch(config, store, s3, backends, "token-2", retry_count=1))

    first = dispatch(config, store, s3, backends, "token-1")

    assert backends.cancelled == [call_of(store, first)] == ["modal:call-1"]
    assert store.current_attempt("job-1", StepAddress(step="avatar")) != first


def test_a_failed_cancel_of_a_replaced_call_does_not_stop_the_retry(config, store, s3, planned, caplog):
    backends = FakeBackends(name="modal", fail=RuntimeError("modal is down"))
    dispatch(config, store, s3, backends, "token-1")

    with caplog.at_level(logging.WARNING):
        second = dispatch(config, store, s3, backends, "token-2", retry_count=1)

    assert len(backends.submitted) == 2 and backends.submitted[1].attempt_id == second
    assert "modal is down" in caplog.text


def test_stopping_workers_never_spends_the_failure_lambdas_last_seconds(
    config, store, s3, backends, parallel
):
    # Given three chunk calls running, and a Modal API so slow that each cancel takes 4 s
    attempts = [dispatch(config, store, s3, backends, f"c{i}", chunk=i) for i in range(3)]
    calls = [call_of(store, a) for a in attempts]
    clock = {"now": 1000.0}

    class SlowBackends(FakeBackends):
        def cancel(self, call_id: str) -> bool:
            clock["now"] += 4.0
            return super().cancel(call_id)

    slow = SlowBackends(name="modal")
    left = 15.0  # seconds of Lambda time when the failure path starts; 10 are kept back
    import talkstack.pipeline.cancel as cancel_module
    import talkstack.pipeline.failure as failure_module

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cancel_module.time, "monotonic", lambda: clock["now"])
        patch.setattr(failure_module.time, "monotonic", lambda: clock["now"])
        record = record_failure(
            "job-1",
            {"Error": "States.Timeout", "Cause": ""},
            None,
            EXECUTION,
            config,
            store,
            s3,
            slow,
            time_left_s=lambda: left,
        )

    # Then the job failed and its flag is up (every worker stops at its next heartbeat), but only the
    # cancels that fit in the 5 s before the margin were made: the Lambda returns in time to announce it
    assert record.status == "failed" and json.loads(s3.objects[FLAG].body)["job_id"] == "job-1"
    assert slow.cancelled == calls[:2]
