"""Complete: a worker marker landed in S3 → tell Step Functions, using the attempt's stored token.

    markers/<job>/<attempt>/result.json   → check the outputs exist → SendTaskSuccess
    markers/<job>/<attempt>/error.json    → SendTaskFailure(Worker.Transient | Worker.Fatal)
    markers/<job>/<attempt>/progress.json → SendTaskHeartbeat + job progress (+ job.progress event)

Marker keys are parsed by the work-bucket layout (talkstack.contract.worker.parse_marker_key); the
token item names the step the attempt serves as a StepAddress (`avatar`, or chunk 3 of a long
avatar). The error is also stored in the jobs table: Step Functions keeps `cause` but moto drops it, and
the failure handler must be able to say why in both worlds. A token that has already timed out
or closed (TaskTimedOut, InvalidToken) means the attempt was abandoned: logged, not an error.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from botocore.exceptions import ClientError

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
from talkstack.pipeline.plan import progress_span

log = logging.getLogger(__name__)
CLOSED_TOKEN_ERRORS = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})
TRANSIENT_ERROR, FATAL_ERROR = "Worker.Transient", "Worker.Fatal"


class Completer:
    def __init__(self, config: PipelineConfig, store: Any, s3: Any, sfn: Any, emit: Any) -> None:
        self.config, self.store, self.s3, self.sfn, self.emit = config, store, s3, sfn, emit

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
            # Chunks render side by side: the furthest one stands for the step (progress never goes back).
            start, end = progress_span(record.request.worker_steps, step.step)
            before = record.progress
            record.set_progress(start + (end - start) * marker.progress, marker.message)
            every = self.config.progress_event_step
            crossed = int(record.progress / every) > int(before / every)

        record = self.store.update(ref.job_id, advance)
        if crossed and record.status == "running":
            self.emit(record, "job.progress")
        return f"heartbeat {marker.progress:.2f}"

    def _result(self, ref: MarkerRef, step: StepAddress, token: str, marker: ResultMarker) -> str:
        missing = [o.key for o in marker.outputs.values() if not self._exists(o.key, o.bytes)]
        if missing:
            # The worker says it uploaded what is not there: retry the step rather than publish a gap.
            return self._fail(ref, token, TRANSIENT_ERROR, {"message": f"outputs missing: {missing}"})
        self.store.put_step_result(ref.job_id, step, marker)
        output = {"attempt_id": ref.attempt_id, "outputs": {k: v.key for k, v in marker.outputs.items()}}
        if not self._send(ref, "send_task_success", taskToken=token, output=json.dumps(output)):
            return "result refused: attempt closed"
        self.store.set_token_state(ref.job_id, ref.attempt_id, "succeeded")
        worked_s = round(max(0.0, (marker.at - marker.started_at).total_seconds()), 3)

        def finish(record: JobRecord) -> None:
            target = record.step(step.step)
            if target is not None:  # the GPU time this attempt cost (keyed: redeliveries don't add)
                target.worker_seconds[ref.attempt_id] = worked_s
                target.accelerator = marker.accelerator or target.accelerator
            # One chunk of many does not finish the step: the stitch step closes the avatar step.
            if step.chunk is None and not record.is_terminal:
                record.finish_step(step.step).worker = marker.worker

        self.store.update(ref.job_id, finish)
        return "success"

    def _error(self, ref: MarkerRef, step: StepAddress, token: str, marker: ErrorMarker) -> str:
        self.store.put_worker_error(ref.job_id, step, marker.error, marker.retryable)
        name = TRANSIENT_ERROR if marker.retryable else FATAL_ERROR
        return self._fail(ref, token, name, marker.error.model_dump(mode="json"))

    def _fail(self, ref: MarkerRef, token: str, name: str, cause: dict[str, Any]) -> str:
        if not self._send(
            ref, "send_task_failure", taskToken=token, error=name, cause=json.dumps(cause)[:32768]
        ):
            return "failure refused: attempt closed"
        self.store.set_token_state(ref.job_id, ref.attempt_id, "failed")
        return f"failure {name}"

    def _exists(self, key: str, size: int) -> bool:
        try:
            head = self.s3.head_object(Bucket=self.config.work_bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return int(head["ContentLength"]) == size
