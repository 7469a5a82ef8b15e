"""The failure path: every state's Catch lands here. Turn the Step Functions error into a JobError
with a specific code, record it (creating a record for a request that never validated), and remove
any output this job had already published, so a failed job never leaves a partial result behind.
A job whose record completed keeps everything: it is not failed, and nothing of it is removed.

A failed job also stops every worker it still has running, the way a cancel does (cancel.py
stop_workers): the other chunks of a Map one chunk failed, the attempt of a step that timed out.
Its GPU slots are free for the key's next job as soon as the record is failed, so its GPU tasks
must not go on rendering for hours. Stopping is best effort: a failure to stop is logged, never
turns the job's error into another.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from talkstack.contract.fields import CallbackId, Metadata, WebhookUrl
from talkstack.contract.record import JobError, JobRecord, RejectedRequest, StepName
from talkstack.contract.state import split_execution_input
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.cancel import running_calls, step_calls, stop_workers
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.outputs import remove_published

log = logging.getLogger(__name__)
STOP_MARGIN_S = 10.0
"""Time kept back from the failure Lambda's own limit when cancelling a failed job's calls."""


class JobFailed(Exception):
    """Raised by a handler for an expected failure. Its message is the JobError as JSON, which
    Step Functions carries to the failure handler as the Cause's errorMessage (Error = "JobFailed")."""

    def __init__(self, error: JobError) -> None:
        super().__init__(error.model_dump_json())
        self.error = error

    @classmethod
    def from_talkstack(cls, exc: TalkstackError, step: StepName) -> JobFailed:
        return cls(JobError.from_exception(exc, step=step))


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


def _running_step(record: JobRecord | None) -> StepName | None:
    if record is None:
        return "validate"
    running = [step for step in record.steps if step.status == "running"]
    return running[-1].name if running else None


def job_error_from_states(states_error: Mapping[str, Any], record: JobRecord | None, store: Any) -> JobError:
    """Map a Catch's {"Error", "Cause"} onto a JobError."""
    name = str(states_error.get("Error") or "States.Runtime")
    cause = _json(states_error.get("Cause"))
    step = _running_step(record)
    if name == "JobFailed" and isinstance(cause, dict):
        try:
            return JobError.model_validate_json(cause.get("errorMessage", ""))
        except ValidationError:
            pass
    if name in ("Worker.Fatal", "Worker.Transient"):
        if isinstance(cause, dict):
            try:
                return JobError.model_validate(cause)
            except ValidationError:
                pass
        stored = store.get_worker_error(record.job_id, step) if record and step else None
        if stored is None and record and step:
            # A chunk's error (the Map's failure), stored under the chunk's address
            stored = store.chunk_worker_error(record.job_id, step)
        if stored is not None:
            return stored
    attempts = record.step(step).attempts if record and step and record.step(step) else 1
    timeouts = {
        "States.HeartbeatTimeout": (
            f"the {step} worker stopped sending heartbeats; gave up after {attempts} attempt(s)"
        ),
        "States.Timeout": f"the {step} step ran past its time limit (attempt {attempts})",
    }
    if name in timeouts:
        return JobError(
            code=ErrorCode.WORKER_TIMEOUT, message=timeouts[name], details={"attempts": attempts}, step=step
        )
    detail = f"{cause.get('errorType')}: {cause.get('errorMessage')}" if isinstance(cause, dict) else ""
    return JobError(
        code=ErrorCode.GENERATION_FAILED,
        message=f"internal error in the {step or 'pipeline'} step: {detail or name}",
        details={"states_error": name},
        step=step,
    )


