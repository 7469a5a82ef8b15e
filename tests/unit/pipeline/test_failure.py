"""The failure path (every state's Catch): record the error with its specific code and step, create a
record for a request that never validated, and remove what this job had already published, never
its inputs nor anyone else's outputs. A finished or cancelled job keeps its state."""

from __future__ import annotations

import json
from typing import Any

from talkstack.contract.record import JobError, JobResult, OutputFile
from talkstack.contract.worker import StepAddress
from talkstack.errors import ErrorCode
from talkstack.pipeline.failure import JobFailed, record_failure
from talkstack.pipeline.outputs import remove_published
from talkstack.pipeline.store import JobStore
from tests.support.fakes import FakeBackends
from tests.support.steps import INPUT, OUTPUT, make_config, publish_outputs, running_job, worker_result

EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:jobs:job-1"


def job_failed(code: ErrorCode, message: str, step: str | None) -> dict[str, str]:
    """The Catch's {"Error", "Cause"} for a handler that raised JobFailed (services.job_step)."""
    error = JobFailed(JobError(code=code, message=message, step=step))
    cause = {"errorMessage": str(error), "errorType": "JobFailed"}
    return {"Error": "JobFailed", "Cause": json.dumps(cause)}


def fail(job_id: str, states_error: dict[str, Any], raw: Any, config, store, s3, backends=None):
    return record_failure(job_id, states_error, raw, EXECUTION, config, store, s3, backends or FakeBackends())


def test_a_request_that_never_validated_gets_a_failed_record(config, store, s3):
    # Given validate refused the manifest (no record exists), and the execution input was ingest's
    # envelope with the refused request in it
    raw = {
        "request": {
            "task": "avatar",
            "callback_id": "cb-7",
            "notify": {"webhook_url": "https://example.com/hook"},
            "inputs": {"image": "portrait.png", "audio": "nowhere.wav"},
        },
        "source": {"kind": "s3", "bucket": INPUT, "key": "inputs/talk/job.json"},
        "error": {"Error": "JobFailed"},  # the Catch's ResultPath adds this; it is not the request
    }
    error = job_failed(
        ErrorCode.INPUT_NOT_FOUND, "inputs.audio: s3://in-bucket/nowhere.wav does not exist", "validate"
    )

    record = fail("job-1", error, raw, config, store, s3)

    # Then the failed record carries the validate error, what could be salvaged, and the source
    stored = store.get("job-1")
    assert stored == record and stored.status == "failed" and stored.request is None
    assert stored.error.code == "INPUT_NOT_FOUND" and stored.error.step == "validate"
    assert stored.task == "avatar" and stored.callback_id == "cb-7"
    assert str(stored.notify.webhook_url) == "https://example.com/hook"
    assert stored.source.key == "inputs/talk/job.json" and stored.source.execution_arn == EXECUTION
    assert s3.called("DeleteObject") == []


def test_a_worker_failure_fails_the_job_at_its_step_with_its_code(config, store, s3):
    running_job(store, "job-1")

    record = fail(
        "job-1", job_failed(ErrorCode.NO_FACE_DETECTED, "no face", "avatar"), None, config, store, s3
    )

    stored = store.get("job-1")
    assert stored == record and stored.status == "failed"
    assert stored.error.code == "NO_FACE_DETECTED" and stored.error.step == "avatar"
    assert stored.step("avatar").status == "failed"


def test_a_fatal_worker_error_without_a_cause_is_read_from_the_jobs_table(config, store, s3):
    # Given the worker's error was stored by complete, and Step Functions dropped the cause
    running_job(store, "job-1")
    worker_error = JobError(code=ErrorCode.AUDIO_TOO_SHORT, message="0.2 s of speech", step="avatar")
    store.put_worker_error("job-1", "avatar", worker_error, retryable=False)

    fail("job-1", {"Error": "Worker.Fatal", "Cause": ""}, None, config, store, s3)

    assert store.get("job-1").error == worker_error


def test_a_silent_worker_is_a_timeout_naming_the_attempts(config, store, s3):
    running_job(store, "job-1")
    store.update("job-1", lambda r: r.start_step("avatar"))  # the retry: attempt 2

    fail("job-1", {"Error": "States.HeartbeatTimeout", "Cause": ""}, None, config, store, s3)

    error = store.get("job-1").error
    assert error.code == "WORKER_TIMEOUT" and error.step == "avatar" and error.details == {"attempts": 2}


def test_an_unexpected_error_is_a_generation_failure_of_the_running_step(config, store, s3):
    running_job(store, "job-1")
    cause = json.dumps({"errorType": "KeyError", "errorMessage": "'outputs'"})

    fail("job-1", {"Error": "KeyError", "Cause": cause}, None, config, store, s3)

    error = store.get("job-1").error
    assert (
        error.code == "GENERATION_FAILED"
        and error.step == "avatar"
        and "KeyError: 'outputs'" in error.message
    )


