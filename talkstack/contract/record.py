"""Job record: the one document that says where a job stands (DynamoDB item, result.json, API body).

Kept data-centric: the state machine and handlers decide transitions; the small `mark_*` helpers only
keep the related fields (status, progress, timestamps, timings) consistent with each other, and refuse
to move a job out of a terminal state so a duplicate event cannot rewrite a finished job.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PlainSerializer,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from talkstack.contract.composition import JobRequest
from talkstack.contract.fields import CallbackId, JobId, Metadata, S3Bucket, StrictModel, TaskKind, WebhookUrl
from talkstack.contract.moderation import ModerationVerdict
from talkstack.contract.quality import QualityReport
from talkstack.contract.request import NotifySpec
from talkstack.contract.scan import OutputScan
from talkstack.errors import ErrorCode, TalkstackError

JobStatus = Literal["queued", "running", "completed", "held", "failed", "cancelled"]
StepName = Literal[
    "validate",
    "moderate",
    "plan",
    "voice",
    "avatar",
    "video",
    "stitch",
    "matte",
    "compose",
    "finalize",
    "notify",
]
StepStatus = Literal["pending", "running", "completed", "failed", "skipped", "cancelled"]
OutputKind = Literal["video", "audio", "thumbnail", "captions", "preview", "scene_thumbnail", "result"]
"""`video` also names a composition's alpha files (WebM, MOV: told apart by content type);
`captions` its SRT and WebVTT files, `preview` its animated WebP, `scene_thumbnail` one still per
scene, in scene order."""

JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "held", "failed", "cancelled"})
"""A `held` job's execution has ended (its outputs wait for an operator's review, unpublished): only
`release` (→ completed) or `refuse` (→ failed) moves it on (talkstack/pipeline/held_review.py)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _iso_utc(value: datetime) -> str:
    """Always `…Z`, even for a datetime assigned after validation (naive is taken as UTC)."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


UtcDatetime = Annotated[
    AwareDatetime, AfterValidator(_to_utc), PlainSerializer(_iso_utc, return_type=str, when_used="json")
]
"""A timezone-aware datetime, stored in UTC and written as ISO-8601 with a `Z` suffix."""

Progress = Annotated[float, Field(ge=0, le=1)]


def _one_line(text: str) -> str:
    return " ".join(text.split())


class OutputFile(StrictModel):
    """One published object."""

    kind: OutputKind
    bucket: S3Bucket
    key: Annotated[str, Field(min_length=1, max_length=1024)]
    content_type: Annotated[str, Field(pattern=r"^[\w.+-]+/[\w.+-]+$")]
    bytes: NonNegativeInt


class JobResult(StrictModel):
    """What a completed job produced."""

    outputs: list[OutputFile] = Field(default_factory=list)
    duration_s: NonNegativeFloat | None = None
    width: PositiveInt | None = None
    height: PositiveInt | None = None
    fps: PositiveFloat | None = None
    bytes: NonNegativeInt | None = None
    """Total size of all outputs; filled from `outputs` when not given."""
    estimated_cost_usd: NonNegativeFloat | None = None
    warnings: list[str] = Field(default_factory=list)
    quality: QualityReport | None = None
    """Avatar jobs: the quality report of the published video (lip sync, identity and colour drift,
    frame count, A/V alignment; docs/quality.md). A parallel long avatar gets the stitch step's
    report, or else the chunks' combined: the worst value of each measure, passed only if every
    chunk passed. None for voice and video jobs, and when the worker measured nothing."""
    scan: OutputScan | None = None
    """The output scan of the main output (talkstack.contract.scan): passed, flagged (the job is
    held) or not_scanned. None from workers that predate it."""
    preview: bool = False
    """A composition rendered as a preview (`preview: true`): lite engines, 360p, a PREVIEW mark."""
    held: list[OutputFile] = Field(default_factory=list)
    """A held job's outputs, in the work bucket under `held/<job_id>/` (never the output bucket),
    waiting for an operator's release; empty once released, and for any other job. Never shown to
    the API's clients."""

    @model_validator(mode="after")
    def _total_bytes(self) -> JobResult:
        if self.bytes is None and self.outputs:
            self.bytes = sum(output.bytes for output in self.outputs)
        return self

    def first(self, *kinds: OutputKind) -> OutputFile | None:
        """The first output of any of `kinds`, in that order of preference."""
        for kind in kinds:
            for output in self.outputs:
                if output.kind == kind:
                    return output
        return None

    @property
    def primary(self) -> OutputFile | None:
        """The main deliverable: the video, else the audio."""
        return self.first("video", "audio")


