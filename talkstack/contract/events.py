"""Job events: one schema for every lifecycle event, published to SNS and POSTed to webhooks.

A single stable shape (rather than one per type) lets consumers parse every event the same way;
`type` says what happened, `result` is present exactly on `job.completed` and `error` exactly on
`job.failed`; `api_key_id` names the tenant of an API job. Event ids are derived from the job and
the event, so a re-sent event keeps its id and consumers can drop duplicates.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, model_validator

from talkstack.contract.fields import CallbackId, EventType, JobId, Metadata, S3Bucket, TaskKind
from talkstack.contract.record import (
    JobError,
    JobRecord,
    JobResult,
    JobStatus,
    Progress,
    UtcDatetime,
    utc_now,
)
from talkstack.contract.scan import OutputScan

EVENT_SCHEMA_VERSION = "1"
EVENT_STATUS: dict[str, JobStatus] = {
    "job.queued": "queued",
    "job.started": "running",
    "job.progress": "running",
    "job.completed": "completed",
    "job.held": "held",
    "job.failed": "failed",
    "job.cancelled": "cancelled",
}
_EVENT_ID_NAMESPACE = uuid.UUID("5b0f7e4c-2f4e-4a8e-9a53-7a1c3e0d7a11")


class EventResult(JobResult):
    """The job result plus the keys a consumer needs first."""

    bucket: S3Bucket
    """Bucket of the main output."""
    key: Annotated[str, Field(min_length=1, max_length=1024)]
    """Key of the main output (video, or audio for voice jobs)."""
    thumbnail_key: str | None = None

    @classmethod
    def from_result(cls, result: JobResult) -> EventResult:
        primary = result.primary
        if primary is None:
            raise ValueError("result: a completed job needs a video or audio output")
        thumbnail = result.first("thumbnail")
        return cls(
            **result.model_dump(),
            bucket=primary.bucket,
            key=primary.key,
            thumbnail_key=thumbnail.key if thumbnail else None,
        )


def _conditional(event_type: str, field: str) -> dict[str, Any]:
    return {
        "if": {"properties": {"type": {"const": event_type}}, "required": ["type"]},
        "then": {"required": [field], "properties": {field: {"type": "object"}}},
        "else": {"properties": {field: {"type": "null"}}},
    }


class JobEvent(BaseModel):
    """Something happened to a job. `result` only on job.completed, `error` only on job.failed."""

    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra={
            "allOf": [_conditional("job.completed", "result"), _conditional("job.failed", "error")]
        },
    )

    schema_version: Literal["1"] = EVENT_SCHEMA_VERSION
    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    """Stable per job and event: a re-sent event keeps its id."""
    type: EventType
    occurred_at: UtcDatetime
    job_id: JobId
    api_key_id: Annotated[str, Field(pattern=r"^[a-z0-9]{1,32}$")] | None = None
    """The API key (tenant) the job belongs to: its id, never its secret. A receiver picks the
    secret to verify with by it. None for jobs started by an S3 drop or a direct execution, which
    are signed with the stack's secret."""
    task: TaskKind | None
    """None only for a job.failed event of a request rejected before its task was known."""
    model: str | None
    status: JobStatus
    progress: Progress
    progress_message: str | None = None
    scene: NonNegativeInt | None = None
    """job.progress of a composition: the scene (index into `scenes`) whose engine steps moved it;
    None for the compose step, for other events and for other jobs."""
    result: EventResult | None = None
    error: JobError | None = None
    scan: OutputScan | None = None
    """The output scan (as in `result.scan`): on job.completed, and on job.held, whose outputs are
    held for an operator's review and not published (no `result`)."""
    callback_id: CallbackId | None = None
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> JobEvent:
        expected = EVENT_STATUS[self.type]
        if self.status != expected:
            raise ValueError(f"status: a {self.type} event needs status {expected!r}, got {self.status!r}")
        if (self.type == "job.completed") != (self.result is not None):
            raise ValueError("result: required on job.completed events and only there")
        if (self.type == "job.failed") != (self.error is not None):
            raise ValueError("error: required on job.failed events and only there")
        return self

    @staticmethod
    def make_event_id(job_id: str, event_type: str, progress: float | None = None) -> str:
        name = f"{job_id}/{event_type}" + (f"/{progress:.4f}" if event_type == "job.progress" else "")
        return f"evt_{uuid.uuid5(_EVENT_ID_NAMESPACE, name).hex}"

    @classmethod
    def from_record(
        cls, record: JobRecord, type: EventType, *, occurred_at: datetime | None = None
    ) -> JobEvent:
        """The event of `type` for the record's current state (ValueError if they disagree, e.g. a
        job.completed event for a record that is not completed)."""
        return cls(
            event_id=cls.make_event_id(record.job_id, type, record.progress),
            type=type,
            occurred_at=occurred_at or utc_now(),
            job_id=record.job_id,
            api_key_id=record.source.api_key_id if record.source else None,
            task=record.task,
            model=record.model,
            status=record.status,
            progress=record.progress,
            progress_message=record.progress_message,
            scene=record.progress_scene if type == "job.progress" else None,
            result=EventResult.from_result(record.result)
            if type == "job.completed" and record.result
            else None,
            error=record.error if type == "job.failed" else None,
            scan=record.result.scan if type in ("job.completed", "job.held") and record.result else None,
            callback_id=record.callback_id,
            metadata=record.metadata,
        )