def test_only_outputs_this_job_published_are_removed(config, store, s3):
    # Given a job that failed after publishing (e.g. finalize died after its copies), sharing its output
    # prefix with another job, with its inputs in the input bucket and a user's own file in its way
    mine = running_job(store, "job-1", output={"prefix": "shared", "filename": "mine.mp4"})
    other = running_job(store, "job-2", output={"prefix": "shared", "filename": "theirs.mp4"})
    my_keys = publish_outputs(s3, mine, owner="job-1")
    their_keys = publish_outputs(s3, other, owner="job-2")
    s3.put_object(
        Bucket=INPUT, Key="inputs/talk/portrait.png", Body=b"png", Metadata={"talkstack-job-id": "job-1"}
    )
    s3.put_object(Bucket=INPUT, Key="inputs/talk/speech.wav", Body=b"wav")

    fail(
        "job-1",
        job_failed(ErrorCode.GENERATION_FAILED, "finalize crashed", "finalize"),
        None,
        config,
        store,
        s3,
    )

    # Then exactly this job's published objects are gone
    assert all((OUTPUT, key) not in s3.objects for key in my_keys.values())
    assert all((OUTPUT, key) in s3.objects for key in their_keys.values())
    assert {k for _, k in s3.objects if k.startswith("inputs/")} == {
        "inputs/talk/portrait.png",
        "inputs/talk/speech.wav",
    }


def test_an_object_at_the_jobs_key_that_it_did_not_write_is_kept(config, store, s3):
    # Given the job's output key holds a file nobody's job wrote (no talkstack-job-id), e.g. the user's
    record = running_job(store, "job-1", output={"prefix": "mine", "filename": "talk.mp4"})
    keys = publish_outputs(s3, record, owner=None)

    fail("job-1", job_failed(ErrorCode.GENERATION_FAILED, "boom", "avatar"), None, config, store, s3)

    assert all((OUTPUT, key) in s3.objects for key in keys.values())


def test_outputs_in_the_requests_own_bucket_are_the_ones_removed(no_pipeline_environment, store, s3):
    config = make_config(writable_buckets="their-out")
    s3.buckets.add("their-out")
    record = running_job(store, "job-1", output={"bucket": "their-out"})
    keys = publish_outputs(s3, record, owner="job-1", bucket="their-out")

    fail("job-1", job_failed(ErrorCode.GENERATION_FAILED, "boom", "finalize"), None, config, store, s3)

    assert all(("their-out", key) not in s3.objects for key in keys.values())


def test_a_completed_job_keeps_its_result_and_its_outputs(config, store, s3):
    # Given finalize completed the job and published its outputs, then failed before returning (e.g.
    # writing result.json, or a Lambda timeout), so the Catch still routes to the failure path
    record = running_job(store, "job-1")
    keys = publish_outputs(s3, record, owner="job-1")
    video = OutputFile(kind="video", bucket=OUTPUT, key=keys["video"], content_type="video/mp4", bytes=9)
    store.update("job-1", lambda r: r.mark_completed(JobResult(outputs=[video])))

    fail(
        "job-1",
        job_failed(ErrorCode.GENERATION_FAILED, "result.json: throttled", "finalize"),
        None,
        config,
        store,
        s3,
    )

    # Then the job stays completed, and the outputs its result points at still exist
    stored = store.get("job-1")
    assert stored.status == "completed" and stored.error is None and stored.result.outputs == [video]
    assert all((OUTPUT, key) in s3.objects for key in keys.values())


def test_a_cancelled_job_stays_cancelled(config, store, s3):
    # Given the job was cancelled through the API while its step ran; the stopped step then failed
    running_job(store, "job-1")
    store.update("job-1", lambda r: r.mark_cancelled())

    record = fail("job-1", {"Error": "States.HeartbeatTimeout", "Cause": ""}, None, config, store, s3)

    # Then no error is recorded over the cancel (the handler reports CANCELLED and emits nothing)
    assert record.status == "cancelled" and record.error is None
    assert store.get("job-1").status == "cancelled" and store.get("job-1").error is None


def test_recording_the_same_failure_twice_keeps_the_first(config, store, s3):
    # Given a failure recorded once (a retried failure Lambda runs again, with another error)
    running_job(store, "job-1")
    fail("job-1", job_failed(ErrorCode.NO_FACE_DETECTED, "no face", "avatar"), None, config, store, s3)

    fail("job-1", {"Error": "States.Timeout", "Cause": ""}, None, config, store, s3)

    assert store.get("job-1").error.code == "NO_FACE_DETECTED"


def test_a_rejected_request_recorded_twice_is_created_once(config, store, s3):
    raw = {"task": "avatar", "colour": "blue"}
    error = job_failed(ErrorCode.INVALID_REQUEST, "colour: extra inputs are not permitted", "validate")
    first = fail("job-1", error, raw, config, store, s3)

    again = fail("job-1", error, raw, config, store, s3)

    assert again.error == first.error and again.status == "failed" and again.request is None


class FinalizeCompletesRightAfterTheRead(JobStore):
    """The jobs table, but right after the failure path first reads the running record, a finalize
    still running (a Lambda the state machine had already timed out) completes the job."""

    def __init__(self, store: JobStore, complete: Any) -> None:
        super().__init__(store.table, store.ddb)
        self.complete, self.raced = complete, False

    def get(self, job_id: str) -> Any:
        record = super().get(job_id)
        if not self.raced:
            self.raced = True
            self.complete()
        return record