class JobError(StrictModel):
    """Why a job failed: a stable code, one human line, structured details, and the failing step."""

    code: ErrorCode
    message: Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_one_line)]
    details: dict[str, Any] = Field(default_factory=dict)
    step: StepName | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, step: StepName | None = None) -> JobError:
        """TalkstackError keeps its code; anything else is an unexpected GENERATION_FAILED."""
        if isinstance(exc, TalkstackError):
            code, message, details = exc.code, exc.message, exc.details
        else:
            code, message, details = ErrorCode.GENERATION_FAILED, f"{type(exc).__name__}: {exc}", {}
        safe_details = json.loads(json.dumps(details, default=str))  # details must survive JSON
        return cls(code=code, message=_one_line(message)[:2000] or str(code), details=safe_details, step=step)


class StepRecord(StrictModel):
    """One engine or pipeline step of a job."""

    name: StepName
    status: StepStatus = "pending"
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    duration_s: NonNegativeFloat | None = None
    backend: str | None = None
    """Where it ran: "lite", "modal", "local-gpu", …"""
    worker: str | None = None
    """Worker / container id, for debugging."""
    call_id: str | None = None
    """The backend's id for the current attempt (`modal:fc-…`, `local:…`)."""
    model: str | None = None
    attempts: NonNegativeInt = 0
    worker_seconds: dict[str, NonNegativeFloat] = Field(default_factory=dict)
    """Seconds each attempt that delivered spent in its worker (task taken → result marker), by
    attempt id: parallel chunks each have one. Keyed so that a marker delivered twice (S3 events are
    at-least-once) overwrites its own entry instead of counting again."""
    accelerator: str | None = None
    """The GPU those workers reported (None: CPU, or a worker that predates the field)."""

    @property
    def worker_s(self) -> float:
        """Worker seconds over all delivering attempts and chunks: what a per-second GPU bill counts
        (cold starts, idle containers and failed attempts are not in it)."""
        return round(sum(self.worker_seconds.values()), 3)


class JobSource(StrictModel):
    """Where a job came from: the S3 manifest, a direct Step Functions start, or the API."""

    kind: Literal["s3", "execution", "api"]
    bucket: S3Bucket | None = None
    key: Annotated[str, Field(max_length=1024)] | None = None
    """Manifest key (decoded), for jobs dropped into S3."""
    etag: str | None = None
    execution_arn: str | None = None
    api_key_id: Annotated[str, Field(pattern=r"^[a-z0-9]{1,32}$")] | None = None
    """For API jobs: the id (never the secret) of the key that submitted it; only that key sees it."""
    gpu_slots: Annotated[int, Field(ge=1, le=1000)] | None = None
    """For API jobs: the GPU tasks the job may run at once (the chunk Map's concurrency), given at
    admission from the key's tier; None (S3 drops, direct starts): the `parallel_max_concurrency`
    setting."""


class RejectedRequest(StrictModel):
    """What could be salvaged from a request that failed validation, so the failure still reaches
    the client: its correlation fields and webhook (each kept only if valid on its own)."""

    callback_id: CallbackId | None = None
    metadata: Metadata = Field(default_factory=dict)
    webhook_url: WebhookUrl | None = None


