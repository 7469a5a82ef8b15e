"""Complete: a worker marker landed in S3 → tell Step Functions, using the attempt's stored token.

    markers/<job>/<attempt>/result.json   → check the outputs exist → SendTaskSuccess
                                            (a parallel chunk whose quality report fails, the first
                                            time: SendTaskFailure(Quality.Rerender), rendered again)
    markers/<job>/<attempt>/error.json    → SendTaskFailure(Worker.Transient | Worker.Fatal)
    markers/<job>/<attempt>/progress.json → SendTaskHeartbeat + job progress (+ job.progress event)

Marker keys are parsed by the work-bucket layout (talkstack.contract.worker.parse_marker_key); the
token item names the step the attempt serves as a StepAddress (`avatar`, or chunk 3 of a long
avatar). The error is also stored in the jobs table: Step Functions keeps `cause` but moto drops it, and
the failure handler must be able to say why in both worlds. A token that has already timed out
or closed (TaskTimedOut, InvalidToken) means the attempt was abandoned: logged, not an error.

Only the step's current attempt (the one dispatched last, store.put_current_attempt) can change
what the step leaves: its result (or set-aside render) and its error are written in one
transaction with the check that it is still current. A late marker of an attempt a retry replaced
is ignored and its token closed; it never reaches Step Functions or the step result.

A chunk rendered twice for quality: the first render is kept aside (step_results.rejected_name)
and its attempt's token ends `failed` once Step Functions took the Quality.Rerender failure; that
is how the second render is known to be the second: it is used whatever its score, and its result
carries a warning saying so (finalize gathers it onto the job). The ASL retries Quality.Rerender
once at most, so even a confused Lambda cannot loop.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from botocore.exceptions import ClientError

from talkstack.contract.composition import CompositionRequest
from talkstack.contract.record import JobRecord
from talkstack.contract.worker import (
    MARKER_MODELS,
    ErrorMarker,
    MarkerRef,
    ProgressMarker,
    ResultMarker,
    StepAddress,
    parse_marker_key,
)
from talkstack.pipeline.aws import error_code
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.plan import COMPOSE_END, SCENES_SHARE, progress_span, scene_step_span
from talkstack.pipeline.quality import RERENDER_ERROR, failed_checks, needs_rerender, rerender_warning
from talkstack.pipeline.step_results import rejected_name, rejected_result
from talkstack.settings.quality import QualityThresholds, get_quality_thresholds

log = logging.getLogger(__name__)
CLOSED_TOKEN_ERRORS = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})
TRANSIENT_ERROR, FATAL_ERROR = "Worker.Transient", "Worker.Fatal"


class Completer:
    def __init__(
        self,
        config: PipelineConfig,
        store: Any,
        s3: Any,
        sfn: Any,
        emit: Any,
        quality: QualityThresholds | None = None,
    ) -> None:
        self.config, self.store, self.s3, self.sfn, self.emit = config, store, s3, sfn, emit
        self.quality = quality or get_quality_thresholds()
        """Whether a failing chunk is rendered again (`rerender_chunks`); parsed once per process."""

    def handle(self, bucket: str, key: str) -> str:
        """Process one marker object; returns what happened (for logs and tests)."""
        ref = parse_marker_key(key)
        if ref is None:
            return "ignored: not a marker key"
        attempt = self.store.get_token(ref.job_id, ref.attempt_id)
        if attempt is None:
            return "ignored: unknown attempt"
        if attempt.state != "waiting":
            return f"ignored: attempt already {attempt.state}"
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        marker = MARKER_MODELS[ref.kind].model_validate_json(body)
        step, token = attempt.step, attempt.token
        if isinstance(marker, ProgressMarker):
            return self._progress(ref, step, token, marker)
        if isinstance(marker, ResultMarker):
            return self._result(ref, step, token, marker)
        assert isinstance(marker, ErrorMarker)
        return self._error(ref, step, token, marker)

    def _send(self, ref: MarkerRef, call: str, **kwargs: Any) -> bool:
        try:
            getattr(self.sfn, call)(**kwargs)
            return True
        except ClientError as exc:
            if error_code(exc) in CLOSED_TOKEN_ERRORS:
                log.info("attempt %s of job %s is closed (%s)", ref.attempt_id, ref.job_id, error_code(exc))
                self.store.set_token_state(ref.job_id, ref.attempt_id, "closed")
                return False
            raise

    def _progress(self, ref: MarkerRef, step: StepAddress, token: str, marker: ProgressMarker) -> str:
        if not self._send(ref, "send_task_heartbeat", taskToken=token):
            return "heartbeat refused: attempt closed"
        crossed = False

        def advance(record: JobRecord) -> None:
            nonlocal crossed
            if record.is_terminal or record.request is None:
                return
            before = record.progress
            if isinstance(record.request, CompositionRequest):
                self._advance_composition(record, step, marker)
            else:
                # Chunks render side by side: the furthest one stands for the step (progress never
                # goes back).
                start, end = progress_span(record.request.worker_steps, step.step)
                record.set_progress(start + (end - start) * marker.progress, marker.message)
            every = self.config.progress_event_step
            crossed = int(record.progress / every) > int(before / every)

        record = self.store.update(ref.job_id, advance)
        if crossed and record.status == "running":
            self.emit(record, "job.progress")
        return f"heartbeat {marker.progress:.2f}"

    @staticmethod
    def _advance_scene(record: JobRecord, step: StepAddress, fraction: float, message: str | None) -> None:
        """Scene `step.scene` is `fraction` through `step` (scenes/compose spans: plan.scene_span)."""
        request = record.request
        assert isinstance(request, CompositionRequest) and step.scene is not None
        start, end = scene_step_span(request, step.scene, step.step)
        key = str(step.scene)
        reached = min(1.0, start + (end - start) * fraction)  # float sums may end a hair above 1
        record.scene_progress[key] = max(record.scene_progress.get(key, 0.0), reached)
        label = f"scene {step.scene + 1} of {len(request.scenes)}: {message}" if message else None
        # Scenes with no engine step (uploads, title cards) are ready at once and do not count.
        working = sum(1 for index in range(len(request.scenes)) if request.scene_steps(index))
        record.progress_scene = step.scene
        record.set_progress(SCENES_SHARE * sum(record.scene_progress.values()) / max(1, working), label)

    def _advance_composition(self, record: JobRecord, step: StepAddress, marker: ProgressMarker) -> None:
        """Scenes render side by side: the job has come as far as their mean (each scene's own
        share moving through its steps), then the compose step moves it on to finalize."""
        if step.scene is not None:
            self._advance_scene(record, step, marker.progress, marker.message)
            return
        record.progress_scene = None
        record.set_progress(
            SCENES_SHARE + (COMPOSE_END - SCENES_SHARE) * marker.progress,
            f"composing: {marker.message}" if marker.message else None,
        )

    def _result(self, ref: MarkerRef, step: StepAddress, token: str, marker: ResultMarker) -> str:
        missing = [o.key for o in marker.outputs.values() if not self._exists(o.key, o.bytes)]
        if missing:
            # The worker says it uploaded what is not there: retry the step rather than publish a gap.
            return self._fail(ref, token, TRANSIENT_ERROR, {"message": f"outputs missing: {missing}"})
        rejected = self._sent_back(ref, step)
        if needs_rerender(step, marker, rejected is not None, self.quality):
            return self._rerender(ref, step, token, marker)
        if rejected is not None:
            # The second render of a chunk: used whatever its score, and the job says so.
            warning = rerender_warning(step, rejected, marker)
            marker = marker.model_copy(update={"warnings": [*marker.warnings, warning]})
        # Stored before SendTaskSuccess (the next state reads it), so only while this attempt is the
        # step's current one: a late result of an abandoned attempt, whose success Step Functions
        # would refuse only after the write, can never replace the result a later attempt left.
        if not self.store.put_attempt_result(ref.job_id, step, ref.attempt_id, step, marker):
            return self._superseded(ref, step, "result")
        output = {"attempt_id": ref.attempt_id, "outputs": {k: v.key for k, v in marker.outputs.items()}}
        if not self._send(ref, "send_task_success", taskToken=token, output=json.dumps(output)):
            return "result refused: attempt closed"
        self.store.set_token_state(ref.job_id, ref.attempt_id, "succeeded")

        def finish(record: JobRecord) -> None:
            self._count_worker_time(record, ref, step, marker)
            # One chunk of many does not finish the step: the stitch step closes the avatar step;
            # nor does one scene's: the compose step closes the scenes' steps.
            if record.is_terminal:
                return
            if step.chunk is None and step.scene is None:
                record.finish_step(step.step).worker = marker.worker
            elif step.scene is not None:
                if (target := record.step(step.step)) is not None:
                    target.worker = marker.worker
                self._advance_scene(record, step, 1.0, None)

        self.store.update(ref.job_id, finish)
        return "success"

    def _sent_back(self, ref: MarkerRef, step: StepAddress) -> ResultMarker | None:
        """The render of this chunk an earlier attempt set aside for quality, if any: this render is
        then used whatever its score. Whether Step Functions took that Quality.Rerender cannot
        always be known here (the Lambda may have crashed between sending the failure and recording
        it; the attempt may have timed out first), and the AvatarChunk retrier allows one such retry
        only: a second Quality.Rerender would fail the whole job after every chunk rendered. Counting
        any earlier set-aside render as sent back can skip one re-render, never fail a job."""
        if step.chunk is None:
            return None
        rejected = rejected_result(self.store, ref.job_id, step)
        if rejected is None or rejected.attempt_id == ref.attempt_id:
            return None
        return rejected

    def _rerender(self, ref: MarkerRef, step: StepAddress, token: str, marker: ResultMarker) -> str:
        """Turn a chunk's failing render down: keep it aside (first, so that a crash after the
        failure is sent cannot lose it), and fail the task with the error the AvatarChunk state
        retries once (a new attempt of the same chunk, dispatched as any retry is)."""
        assert marker.quality is not None  # needs_rerender: a measured, failing report
        if not self.store.put_attempt_result(ref.job_id, step, ref.attempt_id, rejected_name(step), marker):
            return self._superseded(ref, step, "result")
        reason = f"{step}: quality checks failed ({failed_checks(marker.quality)}); rendering it again"
        if not self._send_failure(ref, token, RERENDER_ERROR, {"message": reason}):
            return "failure refused: attempt closed"
        # The GPU time of the render turned down is billed too.
        self.store.update(ref.job_id, lambda record: self._count_worker_time(record, ref, step, marker))
        return f"failure {RERENDER_ERROR}"

    @staticmethod
    def _count_worker_time(
        record: JobRecord, ref: MarkerRef, step: StepAddress, marker: ResultMarker
    ) -> None:
        """The worker time this attempt cost (keyed by attempt: a redelivered marker does not add)."""
        target = record.step(step.step)
        if target is not None:
            target.worker_seconds[ref.attempt_id] = round(
                max(0.0, (marker.at - marker.started_at).total_seconds()), 3
            )
            target.accelerator = marker.accelerator or target.accelerator

    def _superseded(self, ref: MarkerRef, step: StepAddress, kind: str) -> str:
        """A marker of an attempt that is no longer its step's current one: a later attempt was
        dispatched, so Step Functions has given up on this one. It changes nothing."""
        log.info("late %s of attempt %s (%s) of job %s ignored", kind, ref.attempt_id, step, ref.job_id)
        self.store.set_token_state(ref.job_id, ref.attempt_id, "closed")
        return f"ignored: attempt superseded ({kind})"

    def _error(self, ref: MarkerRef, step: StepAddress, token: str, marker: ErrorMarker) -> str:
        if not self.store.put_attempt_error(ref.job_id, step, ref.attempt_id, marker.error, marker.retryable):
            return self._superseded(ref, step, "error")
        name = TRANSIENT_ERROR if marker.retryable else FATAL_ERROR
        return self._fail(ref, token, name, marker.error.model_dump(mode="json"))

    def _fail(self, ref: MarkerRef, token: str, name: str, cause: dict[str, Any]) -> str:
        if not self._send_failure(ref, token, name, cause):
            return "failure refused: attempt closed"
        return f"failure {name}"

    def _send_failure(self, ref: MarkerRef, token: str, name: str, cause: dict[str, Any]) -> bool:
        if not self._send(
            ref, "send_task_failure", taskToken=token, error=name, cause=json.dumps(cause)[:32768]
        ):
            return False
        self.store.set_token_state(ref.job_id, ref.attempt_id, "failed")
        return True

    def _exists(self, key: str, size: int) -> bool:
        try:
            head = self.s3.head_object(Bucket=self.config.work_bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return int(head["ContentLength"]) == size