def test_a_failure_racing_a_finalize_that_completes_the_job_removes_nothing(config, store, s3):
    # Given finalize published the outputs and is about to complete the record
    record = running_job(store, "job-1")
    keys = publish_outputs(s3, record, owner="job-1")
    video = OutputFile(kind="video", bucket=OUTPUT, key=keys["video"], content_type="video/mp4", bytes=9)
    racing = FinalizeCompletesRightAfterTheRead(
        store, lambda: store.update("job-1", lambda r: r.mark_completed(JobResult(outputs=[video])))
    )

    # When the failure path (the Catch of the timed-out Finalize) runs meanwhile
    fail("job-1", {"Error": "States.Timeout", "Cause": ""}, None, config, racing, s3)

    # Then the completed job keeps every output its result points at
    assert store.get("job-1").status == "completed"
    assert all((OUTPUT, key) in s3.objects for key in keys.values())


def test_the_one_place_that_deletes_outputs_never_deletes_a_completed_jobs(config, store, s3):
    # remove_published: how the failure path and cancel delete outputs (finalize deletes only the keys
    # it wrote, and only for a record that ended without completing)
    record = running_job(store, "job-1")
    keys = publish_outputs(s3, record, owner="job-1")
    completed = store.update("job-1", lambda r: r.mark_completed(JobResult(outputs=[])))

    assert remove_published(completed, config, s3) == []
    assert all((OUTPUT, key) in s3.objects for key in keys.values())


def test_a_chunks_fatal_error_without_a_cause_is_read_from_the_jobs_table(config, store, s3):
    # Given a parallel avatar's chunk 1 failed fatally (chunk 0 had a transient error before), the
    # Map failed with Worker.Fatal, and Step Functions dropped the cause (moto does)
    running_job(store, "job-1")
    retried = JobError(code=ErrorCode.GENERATION_FAILED, message="connection reset", step="avatar")
    fatal = JobError(code=ErrorCode.NO_FACE_DETECTED, message="no face in chunk 1", step="avatar")
    store.put_worker_error("job-1", StepAddress(step="avatar", chunk=0), retried, retryable=True)
    store.put_worker_error("job-1", StepAddress(step="avatar", chunk=1), fatal, retryable=False)

    fail("job-1", {"Error": "Worker.Fatal", "Cause": ""}, None, config, store, s3)

    # Then the job fails with the chunk's own error, not "internal error … Worker.Fatal"
    assert store.get("job-1").error == fatal


def test_a_timed_out_chunk_is_not_blamed_on_another_chunks_stale_error(config, store, s3):
    # Given chunk 10 once failed transiently and its retry rendered, and chunk 2 failed transiently
    # three times (the Map gave up: Worker.Transient, its cause dropped). "#10" sorts before "#2".
    running_job(store, "job-1")
    stale = JobError(code=ErrorCode.GENERATION_FAILED, message="chunk 10: connection reset", step="avatar")
    last = JobError(code=ErrorCode.GENERATION_FAILED, message="chunk 2: out of GPU memory", step="avatar")
    store.put_worker_error("job-1", StepAddress(step="avatar", chunk=10), stale, retryable=True)
    rendered = worker_result(s3, "job-1", "avatar-c10-2-x")
    store.put_step_result("job-1", StepAddress(step="avatar", chunk=10), rendered)
    store.put_worker_error("job-1", StepAddress(step="avatar", chunk=2), last, retryable=True)

    fail("job-1", {"Error": "Worker.Transient", "Cause": ""}, None, config, store, s3)

    # Then the job fails with the error of the chunk that never rendered
    assert store.get("job-1").error == last


def test_a_cancelled_job_failing_afterwards_stops_nothing_again(config, store, s3):
    # The cancel stopped the workers already; the failure of the stopped step must not do it again
    running_job(store, "job-1", call_id="modal:fc-1")
    store.update("job-1", lambda r: r.mark_cancelled())
    backends = FakeBackends()

    fail("job-1", {"Error": "States.HeartbeatTimeout", "Cause": ""}, None, config, store, s3, backends)

    assert backends.cancelled == [] and s3.called("PutObject") == []


def test_a_rejected_multitalk_v0_manifest_keeps_its_webhook(config, store, s3):
    # Given a MultiTalk API v0 manifest (its webhook under options) that validate refused
    raw = {
        "request": {"input": {"image": "nowhere.png"}, "options": {"webhook_url": "https://example.com/v0"}},
        "source": {"kind": "s3", "bucket": INPUT, "key": "inputs/v0/job.json"},
    }
    error = job_failed(ErrorCode.INPUT_NOT_FOUND, "input.image: nowhere.png does not exist", "validate")

    record = fail("job-1", error, raw, config, store, s3)

    # Then the failed job is still announced where the manifest asked
    assert record.task == "avatar" and str(record.notify.webhook_url) == "https://example.com/v0"
