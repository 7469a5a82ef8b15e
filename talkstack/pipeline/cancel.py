"""Cancel a job: the record first, then everything that could still produce output.

Order matters. The record turns `cancelled` under the optimistic lock, so it either wins against
finalize (which then sees a cancelled job and publishes nothing, see finalize.py) or finds the job
already completed (a conflict, reported as such). Then the cancel flag goes up (workers poll it
with their heartbeat and stop without uploading), the execution is stopped (no further state runs;
Step Functions answers later task tokens with TaskTimedOut / InvalidToken, which complete ignores),
and every Modal call that may still run is cancelled outright. Cancelling a cancelled job changes
nothing.

stop_workers is shared with the failure path (failure.py): a job that ends, however it ends, stops
the GPU tasks it started, since those, not jobs, are what a key's concurrency counts.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from botocore.exceptions import ClientError

from talkstack.contract.record import JobRecord, utc_now
from talkstack.contract.worker import cancel_flag_key
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.aws import error_code
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.outputs import remove_published

log = logging.getLogger(__name__)


class _AlreadyCancelled(Exception):
    """Another cancel won: its record stands as written, and its side effects are its own."""

    def __init__(self, record: JobRecord) -> None:
        super().__init__(record.job_id)
        self.record = record


def execution_arn(config: PipelineConfig, job_id: str) -> str:
    return config.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{job_id}"


def step_calls(record: JobRecord) -> list[str]:
    """The call ids the record's running steps name (the last attempt dispatched of each step)."""
    return [s.call_id for s in record.steps if s.status == "running" and s.call_id]


def running_calls(job_id: str, store: Any, steps: list[str]) -> list[str]:
    """The backend calls of the job that may still run: every attempt (each chunk has its own) that
    has a call and has not delivered its last marker, from the attempts' TOKEN items. A call id of
    `steps` (step_calls) that no TOKEN item knows (dispatched before they carried one) is added."""
    attempts = store.attempt_tokens(job_id).values()
    calls = [a.call_id for a in attempts if a.may_be_running and a.call_id]
    known = {a.call_id for a in attempts}
    return list(dict.fromkeys([*calls, *(c for c in steps if c not in known)]))


def stop_workers(
    job_id: str, config: PipelineConfig, s3: Any, backends: Any, calls: list[str], until: float | None = None
) -> None:
    """Raise the job's cancel flag (every worker polls it with its heartbeat and stops without
    uploading, so a local worker, or a call whose cancel failed, stops too) and cancel `calls`,
    each one best effort, none started after `until` (time.monotonic()). The flag going up is the
    part that must happen: if it fails, the calls are still cancelled and then its error is raised."""
    flag_error: Exception | None = None
    try:
        s3.put_object(
            Bucket=config.work_bucket,
            Key=cancel_flag_key(job_id),
            Body=json.dumps({"job_id": job_id, "cancelled_at": utc_now().isoformat()}).encode(),
            ContentType="application/json",
        )
    except Exception as exc:
        flag_error = exc
    for number, call_id in enumerate(calls):
        if until is not None and time.monotonic() >= until:
            log.warning(
                "out of time: %d worker call(s) of job %s left to their cancel flag",
                len(calls) - number,
                job_id,
            )
            break
        try:
            backends.cancel(call_id)
        except Exception as exc:  # best effort: the flag stops the worker anyway, at its next heartbeat
            log.warning("could not cancel worker call %s of job %s: %s", call_id, job_id, exc)
    if flag_error is not None:
        raise flag_error


def cancel_job(
    job_id: str,
    config: PipelineConfig,
    store: Any,
    s3: Any,
    sfn: Any,
    backends: Any,
    emit: Any,
    current: JobRecord | None = None,
) -> tuple[JobRecord, bool]:
    """(record, whether this call cancelled it). CONFLICT if the job had already completed or failed.
    `current`: the record as the caller just read it (saves a read)."""
    running: list[str] = []

    def cancel(record: JobRecord) -> None:
        if record.status == "cancelled":
            # The caller's copy was stale (two cancels at once): the stored record decides, and
            # nothing is written, stopped or emitted a second time.
            raise _AlreadyCancelled(record)
        if record.is_terminal:
            raise TalkstackError(
                ErrorCode.CONFLICT,
                f"job {job_id} already {record.status}; only queued or running jobs can be cancelled",
                status=record.status,
            )
        running[:] = step_calls(record)  # before its running steps turn cancelled
        record.mark_cancelled()

    before = current or store.get(job_id)
    if before is not None and before.status == "cancelled":
        return before, False
    try:
        record = store.update(job_id, cancel)
    except _AlreadyCancelled as already:
        return already.record, False
    stop_workers(job_id, config, s3, backends, running_calls(job_id, store, running))
    try:
        sfn.stop_execution(executionArn=execution_arn(config, job_id), cause="cancelled through the API")
    except ClientError as exc:
        if error_code(exc) not in ("ExecutionDoesNotExist", "InvalidArn"):
            raise
    removed = remove_published(record, config, s3)
    if removed:
        log.warning("job %s was cancelled while publishing; removed %s", job_id, removed)
    emit(record, "job.cancelled")
    return record, True
