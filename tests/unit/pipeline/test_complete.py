"""Complete: a worker's marker in the work bucket, matched to its attempt's token, becomes a heartbeat
(+ job progress), a task success (after checking the outputs are really there) or a task failure
(fatal or transient); markers of unknown or closed attempts change nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from talkstack.contract.parse import parse_job_request
from talkstack.contract.record import JobError, JobRecord, utc_now
from talkstack.contract.worker import (
    ErrorMarker,
    Marker,
    MarkerKind,
    ProgressMarker,
    ResultMarker,
    StepAddress,
    marker_key,
)
from talkstack.errors import ErrorCode
from talkstack.pipeline.complete import Completer
from talkstack.pipeline.store import JobStore
from talkstack.settings.quality import QualityThresholds
from tests.support.fakes import FakeS3, FakeStepFunctions, client_error
from tests.support.steps import INPUT, STATE_MACHINE, WORK, quality_report, running_job, worker_result

AVATAR = StepAddress(step="avatar")
ATTEMPT = "avatar-1-0123456789"


@pytest.fixture
def complete(config, store, s3, sfn, emit) -> Completer:
    return Completer(config, store, s3, sfn, emit)


def waiting(
    store: JobStore, attempt_id: str = ATTEMPT, step: StepAddress = AVATAR, token: str = "token-1"
) -> str:
    """The token dispatch stored for an attempt the state machine waits on."""
    store.put_token("job-1", attempt_id, step, token, 3600)
    return attempt_id


def land(complete: Completer, s3: FakeS3, marker: Marker, kind: MarkerKind) -> str:
    """The worker PUTs its marker; S3 notifies the complete Lambda of the key."""
    key = marker_key("job-1", marker.attempt_id, kind)
    s3.put_object(Bucket=WORK, Key=key, Body=marker.model_dump_json().encode())
    return complete.handle(WORK, key)


def progress(value: float, attempt_id: str = ATTEMPT, message: str | None = None) -> ProgressMarker:
    return ProgressMarker(attempt_id=attempt_id, progress=value, message=message, at=utc_now())


def failure(retryable: bool, attempt_id: str = ATTEMPT) -> ErrorMarker:
    error = JobError(code=ErrorCode.NO_FACE_DETECTED, message="no face in the photo", step="avatar")
    return ErrorMarker(
        attempt_id=attempt_id, error=error, retryable=retryable, worker="gpu-box:42", at=utc_now()
    )


# --- what is not this Lambda's business --------------------------------------------------------------


def test_a_key_that_is_not_a_marker_is_ignored(complete, store, s3, sfn):
    running_job(store, "job-1")
    waiting(store)
    s3.put_object(Bucket=WORK, Key=f"work/job-1/{ATTEMPT}/video.mp4", Body=b"v")

    for key in (f"work/job-1/{ATTEMPT}/video.mp4", f"markers/job-1/{ATTEMPT}/notes.json", "markers/x.json"):
        assert complete.handle(WORK, key).startswith("ignored")

    assert sfn.calls == [] and s3.called("GetObject") == []


def test_a_marker_of_an_unknown_attempt_is_ignored(complete, store, s3, sfn):
    running_job(store, "job-1")

    outcome = land(complete, s3, worker_result(s3, "job-1", "avatar-1-unknown"), "result")

    assert outcome == "ignored: unknown attempt" and sfn.calls == []
    assert store.get("job-1").step("avatar").status == "running"


@pytest.mark.parametrize("state", ["succeeded", "failed", "closed"])
def test_a_late_marker_of_a_closed_attempt_changes_nothing(complete, store, s3, sfn, emit, state):
    # Given the attempt is over (a retry runs under a new attempt id)
    running_job(store, "job-1")
    waiting(store)
    store.set_token_state("job-1", ATTEMPT, state)
    before = store.get_versioned("job-1")

    for marker, kind in ((progress(0.5), "progress"), (worker_result(s3, "job-1", ATTEMPT), "result")):
        assert land(complete, s3, marker, kind) == f"ignored: attempt already {state}"  # type: ignore[arg-type]

    assert sfn.calls == [] and emit.events == [] and store.get_versioned("job-1") == before


# --- progress ----------------------------------------------------------------------------------------


def test_progress_beats_the_heartbeat_and_advances_the_job(complete, store, s3, sfn, emit):
    running_job(store, "job-1")
    waiting(store)

    # When the worker reports half its work
    outcome = land(complete, s3, progress(0.5, message="rendering"), "progress")

    # Then the step's heartbeat is sent with the attempt's token
    assert outcome == "heartbeat 0.50"
    assert sfn.called("SendTaskHeartbeat") == [{"taskToken": "token-1"}]
    # and the job is halfway through the avatar step's share (finalize keeps the last few per cent)
    record = store.get("job-1")
    assert 0.4 < record.progress < 0.5 and record.progress_message == "rendering"
    # which crossed 10 %: one job.progress event, with the job running
    assert emit.events == [("job-1", "job.progress", "running")]


def test_progress_events_come_once_per_step_of_progress_and_never_go_back(complete, store, s3, sfn, emit):
    running_job(store, "job-1")
    waiting(store)
    land(complete, s3, progress(0.5), "progress")
    halfway = store.get("job-1").progress

    # A beat within the same 10 % and a late beat from earlier both keep the worker alive
    land(complete, s3, progress(0.52), "progress")
    land(complete, s3, progress(0.2), "progress")

    assert len(sfn.called("SendTaskHeartbeat")) == 3
    assert store.get("job-1").progress == pytest.approx(0.52 / 0.5 * halfway)
    assert emit.types("job-1") == ["job.progress"]


def test_each_step_advances_the_job_within_its_own_share(complete, store, s3, emit):
    # Given a text-driven avatar: a short voice step, then the avatar step
    request = parse_job_request(
        {"task": "avatar", "inputs": {"image": f"s3://{INPUT}/inputs/talk/portrait.png", "text": "Hi."}}
    )
    record = JobRecord.new("job-1", request)
    record.start_step("voice")
    assert store.create(record)
    voice = waiting(store, "voice-1-0123456789", StepAddress(step="voice"), "token-v")

    # When the voice step is done, the job has come a small way only
    land(complete, s3, progress(1.0, voice), "progress")
    after_voice = store.get("job-1").progress
    assert 0.0 < after_voice < 0.2

    # and the avatar step starts where the voice step ended, and ends short of finalize
    avatar = waiting(store, "avatar-1-0123456789", AVATAR, "token-a")
    land(complete, s3, progress(0.0, avatar), "progress")
    assert store.get("job-1").progress == after_voice
    land(complete, s3, progress(1.0, avatar), "progress")
    assert store.get("job-1").progress == pytest.approx(0.95)


def test_chunks_rendering_side_by_side_report_the_furthest_one(complete, store, s3, sfn):
    # Given two chunks of a parallel avatar, each beating with its own token
    running_job(store, "job-1")
    ahead = waiting(store, "avatar-c0-1-0123456789", StepAddress(step="avatar", chunk=0), "token-0")
    behind = waiting(store, "avatar-c1-1-0123456789", StepAddress(step="avatar", chunk=1), "token-1")

    land(complete, s3, progress(0.8, ahead), "progress")
    furthest = store.get("job-1").progress
    land(complete, s3, progress(0.3, behind), "progress")

    # Both workers are kept alive; the job shows the chunk that is furthest along
    assert [c["taskToken"] for c in sfn.called("SendTaskHeartbeat")] == ["token-0", "token-1"]
    assert store.get("job-1").progress == furthest > 0


def test_progress_of_a_cancelled_job_changes_nothing_but_the_heartbeat(complete, store, s3, sfn, emit):
    running_job(store, "job-1")
    waiting(store)
    store.update("job-1", lambda r: r.mark_cancelled())
    before = store.get_versioned("job-1")[0]

    land(complete, s3, progress(0.9), "progress")

    assert store.get("job-1").progress == before.progress and emit.events == []


def test_a_heartbeat_for_a_timed_out_task_closes_the_attempt(complete, store, s3, sfn, emit):
    # Given Step Functions gave up on the attempt (its heartbeat lapsed; a retry is on its way)
    running_job(store, "job-1")
    waiting(store)
    sfn.closed_tokens["token-1"] = "TaskTimedOut"

    outcome = land(complete, s3, progress(0.5), "progress")

    # Then that is no error: the attempt is marked closed and the job does not advance
    assert outcome == "heartbeat refused: attempt closed"
    assert store.get_token("job-1", ATTEMPT).state == "closed"
    assert store.get("job-1").progress == 0.0 and emit.events == []


# --- results -----------------------------------------------------------------------------------------


def test_a_result_whose_outputs_are_there_completes_the_step(complete, store, s3, sfn):
    # Given the worker uploaded its outputs and wrote its result marker (it worked 42 s)
    running_job(store, "job-1")
    waiting(store)
    now = utc_now()
    result = worker_result(
        s3,
        "job-1",
        ATTEMPT,
        accelerator="NVIDIA H100 80GB HBM3",
        started_at=now - timedelta(seconds=42),
        at=now,
    )

    outcome = land(complete, s3, result, "result")

    # Then the result is kept for finalize, and the task succeeds with where the outputs are
    assert outcome == "success"
    assert store.get_step_result("job-1", AVATAR, ResultMarker) == result
    (sent,) = sfn.called("SendTaskSuccess")
    assert sent["taskToken"] == "token-1"
    assert json.loads(sent["output"]) == {
        "attempt_id": ATTEMPT,
        "outputs": {"video": result.outputs["video"].key, "thumbnail": result.outputs["thumbnail"].key},
    }
    assert store.get_token("job-1", ATTEMPT).state == "succeeded"
    # and the avatar step is done, with the worker, the GPU and the seconds it worked
    step = store.get("job-1").step("avatar")
    assert step.status == "completed" and step.worker == "gpu-box:42"
    assert step.accelerator == "NVIDIA H100 80GB HBM3" and step.worker_seconds == {ATTEMPT: 42.0}


def test_a_redelivered_result_marker_counts_once(complete, store, s3, sfn):
    # S3 notifies at least once: the same marker can arrive twice
    running_job(store, "job-1")
    waiting(store)
    result = worker_result(s3, "job-1", ATTEMPT)
    land(complete, s3, result, "result")
    once = store.get("job-1").step("avatar")

    land(complete, s3, result, "result")

    assert len(sfn.called("SendTaskSuccess")) == 1
    assert store.get("job-1").step("avatar").worker_seconds == once.worker_seconds


@pytest.mark.parametrize("gap", ["missing", "wrong size"])
def test_a_result_whose_outputs_are_not_all_there_is_retried_not_published(complete, store, s3, sfn, gap):
    # Given the worker's marker claims a thumbnail that is missing (or not what it says)
    running_job(store, "job-1")
    waiting(store)
    result = worker_result(s3, "job-1", ATTEMPT)
    thumbnail = result.outputs["thumbnail"].key
    if gap == "missing":
        s3.delete_object(Bucket=WORK, Key=thumbnail)
    else:
        s3.put_object(Bucket=WORK, Key=thumbnail, Body=b"truncated")

    outcome = land(complete, s3, result, "result")

    # Then the task fails as transient (the state machine retries the step), naming what is missing
    assert outcome == "failure Worker.Transient" and sfn.called("SendTaskSuccess") == []
    (sent,) = sfn.called("SendTaskFailure")
    assert sent["taskToken"] == "token-1" and sent["error"] == "Worker.Transient"
    assert thumbnail in json.loads(sent["cause"])["message"]
    # nothing is left for finalize to publish, and the step is still running (its retry will be)
    assert store.get_step_result("job-1", AVATAR, ResultMarker) is None
    assert store.get_token("job-1", ATTEMPT).state == "failed"
    assert store.get("job-1").step("avatar").status == "running"


def test_a_chunk_result_leaves_the_avatar_step_running(complete, store, s3, sfn):
    # Given two chunks of a parallel avatar rendering side by side
    running_job(store, "job-1")
    chunks = {
        k: waiting(store, f"avatar-c{k}-1-0123456789", StepAddress(step="avatar", chunk=k)) for k in (0, 1)
    }
    now = utc_now()

    for k, attempt_id in chunks.items():
        result = worker_result(s3, "job-1", attempt_id, started_at=now - timedelta(seconds=10 + k), at=now)
        assert land(complete, s3, result, "result") == "success"
        # each chunk's result is kept under its own address, for the stitch step
        assert store.get_step_result("job-1", StepAddress(step="avatar", chunk=k), ResultMarker) == result

    # Then the step stays running (stitch closes it) and counts both chunks' worker time
    step = store.get("job-1").step("avatar")
    assert step.status == "running" and step.worker_s == 21.0
    assert store.get_step_result("job-1", AVATAR, ResultMarker) is None


def test_a_result_for_a_timed_out_task_closes_the_attempt(complete, store, s3, sfn):
    running_job(store, "job-1")
    waiting(store)
    sfn.closed_tokens["token-1"] = "TaskTimedOut"

    outcome = land(complete, s3, worker_result(s3, "job-1", ATTEMPT), "result")

    assert outcome == "result refused: attempt closed"
    assert store.get_token("job-1", ATTEMPT).state == "closed"
    assert store.get("job-1").step("avatar").status == "running"


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("retryable", "name"), [(False, "Worker.Fatal"), (True, "Worker.Transient")])
def test_an_error_marker_fails_the_task_as_fatal_or_transient(complete, store, s3, sfn, retryable, name):
    running_job(store, "job-1")
    waiting(store)
    marker = failure(retryable)

    outcome = land(complete, s3, marker, "error")

    # Then the task fails with the error the state machine retries on (or not), the job error as cause
    assert outcome == f"failure {name}"
    (sent,) = sfn.called("SendTaskFailure")
    assert (sent["taskToken"], sent["error"]) == ("token-1", name)
    assert JobError.model_validate(json.loads(sent["cause"])) == marker.error
    # and the error is kept where the failure step finds it when Step Functions drops the cause
    assert store.get_worker_error("job-1", "avatar") == marker.error
    assert store.get_token("job-1", ATTEMPT).state == "failed"


def test_an_error_for_a_closed_task_is_no_error_of_ours(complete, store, s3, sfn):
    running_job(store, "job-1")
    waiting(store)
    sfn.closed_tokens["token-1"] = "InvalidToken"

    assert land(complete, s3, failure(False), "error") == "failure refused: attempt closed"
    assert store.get_token("job-1", ATTEMPT).state == "closed"


def test_an_unexpected_step_functions_error_is_not_swallowed(config, store, s3, emit):
    class Throttled:
        def send_task_heartbeat(self, **params: Any) -> None:
            raise client_error("SendTaskHeartbeat", "ThrottlingException", "Rate exceeded")

    running_job(store, "job-1")
    waiting(store)

    with pytest.raises(Exception, match="ThrottlingException"):
        land(Completer(config, store, s3, Throttled(), emit), s3, progress(0.5), "progress")
    # The Lambda fails and S3 redelivers the event; the attempt stays open for it
    assert store.get_token("job-1", ATTEMPT).state == "waiting"


# --- quality: a parallel chunk whose report fails is rendered once more ------------------------------

CHUNK = StepAddress(step="avatar", chunk=1)
FIRST, SECOND, THIRD = "avatar-c1-1-0123456789", "avatar-c1-2-abcdefabcd", "avatar-c1-3-1234512345"


def judged(quality: QualityThresholds) -> Any:
    """A Completer built with these pass marks (as the Lambda builds one from the environment)."""

    def build(config, store, s3, sfn, emit) -> Completer:
        return Completer(config, store, s3, sfn, emit, quality=quality)

    return build


@pytest.fixture
def chunks(complete, store) -> Completer:
    """A parallel avatar rendering chunk 1 (its first attempt waits), re-rendering on."""
    running_job(store, "job-1", options={"long_audio": "parallel"})
    waiting(store, FIRST, CHUNK, "token-c1")
    assert complete.quality.rerender_chunks  # the default
    return complete


def chunk_result(s3: FakeS3, attempt_id: str, lipsync: float, seconds: float = 10.0) -> ResultMarker:
    now = utc_now()
    report = quality_report(lipsync=lipsync)
    return worker_result(
        s3, "job-1", attempt_id, quality=report, started_at=now - timedelta(seconds=seconds), at=now
    )


def test_a_chunk_that_passes_is_not_rendered_again(chunks, store, s3, sfn):
    result = chunk_result(s3, FIRST, lipsync=0.7)

    assert land(chunks, s3, result, "result") == "success"

    (sent,) = sfn.called("SendTaskSuccess")
    assert sent["taskToken"] == "token-c1" and sfn.called("SendTaskFailure") == []
    kept = store.get_step_result("job-1", CHUNK, ResultMarker)
    assert kept == result and kept.quality.passed and kept.warnings == []


def test_a_chunk_that_fails_is_rendered_once_more_and_the_second_render_is_used(chunks, store, s3, sfn):
    # When the chunk's first render fails its quality checks (lip sync 0.1 under 0.3)
    first = chunk_result(s3, FIRST, lipsync=0.1, seconds=10)
    outcome = land(chunks, s3, first, "result")

    # Then the task fails with the error the AvatarChunk state retries once, naming the failed check
    assert outcome == "failure Quality.Rerender" and sfn.called("SendTaskSuccess") == []
    (sent,) = sfn.called("SendTaskFailure")
    assert (sent["taskToken"], sent["error"]) == ("token-c1", "Quality.Rerender")
    assert "avatar#1" in json.loads(sent["cause"])["message"]
    assert "lipsync 0.1 (pass mark 0.3)" in json.loads(sent["cause"])["message"]
    # nothing is left for the stitch step yet; the render is kept aside, and its GPU time billed
    assert store.get_step_result("job-1", CHUNK, ResultMarker) is None
    assert store.get_step_result("job-1", "rejected:avatar#1", ResultMarker) == first
    assert store.get_token("job-1", FIRST).state == "failed"
    assert store.get("job-1").step("avatar").worker_seconds == {FIRST: 10.0}

    # When the retry (a new attempt, dispatched as any retry) delivers a render that passes
    waiting(store, SECOND, CHUNK, "token-c1-retry")
    second = chunk_result(s3, SECOND, lipsync=0.6, seconds=12)
    assert land(chunks, s3, second, "result") == "success"

    # Then it is the chunk's result, and the job will say the chunk was rendered twice
    assert [c["taskToken"] for c in sfn.called("SendTaskSuccess")] == ["token-c1-retry"]
    assert len(sfn.called("SendTaskFailure")) == 1  # exactly one re-render
    kept = store.get_step_result("job-1", CHUNK, ResultMarker)
    assert kept.attempt_id == SECOND and kept.quality == second.quality
    assert kept.warnings == [
        "chunk 1 was rendered again: its first render failed the quality checks "
        "(lipsync 0.1 (pass mark 0.3)); the second render passed and was used"
    ]
    assert store.get("job-1").step("avatar").worker_seconds == {FIRST: 10.0, SECOND: 12.0}


def test_a_chunk_that_fails_twice_is_stitched_anyway_with_a_warning(chunks, store, s3, sfn):
    assert land(chunks, s3, chunk_result(s3, FIRST, lipsync=0.1), "result") == "failure Quality.Rerender"
    waiting(store, SECOND, CHUNK, "token-c1-retry")

    second = chunk_result(s3, SECOND, lipsync=0.2)
    outcome = land(chunks, s3, second, "result")

    # The second render is used whatever its score: no third render, ever
    assert outcome == "success" and len(sfn.called("SendTaskFailure")) == 1
    kept = store.get_step_result("job-1", CHUNK, ResultMarker)
    assert kept.attempt_id == SECOND and not kept.quality.passed
    (warning,) = kept.warnings
    assert warning.endswith("the second failed too (lipsync 0.2 (pass mark 0.3)) and was stitched anyway")


def test_a_chunk_is_sent_back_once_whatever_attempts_come_between(chunks, store, s3, sfn):
    # Given the re-render's worker was lost (a transient retry followed), and the third attempt fails
    land(chunks, s3, chunk_result(s3, FIRST, lipsync=0.1), "result")
    waiting(store, SECOND, CHUNK, "token-2")
    land(chunks, s3, failure(True, SECOND), "error")
    waiting(store, THIRD, CHUNK, "token-3")

    outcome = land(chunks, s3, chunk_result(s3, THIRD, lipsync=0.1), "result")

    assert outcome == "success"
    assert [c["error"] for c in sfn.called("SendTaskFailure")] == ["Quality.Rerender", "Worker.Transient"]
    assert store.get_step_result("job-1", CHUNK, ResultMarker).attempt_id == THIRD


def test_with_re_rendering_off_a_failing_chunk_is_used_as_it_is(config, store, s3, sfn, emit):
    complete = judged(QualityThresholds(rerender_chunks=False))(config, store, s3, sfn, emit)
    running_job(store, "job-1", options={"long_audio": "parallel"})
    waiting(store, FIRST, CHUNK, "token-c1")
    result = chunk_result(s3, FIRST, lipsync=0.1)

    assert land(complete, s3, result, "result") == "success"

    assert sfn.called("SendTaskFailure") == []
    assert store.get_step_result("job-1", CHUNK, ResultMarker) == result  # no warning: nothing re-rendered


def test_only_parallel_chunks_are_rendered_again(complete, store, s3, sfn):
    # A single avatar step's failing report is the job's to show, not a reason to render it again
    running_job(store, "job-1")
    waiting(store)
    result = worker_result(s3, "job-1", ATTEMPT, quality=quality_report(lipsync=0.1))

    assert land(complete, s3, result, "result") == "success"
    assert store.get_step_result("job-1", AVATAR, ResultMarker).quality == result.quality


def test_an_unmeasured_chunk_is_not_rendered_again(chunks, store, s3, sfn):
    # A worker that measured nothing (an engine without the report, an older worker) is no failure
    result = worker_result(s3, "job-1", FIRST)
    assert result.quality is None

    assert land(chunks, s3, result, "result") == "success"


def test_a_first_render_redelivered_after_a_crash_is_still_sent_back(config, store, s3, emit):
    # Given the Lambda set the render aside, then failed to reach Step Functions (throttled)
    class ThrottledOnce(FakeStepFunctions):
        def send_task_failure(self, **params: Any) -> dict[str, Any]:
            if not self.called("SendTaskFailure"):
                self._call("SendTaskFailure", params)
                raise client_error("SendTaskFailure", "ThrottlingException", "Rate exceeded")
            return super().send_task_failure(**params)

    sfn = ThrottledOnce([STATE_MACHINE])
    complete = Completer(config, store, s3, sfn, emit)
    running_job(store, "job-1", options={"long_audio": "parallel"})
    waiting(store, FIRST, CHUNK, "token-c1")
    first = chunk_result(s3, FIRST, lipsync=0.1)
    with pytest.raises(Exception, match="ThrottlingException"):
        land(complete, s3, first, "result")

    # When S3 delivers the same marker again, it is still the chunk's first render: sent back again
    assert land(complete, s3, first, "result") == "failure Quality.Rerender"
    assert store.get_token("job-1", FIRST).state == "failed"


def test_a_render_set_aside_whose_attempt_had_timed_out_still_counts_as_sent_back(chunks, store, s3, sfn):
    # Given Step Functions had already given up on the first attempt when its failing render came in
    sfn.closed_tokens["token-c1"] = "TaskTimedOut"
    outcome = land(chunks, s3, chunk_result(s3, FIRST, lipsync=0.1), "result")
    assert outcome == "failure refused: attempt closed"

    # When the heartbeat-timeout retry also renders a failing chunk, it is used: complete cannot
    # always tell whether a Quality.Rerender was taken, and a second one would fail the whole job
    waiting(store, SECOND, CHUNK, "token-2")
    assert land(chunks, s3, chunk_result(s3, SECOND, lipsync=0.1), "result") == "success"


def test_a_crash_after_the_rerender_was_sent_never_fails_the_job(config, store, s3, emit):
    # Given the Lambda sent Quality.Rerender (Step Functions took it and retries the chunk) but
    # crashed before recording it, and the redelivered marker then found the token closed
    class RecordingFails(JobStore):
        fail_next = True

        def set_token_state(self, *args: Any, **kwargs: Any) -> Any:
            if self.fail_next:
                self.fail_next = False
                raise client_error("UpdateItem", "ProvisionedThroughputExceededException", "slow down")
            return super().set_token_state(*args, **kwargs)

    sfn = FakeStepFunctions([STATE_MACHINE])
    flaky = RecordingFails(store.table, store.ddb)
    complete = Completer(config, flaky, s3, sfn, emit)
    running_job(store, "job-1", options={"long_audio": "parallel"})
    waiting(store, FIRST, CHUNK, "token-c1")
    first = chunk_result(s3, FIRST, lipsync=0.1)
    with pytest.raises(Exception, match="ProvisionedThroughputExceeded"):
        land(complete, s3, first, "result")
    assert sfn.called("SendTaskFailure")[0]["error"] == "Quality.Rerender"
    sfn.closed_tokens["token-c1"] = "TaskTimedOut"  # Step Functions has moved on to the retry
    land(complete, s3, first, "result")

    # When the retry's render fails too, it is used (a second Quality.Rerender would exhaust the
    # AvatarChunk retrier and fail the job after every chunk had rendered)
    waiting(store, SECOND, CHUNK, "token-2")
    failures_before = len(sfn.called("SendTaskFailure"))
    assert land(complete, s3, chunk_result(s3, SECOND, lipsync=0.1), "result") == "success"
    assert len(sfn.called("SendTaskFailure")) == failures_before


def test_a_chunk_failing_only_checks_a_new_render_cannot_change_is_not_rendered_again(chunks, s3, sfn):
    # Colour drift is what the stitch step corrects (every chunk matched to the photo); frames and
    # A/V sync follow from the audio slice: a second render would cost a GPU render for nothing
    report = quality_report(lipsync=0.7, colour_drift=9.0)
    assert not report.passed
    result = worker_result(s3, "job-1", FIRST, quality=report)
    assert land(chunks, s3, result, "result") == "success"
    assert sfn.called("SendTaskFailure") == []


# --- worker time at its edges --------------------------------------------------------------------------


def test_a_worker_whose_clock_runs_behind_bills_no_negative_time(complete, store, s3):
    # Given a result whose `at` is before its `started_at` (the worker's clock was set back mid-task)
    running_job(store, "job-1")
    waiting(store)
    now = utc_now()
    result = worker_result(s3, "job-1", ATTEMPT, started_at=now + timedelta(seconds=5), at=now)

    assert land(complete, s3, result, "result") == "success"

    assert store.get("job-1").step("avatar").worker_seconds == {ATTEMPT: 0.0}


def test_a_chunk_that_names_no_accelerator_keeps_the_one_another_chunk_named(complete, store, s3):
    # Given a parallel avatar whose chunk 1 rendered on an H100
    running_job(store, "job-1", options={"long_audio": "parallel"})
    waiting(store, FIRST, CHUNK, "token-c1")
    first = worker_result(s3, "job-1", FIRST, accelerator="NVIDIA H100 80GB HBM3")
    assert land(complete, s3, first, "result") == "success"

    # When chunk 2's result names no accelerator
    chunk_2 = StepAddress(step="avatar", chunk=2)
    waiting(store, "avatar-c2-1-0123456789", chunk_2, "token-c2")
    second = worker_result(s3, "job-1", "avatar-c2-1-0123456789")
    assert second.accelerator is None and land(complete, s3, second, "result") == "success"

    # Then the step still says where its GPU time was spent (the bill prices it by accelerator)
    step = store.get("job-1").step("avatar")
    assert step.accelerator == "NVIDIA H100 80GB HBM3"
    assert set(step.worker_seconds) == {FIRST, second.attempt_id}
