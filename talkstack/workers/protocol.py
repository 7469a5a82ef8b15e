"""The worker protocol: everything a worker needs is in one task document, and it answers by
writing marker objects. No AWS credentials, no SDK: plain HTTP GET and PUT on pre-signed URLs.

    dispatch λ ──task──► worker ── GET inputs ──► PUT outputs ──► PUT result marker ─► complete λ
                                 └─ PUT progress marker every `heartbeat_interval_s` ─► heartbeat
                                 └─ on failure: PUT error marker (retryable or not) ──► failure
                                 └─ GET the cancel flag with each heartbeat: once it exists, stop

A Modal container, a local CPU process or a user's own GPU box all speak it. The markers carry the
attempt id, and the marker keys embed it too, so a late marker of an abandoned attempt is matched
to its own (expired) task token and can never complete a newer attempt.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt

from talkstack.contract.fields import StrictModel
from talkstack.contract.record import JobError, Progress, UtcDatetime

PROTOCOL = "talkstack.worker/1"
WorkerStep = Literal["voice", "avatar", "video", "stitch"]
MarkerKind = Literal["progress", "result", "error"]


class InputUrl(StrictModel):
    url: str
    """Pre-signed GET."""
    filename: str
    """Local file name to save it under (keeps the extension the engine sniffs)."""
    bytes: NonNegativeInt | None = None


class OutputUrl(StrictModel):
    url: str
    """Pre-signed PUT; send `content_type` as the Content-Type header (it is signed)."""
    key: str
    """Where it lands (informational: the worker never needs the bucket)."""
    content_type: str


class Markers(StrictModel):
    progress: OutputUrl
    result: OutputUrl
    error: OutputUrl


class WorkerTask(StrictModel):
    protocol: Literal["talkstack.worker/1"] = PROTOCOL
    job_id: str
    step: WorkerStep
    attempt_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    attempt: PositiveInt
    model: str
    options: dict[str, Any] = Field(default_factory=dict)
    """The step's options (the request's `options`, or the voice options of a text-driven avatar)."""
    text: str | None = None
    """Text to speak (voice steps)."""
    inputs: dict[str, InputUrl] = Field(default_factory=dict)
    """By role: image, audio, second_audio, reference_voice."""
    outputs: dict[str, OutputUrl]
    """By role: video + thumbnail (avatar, video), audio (voice)."""
    markers: Markers
    heartbeat_interval_s: Annotated[float, Field(gt=0)]
    deadline: UtcDatetime
    """The URLs expire around here; work past it cannot be delivered."""
    cancel_url: str | None = None
    """Pre-signed GET of the job's cancel flag. While it answers 404 the job stands; once it answers
    200 the job was cancelled: stop, upload nothing, write no marker. Polled with each heartbeat."""


class OutputObject(StrictModel):
    key: str
    bytes: NonNegativeInt
    content_type: str


class ProgressMarker(StrictModel):
    attempt_id: str
    progress: Progress
    message: str | None = None
    at: UtcDatetime


class ResultMarker(StrictModel):
    attempt_id: str
    outputs: dict[str, OutputObject]
    duration_s: NonNegativeFloat | None = None
    width: PositiveInt | None = None
    height: PositiveInt | None = None
    fps: NonNegativeFloat | None = None
    sample_rate: PositiveInt | None = None
    engine_s: NonNegativeFloat
    """Seconds spent in the engine itself (excludes transfers)."""
    warnings: list[str] = Field(default_factory=list)
    worker: str
    accelerator: str | None = None
    """The GPU the engine ran on, as the driver names it ("NVIDIA H100 80GB HBM3"); None on CPU."""
    started_at: UtcDatetime
    """When the worker took the task (before downloading inputs)."""
    at: UtcDatetime


class ErrorMarker(StrictModel):
    attempt_id: str
    error: JobError
    retryable: bool
    """True for transient trouble (network, a lost container); False for bad input."""
    worker: str
    at: UtcDatetime


MARKER_MODELS: dict[str, type[StrictModel]] = {
    "progress": ProgressMarker,
    "result": ResultMarker,
    "error": ErrorMarker,
}
