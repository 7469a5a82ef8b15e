"""The REST API's own documents: request bodies, views of jobs, models and usage, and the one error
body. Generation bodies are the job contract's request models with `task` implied by the path;
everything the API returns is derived from the job record, never a second source of truth.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt
from pydantic.json_schema import SkipJsonSchema

from talkstack.contract.composition import AspectRatio, CompositionRequest, CompositionResolution
from talkstack.contract.consent import ConsentAttestation
from talkstack.contract.fields import CallbackId, EventType, JobId, Metadata, StrictModel, TaskKind
from talkstack.contract.moderation import ModerationVerdict
from talkstack.contract.quality import QualityReport
from talkstack.contract.record import (
    JobError,
    JobRecord,
    JobStatus,
    OutputKind,
    Progress,
    StepName,
    StepStatus,
    UtcDatetime,
)
from talkstack.contract.request import (
    AvatarRequest,
    NotifySpec,
    OutputSpec,
    VideoRequest,
    VoiceRequest,
)
from talkstack.contract.scan import OutputScan
from talkstack.errors import ErrorCode
from talkstack.pipeline.audit import AuditEntry
from talkstack.pipeline.deletion import DataErasure, JobDeletion, RemovedObject

__all__ = ["DataErasure", "JobDeletion", "RemovedObject"]  # the deletion receipts, for the client

UPLOAD_ID_PATTERN = r"^upl_[a-z0-9]{24}$"
UploadId = Annotated[str, Field(pattern=UPLOAD_ID_PATTERN, examples=["upl_0123456789abcdefghijklmn"])]


# --- generation bodies ------------------------------------------------------------------------------


class AvatarGenerate(AvatarRequest):
    """`POST /v1/avatar/generate`: an avatar job request. Media are `s3://bucket/key` references the
    stack may read, or upload ids from `POST /v1/uploads` (`upl_…`)."""

    task: Literal["avatar"] = "avatar"
    job_id: SkipJsonSchema[None] = None  # the API chooses job ids (refused if sent)


class VoiceGenerate(VoiceRequest):
    """`POST /v1/voice/clone`: speech in the voice of `inputs.reference_voice` (or a stock voice)."""

    task: Literal["voice"] = "voice"
    job_id: SkipJsonSchema[None] = None  # the API chooses job ids (refused if sent)


class VideoGenerate(VideoRequest):
    """`POST /v1/video/generate`: a clip from a prompt, optionally starting from `inputs.image`."""

    task: Literal["video"] = "video"
    job_id: SkipJsonSchema[None] = None  # the API chooses job ids (refused if sent)


class CompositionGenerate(CompositionRequest):
    """`POST /v1/composition/generate`: a finished video from scenes. Media anywhere in the scenes
    are `s3://bucket/key` references the stack may read, or upload ids (`upl_…`)."""

    task: Literal["composition"] = "composition"
    job_id: SkipJsonSchema[None] = None  # the API chooses job ids (refused if sent)


GENERATE_BODIES: dict[str, type[AvatarGenerate | VoiceGenerate | VideoGenerate | CompositionGenerate]] = {
    "avatar": AvatarGenerate,
    "voice": VoiceGenerate,
    "video": VideoGenerate,
    "composition": CompositionGenerate,
}


# --- templates ----------------------------------------------------------------------------------------

TemplateIdParam = Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")]


class TemplateSummary(StrictModel):
    """One template in `GET /v1/templates`."""

    id: str
    version: PositiveInt
    name: str
    description: str
    category: str
    aspect: AspectRatio
    resolution: CompositionResolution | None = None
    variables: list[str]
    """The names of its variables (`GET /v1/templates/{id}` has their types and defaults)."""
    source: Literal["bundled", "own"]
    """`bundled`: ships with talkstack; `own`: this key's (`PUT /v1/templates/{id}`, or dropped by an
    operator at `templates/<key id>/<id>.json` in the input bucket)."""


class TemplateList(StrictModel):
    templates: list[TemplateSummary]


class TemplateView(StrictModel):
    """`GET /v1/templates/{id}`: the whole template document."""

    source: Literal["bundled", "own"]
    template: dict[str, Any]
    """The template document (schemas/template.schema.json): id, version, name, description,
    category, aspect, resolution, `variables` (each with its type, description, required, default),
    `composition` (scenes with `{{name}}` placeholders), `example` variables and bundled `assets`."""


class TemplateGenerate(StrictModel):
    """`POST /v1/templates/{id}/generate`: a composition job from a template and its variables."""

    variables: dict[str, Any] = Field(default_factory=dict)
    """Values by variable name; media as `s3://bucket/key`, an upload id (`upl_…`) or `asset:<name>`
    for a bundled file. Variables left out take their defaults."""
    preview: bool | None = None
    """Render fast and cheap (lite engines, 360p, a PREVIEW mark; no GPU time). Start the full
    render from the preview's job with `POST /v1/jobs/{job_id}/render`."""
    output: OutputSpec | None = None
    notify: NotifySpec | None = None
    callback_id: CallbackId | None = None
    metadata: Metadata | None = None
    consent: ConsentAttestation | None = None
    """For the presenter's photo and reference voice, as for an avatar job (none for bundled samples)."""