class JobRecord(StrictModel):
    """Current state of one job. `request` is absent only for a job rejected at validation."""

    schema_version: Literal["1"] = "1"
    job_id: JobId
    task: TaskKind | None
    """None only when a rejected request did not say (or said something invalid)."""
    model: str | None
    """Model of the main step (the avatar model for a text-driven avatar)."""
    status: JobStatus = "queued"
    progress: Progress = 0.0
    progress_message: str | None = None
    progress_scene: NonNegativeInt | None = None
    """The composition scene (index) the latest progress came from; None for the compose step and
    for every other job."""
    scene_progress: dict[str, Progress] = Field(default_factory=dict)
    """A composition's progress through each scene's engine steps, by scene index (a string: JSON
    keys): the scenes render side by side, so the job's progress is their mean, not the furthest."""
    created_at: UtcDatetime
    updated_at: UtcDatetime
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    request: JobRequest | None = None
    rejected: RejectedRequest | None = None
    source: JobSource | None = None
    steps: list[StepRecord] = Field(default_factory=list)
    timings: dict[str, NonNegativeFloat] = Field(default_factory=dict)
    """Seconds per step name, plus "total" (created_at to finished_at)."""
    result: JobResult | None = None
    error: JobError | None = None
    moderation: ModerationVerdict | None = None
    """The input moderation verdict (the Moderate state's): None until it ran, and for a request
    that never validated."""

    @model_validator(mode="after")
    def _consistent(self) -> JobRecord:
        if self.request is None:
            if self.status != "failed":
                raise ValueError("request: required unless the job was rejected (status failed)")
        elif self.task != self.request.task:
            raise ValueError(f"task: {self.task!r} does not match request.task {self.request.task!r}")
        if self.status in ("completed", "held") and self.result is None:
            raise ValueError(f"result: required when status is {self.status}")
        if self.status == "failed" and self.error is None:
            raise ValueError("error: required when status is failed")
        return self

    @classmethod
    def new(cls, job_id: str, request: JobRequest, *, now: datetime | None = None) -> JobRecord:
        """A queued record for a freshly accepted request."""
        now = now or utc_now()
        return cls(
            job_id=job_id,
            task=request.task,
            model=request.primary_model,
            created_at=now,
            updated_at=now,
            request=request,
        )

    @classmethod
    def new_rejected(
        cls,
        job_id: str,
        error: JobError,
        *,
        task: str | None = None,
        rejected: RejectedRequest | None = None,
        source: JobSource | None = None,
        now: datetime | None = None,
    ) -> JobRecord:
        """A failed record for a request that never validated (nothing ran, nothing was written)."""
        now = now or utc_now()
        return cls(
            job_id=job_id,
            task=task if task in ("avatar", "voice", "video") else None,  # type: ignore[arg-type]
            model=None,
            status="failed",
            created_at=now,
            updated_at=now,
            finished_at=now,
            timings={"total": 0.0},
            rejected=rejected,
            source=source,
            error=error,
        )

    @property
    def callback_id(self) -> str | None:
        holder = self.request or self.rejected
        return holder.callback_id if holder else None

    @property
    def metadata(self) -> dict[str, str]:
        holder = self.request or self.rejected
        return dict(holder.metadata) if holder else {}

    @property
    def notify(self) -> NotifySpec:
        """Webhook settings in force: the request's, or the salvaged URL of a rejected request."""
        if self.request is not None:
            return self.request.notify
        if self.rejected is not None and self.rejected.webhook_url:
            return NotifySpec(webhook_url=self.rejected.webhook_url)
        return NotifySpec()

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def step(self, name: StepName) -> StepRecord | None:
        return next((step for step in self.steps if step.name == name), None)

    # --- helpers: mutate in place, return self --------------------------------------------------

    def _touch(self, now: datetime | None, *, leaving: JobStatus | None = None) -> datetime:
        """`leaving`: the one terminal status this change may move the job out of (held only)."""
        if self.is_terminal and self.status != leaving:
            raise ValueError(f"job {self.job_id} is already {self.status}")
        now = _to_utc(now or utc_now())
        self.updated_at = now
        return now

    def _finish(
        self, status: JobStatus, now: datetime | None, *, leaving: JobStatus | None = None, **fields: Any
    ) -> JobRecord:
        now = self._touch(now, leaving=leaving)
        for name, value in fields.items():
            setattr(self, name, value)
        self.status, self.finished_at = status, now
        self.timings["total"] = max(0.0, (now - self.created_at).total_seconds())
        return self

    def start_step(
        self,
        name: StepName,
        *,
        backend: str | None = None,
        worker: str | None = None,
        model: str | None = None,
        now: datetime | None = None,
    ) -> StepRecord:
        """Mark `name` running (a retry counts another attempt); the job becomes running too."""
        now = self._touch(now)
        step = self.step(name)
        if step is None:
            step = StepRecord(name=name)
            self.steps.append(step)
        step.status, step.started_at, step.finished_at, step.duration_s = "running", now, None, None
        step.attempts += 1
        step.backend, step.worker, step.model = (
            backend or step.backend,
            worker or step.worker,
            model or step.model,
        )
        if self.status == "queued":
            self.status, self.started_at = "running", now
        return step

    def finish_step(
        self, name: StepName, *, status: StepStatus = "completed", now: datetime | None = None
    ) -> StepRecord:
        now = self._touch(now)
        step = self.step(name)
        if step is None:
            raise ValueError(f"step {name!r} was never started")
        step.status, step.finished_at = status, now
        if step.started_at is not None:
            step.duration_s = max(0.0, (now - step.started_at).total_seconds())
            self.timings[name] = step.duration_s
        return step

    def set_progress(
        self, progress: float, message: str | None = None, *, now: datetime | None = None
    ) -> JobRecord:
        """Progress never goes backwards (heartbeats can arrive out of order)."""
        self._touch(now)
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be within 0..1, got {progress}")
        self.progress = max(self.progress, progress)
        self.progress_message = message if message is not None else self.progress_message
        return self

    def mark_completed(self, result: JobResult, *, now: datetime | None = None) -> JobRecord:
        return self._finish("completed", now, result=result, progress=1.0, progress_message=None)

    def mark_held(self, result: JobResult, *, now: datetime | None = None) -> JobRecord:
        """The outputs are held for review (result.held), not published: the execution ends here."""
        return self._finish("held", now, result=result, progress=1.0, progress_message=None)

    def release(self, outputs: list[OutputFile], *, now: datetime | None = None) -> JobRecord:
        """A held job's outputs were published by an operator: it completes with them."""
        result = self._held_result()
        result.outputs, result.held = outputs, []
        result.bytes = sum(output.bytes for output in outputs)
        return self._finish("completed", now, leaving="held", result=result)

    def refuse(self, error: JobError, *, now: datetime | None = None) -> JobRecord:
        """A held job's outputs were deleted by an operator: it fails with `error`."""
        result = self._held_result()
        result.held = []
        return self._finish("failed", now, leaving="held", error=error, result=result)

    def _held_result(self) -> JobResult:
        if self.status != "held" or self.result is None:
            raise ValueError(f"job {self.job_id} is {self.status}, not held")
        return self.result

    def mark_failed(
        self, error: JobError | BaseException, *, step: StepName | None = None, now: datetime | None = None
    ) -> JobRecord:
        """Accepts a JobError or any exception (see JobError.from_exception); fails the running step too."""
        if not isinstance(error, JobError):
            error = JobError.from_exception(error, step=step)
        running = self.step(error.step) if error.step else None
        if running is not None and running.status == "running":
            self.finish_step(running.name, status="failed", now=now)
        return self._finish("failed", now, error=error)

    def mark_cancelled(self, *, now: datetime | None = None) -> JobRecord:
        self._touch(now)
        for step in self.steps:
            if step.status in ("pending", "running"):
                step.status = "cancelled"
        return self._finish("cancelled", now)
