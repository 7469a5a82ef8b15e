"""Cancel: the record turns cancelled under the optimistic lock first; then the cancel flag, the
execution, the worker call and anything already published; a finished job is a conflict."""

from __future__ import annotations

import json
from typing import Any

import pytest

from talkstack.contract.record import JobResult, OutputFile
from talkstack.errors import TalkstackError
from talkstack.pipeline.cancel import cancel_job
from talkstack.pipeline.store import JobStore
from tests.support.fakes import FakeBackends, client_error
from tests.support.steps import OUTPUT, STATE_MACHINE, WORK, publish_outputs, running_job

FLAG = "control/{}/cancel.json"


@pytest.fixture
def backends() -> FakeBackends:
    return FakeBackends()


def started(sfn: Any, job_id: str) -> str:
    """The job's execution, running; its ARN."""
    return sfn.start_execution(stateMachineArn=STATE_MACHINE, name=job_id, input="{}")["executionArn"]


def completed_result(job_id: str) -> JobResult:
    video = OutputFile(
        kind="video", bucket=OUTPUT, key=f"{job_id}/video.mp4", content_type="video/mp4", bytes=9
    )
    return JobResult(outputs=[video])


def test_cancelling_a_running_job_stops_everything_that_could_still_produce_output(
    config, store, s3, sfn, backends, emit
):
    # Given a job whose avatar step runs on a Modal call, inside a running execution
    running_job(store, "job-1", call_id="modal:fc-1")
    arn = started(sfn, "job-1")
    _, version = store.get_versioned("job-1")

    # When it is cancelled
    record, cancelled = cancel_job("job-1", config, store, s3, sfn, backends, emit)

    # Then the stored record is cancelled (written under the lock: a new version), its running step too
    stored, new_version = store.get_versioned("job-1")
    assert cancelled and record.status == stored.status == "cancelled" and new_version == version + 1
    assert stored.step("avatar").status == "cancelled" and stored.finished_at is not None
    # the cancel flag the workers poll is up
    flag = json.loads(s3.objects[(WORK, FLAG.format("job-1"))].body)
    assert flag["job_id"] == "job-1" and flag["cancelled_at"]
    # the execution is stopped, the Modal call cancelled, and job.cancelled sent once
    (stop,) = sfn.called("StopExecution")
    assert stop["executionArn"] == arn and sfn.executions[arn].status == "ABORTED"
    assert backends.cancelled == ["modal:fc-1"]
    assert emit.events == [("job-1", "job.cancelled", "cancelled")]


def test_cancelling_twice_changes_nothing_the_second_time(config, store, s3, sfn, backends, emit):
    running_job(store, "job-1")
    started(sfn, "job-1")
    first, _ = cancel_job("job-1", config, store, s3, sfn, backends, emit)
    before, calls = store.get_versioned("job-1"), (len(s3.calls), len(sfn.calls))

    again, cancelled = cancel_job("job-1", config, store, s3, sfn, backends, emit)

    assert not cancelled and again == first
    assert store.get_versioned("job-1") == before
    assert (len(s3.calls), len(sfn.calls)) == calls and backends.cancelled == ["modal:fc-1"]
    assert emit.types("job-1") == ["job.cancelled"]


@pytest.mark.parametrize("finished", ["completed", "failed"])
def test_a_finished_job_cannot_be_cancelled(config, store, s3, sfn, backends, emit, finished):
    # Given a job that already completed (or failed)
    running_job(store, "job-1")
    started(sfn, "job-1")
    if finished == "completed":
        store.update("job-1", lambda r: r.mark_completed(completed_result("job-1")))
    else:
        store.update("job-1", lambda r: r.mark_failed(RuntimeError("boom"), step="avatar"))
    before = store.get_versioned("job-1")

    # When someone cancels it
    with pytest.raises(TalkstackError) as caught:
        cancel_job("job-1", config, store, s3, sfn, backends, emit)

    # Then it is a CONFLICT naming the status, and nothing was touched
    assert caught.value.code == "CONFLICT" and caught.value.details["status"] == finished
    assert store.get_versioned("job-1") == before
    assert (WORK, FLAG.format("job-1")) not in s3.objects
    assert sfn.called("StopExecution") == [] and backends.cancelled == [] and emit.events == []


def test_the_decision_is_made_on_the_stored_record_not_the_callers_copy(
    config, store, s3, sfn, backends, emit
):
    # Given the caller read the job while it ran, and it completed since
    copy = running_job(store, "job-1")
    store.update("job-1", lambda r: r.mark_completed(completed_result("job-1")))

    with pytest.raises(TalkstackError) as caught:
        cancel_job("job-1", config, store, s3, sfn, backends, emit, current=copy)

    assert caught.value.code == "CONFLICT" and store.get("job-1").status == "completed"


class FinalizeWinsTheRace:
    """The DynamoDB client, but just before cancel's conditional write of the record lands, finalize
    completes the job (a real conditional write of its own, on the same table)."""

    def __init__(self, ddb: Any, store: JobStore, job_id: str) -> None:
        self.ddb, self.store, self.job_id, self.raced = ddb, store, job_id, False

    def put_item(self, **params: Any) -> Any:
        if not self.raced and params.get("ConditionExpression", "").startswith("version"):
            self.raced = True
            self.store.update(self.job_id, lambda r: r.mark_completed(completed_result(self.job_id)))
        return self.ddb.put_item(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ddb, name)