# --- uploads ------------------------------------------------------------------------------------------


class UploadRequest(StrictModel):
    filename: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^/\\\x00-\x1f\x7f]+$")]
    """Original file name (kept as the object's last key segment; no folders)."""
    content_type: Annotated[str, Field(max_length=100, examples=["audio/wav"])]
    """One of the media types the engines read (images: PNG, JPEG, WebP; audio: WAV, MP3, M4A,
    FLAC, Ogg; video: MP4)."""
    bytes: Annotated[int, Field(gt=0)]
    """Exact size of the file; the URL is signed for it, and the limit of its kind applies."""


class UploadTicket(StrictModel):
    upload_id: UploadId
    """What to put in a generation request's `inputs`."""
    method: Literal["PUT"] = "PUT"
    url: str
    """Pre-signed URL: PUT the file's bytes here with exactly `headers`."""
    headers: dict[str, str]
    expires_at: UtcDatetime
    max_bytes: PositiveInt


# --- jobs ---------------------------------------------------------------------------------------------


class JobLinks(StrictModel):
    self: str
    cancel: str


class JobAccepted(StrictModel):
    """202 answer to a generation request."""

    job_id: JobId
    task: TaskKind
    status: JobStatus
    created_at: UtcDatetime
    links: JobLinks


class OutputView(StrictModel):
    kind: OutputKind
    content_type: str
    bytes: NonNegativeInt
    bucket: str
    key: str
    url: str
    """Pre-signed GET, valid until `url_expires_at`."""
    url_expires_at: UtcDatetime


class ResultView(StrictModel):
    outputs: list[OutputView]
    duration_s: NonNegativeFloat | None = None
    width: PositiveInt | None = None
    height: PositiveInt | None = None
    fps: NonNegativeFloat | None = None
    bytes: NonNegativeInt | None = None
    estimated_cost_usd: NonNegativeFloat | None = None
    warnings: list[str] = Field(default_factory=list)
    quality: QualityReport | None = None
    """Avatar jobs: the quality report of the video (talkstack.contract.record.JobResult.quality)."""
    scan: OutputScan | None = None
    """The output scan of the video (passed, or not_scanned: no classifier ran on its worker)."""
    preview: bool = False
    """A composition rendered as a preview (lite engines, 360p, a PREVIEW mark)."""


class StepView(StrictModel):
    name: StepName
    status: StepStatus
    model: str | None = None
    backend: str | None = None
    attempts: NonNegativeInt
    duration_s: NonNegativeFloat | None = None


class JobView(StrictModel):
    job_id: JobId
    task: TaskKind | None
    model: str | None
    status: JobStatus
    progress: Progress
    progress_message: str | None = None
    scene_progress: dict[str, Progress] = Field(default_factory=dict)
    """A composition's progress through each scene's engine steps, by scene index."""
    preview: bool = False
    """A composition submitted with `preview: true`: `POST /v1/jobs/{job_id}/render` renders it in full."""
    created_at: UtcDatetime
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    callback_id: CallbackId | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    steps: list[StepView] = Field(default_factory=list)
    result: ResultView | None = None
    error: JobError | None = None
    moderation: ModerationVerdict | None = None
    """The input moderation verdict (policy version, classifier, and for a refusal its category)."""
    links: JobLinks

    @classmethod
    def of(cls, record: JobRecord, result: ResultView | None, links: JobLinks) -> JobView:
        return cls(
            job_id=record.job_id,
            task=record.task,
            model=record.model,
            status=record.status,
            progress=record.progress,
            progress_message=record.progress_message,
            scene_progress=dict(record.scene_progress),
            preview=isinstance(record.request, CompositionRequest) and record.request.preview,
            created_at=record.created_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
            callback_id=record.callback_id,
            metadata=record.metadata,
            steps=[StepView.model_validate(s, from_attributes=True) for s in record.steps],
            result=result,
            error=record.error,
            moderation=record.moderation,
            links=links,
        )


class JobSummary(StrictModel):
    job_id: JobId
    task: TaskKind | None
    model: str | None
    status: JobStatus
    progress: Progress
    created_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    error_code: ErrorCode | None = None