def salvage(raw: Any) -> tuple[str | None, RejectedRequest]:
    """The task and the correlation/notification fields of a rejected request, each only if valid."""
    if not isinstance(raw, Mapping):
        return None, RejectedRequest()
    fields: dict[str, Any] = {}
    candidates = {
        "callback_id": (raw.get("callback_id"), TypeAdapter(CallbackId)),
        "metadata": (raw.get("metadata"), TypeAdapter(Metadata)),
    }
    notify = raw.get("notify")
    v0_options = raw.get("options")  # a MultiTalk API v0 manifest keeps its webhook there
    url = notify.get("webhook_url") if isinstance(notify, Mapping) else None
    if url is None and isinstance(v0_options, Mapping) and "input" in raw:
        url = v0_options.get("webhook_url")
    candidates["webhook_url"] = (url, TypeAdapter(WebhookUrl))
    for name, (value, adapter) in candidates.items():
        if value is None:
            continue
        try:
            fields[name] = adapter.validate_python(value)
        except ValidationError:
            continue
    task = raw.get("task") if isinstance(raw.get("task"), str) else ("avatar" if "input" in raw else None)
    return task, RejectedRequest(**fields)


def record_failure(
    job_id: str,
    states_error: Mapping[str, Any],
    raw_input: Any,
    execution_arn: str | None,
    config: PipelineConfig,
    store: Any,
    s3: Any,
    backends: Any,
    time_left_s: Callable[[], float] | None = None,
) -> JobRecord:
    """`backends`: the worker backends (talkstack.pipeline.backends.Backends), to cancel the job's
    calls still running. `time_left_s`: what is left of the Lambda's own time (its context's
    remaining time): cancelling stops short of it, so a slow Modal API cannot time the failure
    Lambda out (the state machine would then skip `job.failed`)."""
    record = store.get(job_id)
    error = job_error_from_states(states_error, record, store)
    if record is None:
        request_raw, source = split_execution_input(
            {k: v for k, v in raw_input.items() if k != "error"}
            if isinstance(raw_input, Mapping)
            else raw_input,
            execution_arn,
        )
        task, rejected = salvage(request_raw)
        rejected_record = JobRecord.new_rejected(job_id, error, task=task, rejected=rejected, source=source)
        if store.create(rejected_record):
            return rejected_record
        record = store.get(job_id)
    # The record first, the outputs after: once the record is failed (or was cancelled), finalize
    # can no longer complete it (its conditional write finds the job ended), so what is removed
    # below can never be an output of a completed job. Read-then-delete would race a finalize still
    # running (a Lambda the state machine timed out) that completes the job in between.
    running: list[str] = []

    def fail(current: JobRecord) -> None:
        if not current.is_terminal:
            running[:] = step_calls(current)  # before mark_failed ends the failing step
            current.mark_failed(error)

    ended = store.update(job_id, fail)
    if ended.status == "completed":
        # Finalize completed the job before this failure: its result points at the outputs.
        return ended
    # Half-published outputs go before any worker is stopped: removing them is what the job's
    # result depends on; stopping is best effort, bounded by the time left.
    removed = remove_published(ended, config, s3)
    if removed:
        log.warning("job %s failed after publishing; removed %s", job_id, removed)
    if ended.status == "failed":
        # (A cancelled job's workers were stopped by the cancel.) A failure recorded again, by a
        # retried failure Lambda, stops again: it may be the first try that could not.
        until = None if time_left_s is None else time.monotonic() + time_left_s() - STOP_MARGIN_S
        _stop(job_id, config, store, s3, backends, running, until)
    return ended


def _stop(
    job_id: str,
    config: PipelineConfig,
    store: Any,
    s3: Any,
    backends: Any,
    steps: list[str],
    until: float | None = None,
) -> None:
    try:
        calls = running_calls(job_id, store, steps)
    except Exception as exc:  # the worker calls are unknown, but the flag still stops every worker
        log.warning("could not list the running worker calls of failed job %s: %s", job_id, exc)
        calls = steps
    try:
        stop_workers(job_id, config, s3, backends, calls, until=until)
    except Exception as exc:
        log.warning("could not raise the cancel flag of failed job %s: %s", job_id, exc)