def test_a_cancel_that_loses_the_race_to_finalize_is_a_conflict(config, store, ddb, s3, sfn, backends, emit):
    # Given finalize completes the job between cancel's read and cancel's write
    running_job(store, "job-1")
    racing = JobStore(store.table, FinalizeWinsTheRace(ddb, store, "job-1"))

    # When cancel writes, its version check fails; it reads again and finds the job completed
    with pytest.raises(TalkstackError) as caught:
        cancel_job("job-1", config, racing, s3, sfn, backends, emit)

    # Then the completed record stands and no cancel side effect happened
    assert caught.value.code == "CONFLICT"
    assert store.get("job-1").status == "completed" and store.get("job-1").result is not None
    assert (WORK, FLAG.format("job-1")) not in s3.objects and emit.events == []


def test_a_job_without_an_execution_or_worker_call_is_still_cancelled(config, store, s3, sfn, backends, emit):
    # Given a job whose execution is gone (or never started) and whose step has no call yet
    running_job(store, "job-1", call_id=None)

    _, cancelled = cancel_job("job-1", config, store, s3, sfn, backends, emit)

    assert cancelled and store.get("job-1").status == "cancelled"
    assert len(sfn.called("StopExecution")) == 1 and backends.cancelled == []
    assert emit.types("job-1") == ["job.cancelled"]


def test_a_worker_call_that_cannot_be_cancelled_does_not_stop_the_cancel(config, store, s3, sfn, emit):
    # Given the Modal API refuses (the worker still stops at its next heartbeat: the flag is up)
    running_job(store, "job-1", call_id="modal:fc-1")
    backends = FakeBackends(fail=RuntimeError("modal is down"))

    _, cancelled = cancel_job("job-1", config, store, s3, sfn, backends, emit)

    assert cancelled and store.get("job-1").status == "cancelled" and backends.cancelled == ["modal:fc-1"]
    assert (WORK, FLAG.format("job-1")) in s3.objects and emit.types("job-1") == ["job.cancelled"]


def test_an_unexpected_step_functions_error_is_not_swallowed(config, store, s3, backends, emit):
    class Throttled:
        def stop_execution(self, **params: Any) -> None:
            raise client_error("StopExecution", "ThrottlingException", "Rate exceeded")

    running_job(store, "job-1")

    with pytest.raises(Exception, match="ThrottlingException"):
        cancel_job("job-1", config, store, s3, Throttled(), backends, emit)

    # The caller sees the failure; the record had already turned cancelled (the lock is taken first).
    assert store.get("job-1").status == "cancelled"


def test_outputs_published_before_the_cancel_are_removed_and_no_one_elses(
    config, store, s3, sfn, backends, emit
):
    # Given finalize had published this job's outputs, and a shared output prefix also holds another
    # job's files, when cancel wins the record
    mine = running_job(store, "job-1", output={"prefix": "shared", "filename": "mine.mp4"})
    other = running_job(store, "job-2", output={"prefix": "shared", "filename": "theirs.mp4"})
    my_keys = publish_outputs(s3, mine, owner="job-1")
    their_keys = publish_outputs(s3, other, owner="job-2")

    cancel_job("job-1", config, store, s3, sfn, backends, emit)

    assert all((OUTPUT, key) not in s3.objects for key in my_keys.values())
    assert all((OUTPUT, key) in s3.objects for key in their_keys.values())


def test_a_cancel_that_finds_the_job_cancelled_by_another_request_changes_nothing(
    config, store, s3, sfn, backends, emit
):
    # Given two cancels of one running job (a double click): both callers read it while it ran,
    # and the other one's cancel landed first
    copy = running_job(store, "job-1")
    started(sfn, "job-1")
    cancel_job("job-1", config, store, s3, sfn, backends, emit)
    before, calls, events = store.get_versioned("job-1"), (len(s3.calls), len(sfn.calls)), list(emit.events)

    # When this one goes ahead on its (stale) copy
    record, cancelled = cancel_job("job-1", config, store, s3, sfn, backends, emit, current=copy)

    # Then the stored record decides: it did not cancel the job (no second audit entry in the API),
    # and nothing is written, stopped or sent again (one job.cancelled webhook, not two)
    assert not cancelled and record.status == "cancelled"
    assert store.get_versioned("job-1") == before
    assert (len(s3.calls), len(sfn.calls)) == calls and backends.cancelled == ["modal:fc-1"]
    assert emit.events == events == [("job-1", "job.cancelled", "cancelled")]


def test_only_the_calls_of_running_steps_are_cancelled(config, store, s3, sfn, backends, emit):
    # Given a text avatar whose voice step finished on its own call and whose avatar step runs
    record = running_job(store, "job-1", call_id="modal:fc-avatar")

    def voice_done(current: Any) -> None:
        current.start_step("voice", backend="modal").call_id = "modal:fc-voice"
        current.finish_step("voice")

    store.update("job-1", voice_done)
    assert record.step("avatar").status == "running"

    cancel_job("job-1", config, store, s3, sfn, backends, emit)

    # Then only the running step's call is cancelled (the finished one has nothing left to stop)
    assert backends.cancelled == ["modal:fc-avatar"]