class JobList(StrictModel):
    jobs: list[JobSummary]
    next_cursor: str | None = None
    """Pass as `cursor` for the next (older) page; absent on the last page."""


# --- webhooks -------------------------------------------------------------------------------------------

WEBHOOK_ID_PATTERN = r"^wh_[a-z0-9]{24}$"
WebhookId = Annotated[str, Field(pattern=WEBHOOK_ID_PATTERN, examples=["wh_0123456789abcdefghijklmn"])]


class WebhookCreate(StrictModel):
    """`POST /v1/webhooks`: an endpoint that receives this key's job events."""

    url: Annotated[
        str, Field(min_length=1, max_length=2048, examples=["https://example.com/hooks/talkstack"])
    ]
    """An https URL on a public address (checked now, and again before every delivery)."""
    events: Annotated[list[EventType], Field(min_length=1)] | None = None
    """Only these event types; absent: every event."""
    description: Annotated[str, Field(max_length=200)] | None = None


class WebhookView(StrictModel):
    """A registered endpoint. Its secret is shown only when it is created or rotated."""

    id: WebhookId
    url: str
    events: list[EventType] | None = None
    """None: every event type."""
    description: str | None = None
    created_at: UtcDatetime
    previous_secret_expires_at: UtcDatetime | None = None
    """After a rotation: until then every delivery is signed with the old secret too."""


class WebhookCreated(WebhookView):
    secret: str
    """The endpoint's Standard Webhooks signing secret (`whsec_…`): shown now and never again
    (rotate to get a new one). Verify every delivery with it."""


class WebhookList(StrictModel):
    webhooks: list[WebhookView]


class WebhookSecret(StrictModel):
    """The key's own signing secret: per-request webhooks (`notify.webhook_url`) of this key's jobs
    are signed with it."""

    secret: str
    previous_secret_expires_at: UtcDatetime | None = None
    """After a rotation: until then every delivery is signed with the old secret too."""


# --- models, usage, health -----------------------------------------------------------------------------


class ModelLimits(StrictModel):
    max_audio_seconds: float | None = None
    max_text_chars: int | None = None
    max_image_bytes: int | None = None
    max_audio_bytes: int | None = None
    max_duration_s: float | None = None


class ModelView(StrictModel):
    id: str
    task: Literal["avatar", "voice", "video", "matte"]
    """What the model does; `matte` models cut people out of their background in compositions
    (named by a composition's options.matte_model, never a job's task)."""
    description: str
    licence: str
    gpu: bool
    backend: Literal["lite", "modal"]
    """Where the model runs: `lite` = a CPU lite engine, in the stack's own workers; `modal` = a GPU
    engine on Modal (the same vocabulary as `talkstack models`). Whether this stack can run it now
    is `available`, and `unavailable_reason` says why not."""
    default: bool = False
    """Whether a request for this task that names no model gets this one."""
    available: bool
    """Whether a job for it would be accepted now."""
    unavailable_reason: str | None = None
    limits: ModelLimits


class ModelList(StrictModel):
    models: list[ModelView]


class UsageBucket(StrictModel):
    start: UtcDatetime
    end: UtcDatetime
    jobs: NonNegativeInt = 0
    completed: NonNegativeInt = 0
    failed: NonNegativeInt = 0
    cancelled: NonNegativeInt = 0
    active: NonNegativeInt = 0
    previews: NonNegativeInt = 0
    """Of `jobs`, composition previews (`preview: true`): they run lite engines on CPUs, so they add
    no GPU seconds and hold none of the key's GPU tasks (they count as concurrent jobs)."""
    seconds_rendered: NonNegativeFloat = 0.0
    """Seconds of finished video or audio delivered."""
    gpu_seconds: NonNegativeFloat = 0.0
    """Seconds GPU workers spent on these jobs (task taken → result, summed over parallel chunks)."""
    estimated_cost_usd: NonNegativeFloat = 0.0


class Usage(StrictModel):
    period: Literal["day", "month"]
    start: UtcDatetime
    end: UtcDatetime
    tier: str
    limits: dict[str, int]
    totals: UsageBucket
    buckets: list[UsageBucket]


class Health(StrictModel):
    status: Literal["ok"]
    version: str
    time: datetime


# --- audit trail ----------------------------------------------------------------------------------------


class AuditTrail(StrictModel):
    """`GET /v1/audit`: one page of the calling key's own audit entries."""

    entries: list[AuditEntry]
    next_cursor: str | None = None
    """Pass as `cursor` for the next page (same order); absent on the last page."""


# --- errors -------------------------------------------------------------------------------------------


class ErrorDetail(StrictModel):
    code: ErrorCode
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(StrictModel):
    """Every 4xx/5xx answer: a stable code from the job contract, one human line, and details."""

    error: ErrorDetail
