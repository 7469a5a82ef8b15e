"""The worker protocol: everything a worker needs is in one task document, and it answers by
writing marker objects. No AWS credentials, no SDK: plain HTTP GET and PUT on pre-signed URLs.

    dispatch λ ──task──► worker ── GET inputs ──► PUT outputs ──► PUT result marker ─► complete λ
                                 └─ PUT progress marker every `heartbeat_interval_s` ─► heartbeat
                                 └─ on failure: PUT error marker (retryable or not) ──► failure
                                 └─ GET the cancel flag with each heartbeat: once it exists, stop

A Modal container, a local CPU process or a user's own GPU box all speak it. The markers carry the
attempt id, and the marker keys embed it too, so a late marker of an abandoned attempt is matched
to its own (expired) task token and can never complete a newer attempt.

The work bucket's layout lives here too, as the one place that builds and parses its keys (the
pipeline, the local stack and the CDK stack's notifications, permissions and lifecycle rules):

    work/<job>/<attempt>/<file>           a worker attempt's outputs (PUT by the worker)
    work/<job>/segments/<file>            the speech slices of a parallel long avatar (segment step)
    markers/<job>/<attempt>/<kind>.json   progress / result / error markers (→ the complete Lambda)
    control/<job>/cancel.json             the cancel flag every worker of the job polls
    held/<job>/<role><ext>                a held job's outputs, waiting for an operator's review
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt, TypeAdapter, model_validator

from talkstack.contract.composition import ComposeOptions, MatteOptions
from talkstack.contract.fields import StrictModel
from talkstack.contract.quality import QualityReport
from talkstack.contract.record import JobError, Progress, UtcDatetime
from talkstack.contract.request import AvatarOptions, VideoOptions, VoiceOptions
from talkstack.contract.scan import OutputScan
from talkstack.errors import ErrorCode, TalkstackError

PROTOCOL = "talkstack.worker/1"
WorkerStep = Literal["voice", "avatar", "video", "stitch", "matte", "compose"]
WORKER_STEPS: tuple[WorkerStep, ...] = get_args(WorkerStep)
MarkerKind = Literal["progress", "result", "error"]
MARKER_KINDS: tuple[MarkerKind, ...] = get_args(MarkerKind)

# ---------------------------------------------------------------------------------------------
# The work bucket's layout
# ---------------------------------------------------------------------------------------------

WORK_PREFIX = "work/"
"""Worker outputs and segment slices: temporary, published by finalize, expired by a lifecycle rule."""
MARKERS_PREFIX = "markers/"
"""Worker markers: the work bucket notifies the complete Lambda of every object under it."""
CONTROL_PREFIX = "control/"
"""Flags the control plane raises for workers (cancel)."""
HELD_PREFIX = "held/"
"""Outputs the output scan flagged (finalize copies them here instead of publishing them; an
operator's release publishes them, a delete removes them). Expired like the rest of the bucket."""
WORK_BUCKET_PREFIXES = (WORK_PREFIX, MARKERS_PREFIX, CONTROL_PREFIX, HELD_PREFIX)
_ID = r"[A-Za-z0-9_-]+"
_MARKER_KEY = re.compile(rf"^{MARKERS_PREFIX}(?P<job>{_ID})/(?P<attempt>{_ID})/(?P<kind>\w+)\.json$")


class StepAddress(StrictModel, frozen=True):
    """One engine step of a job, or one chunk of it (a parallel long avatar renders `avatar` chunk 0,
    1, … side by side), or one scene's step of a composition (scene 2's `voice`, `avatar`, `matte`).
    Its `label` is how the jobs table names the step's attempts and results."""

    step: WorkerStep
    chunk: NonNegativeInt | None = None
    scene: NonNegativeInt | None = None

    @model_validator(mode="after")
    def _one_dimension(self) -> StepAddress:
        if self.chunk is not None and self.scene is not None:
            raise ValueError("a step address names a chunk or a scene, not both")
        return self

    @property
    def label(self) -> str:
        """`avatar`, `avatar#3` for chunk 3, `avatar@2` for scene 2's avatar step."""
        if self.scene is not None:
            return f"{self.step}@{self.scene}"
        return self.step if self.chunk is None else f"{self.step}#{self.chunk}"

    @property
    def attempt_stem(self) -> str:
        """The start of its attempt ids (ids are key segments, so no `#` or `@`): `avatar`,
        `avatar-c3`, `avatar-s2`."""
        if self.scene is not None:
            return f"{self.step}-s{self.scene}"
        return self.step if self.chunk is None else f"{self.step}-c{self.chunk}"

    @classmethod
    def parse(cls, label: str) -> StepAddress:
        if "@" in label:
            step, _, scene = label.partition("@")
            return cls.model_validate({"step": step, "scene": int(scene)})
        step, sep, chunk = label.partition("#")
        return cls.model_validate({"step": step, "chunk": int(chunk) if sep else None})

    def __str__(self) -> str:
        return self.label


class MarkerRef(StrictModel, frozen=True):
    """What a marker key names: the job, the attempt and the kind of marker."""

    job_id: str
    attempt_id: str
    kind: MarkerKind


def marker_key(job_id: str, attempt_id: str, kind: MarkerKind) -> str:
    return f"{MARKERS_PREFIX}{job_id}/{attempt_id}/{kind}.json"


def parse_marker_key(key: str) -> MarkerRef | None:
    """The marker a work-bucket key names; None for any other key (the Lambda ignores those)."""
    match = _MARKER_KEY.match(key)
    if not match or match["kind"] not in MARKER_KINDS:
        return None
    return MarkerRef(job_id=match["job"], attempt_id=match["attempt"], kind=match["kind"])


def work_key(job_id: str, attempt_id: str, filename: str) -> str:
    return f"{WORK_PREFIX}{job_id}/{attempt_id}/{filename}"


def segment_key(job_id: str, filename: str) -> str:
    return f"{WORK_PREFIX}{job_id}/segments/{filename}"


def held_key(job_id: str, role: str, source_key: str) -> str:
    """Where a held output waits: `held/<job>/<role>` plus the source's extension."""
    name = source_key.rsplit("/", 1)[-1]
    extension = name[name.rfind(".") :] if "." in name else ""
    return f"{HELD_PREFIX}{job_id}/{role}{extension}"


def held_role(key: str) -> str:
    """The output role a held object was held for (`held_key`'s inverse): `held/j/captions_srt.srt`
    → `captions_srt`. Kinds repeat within a job (two caption files, a still per scene); roles don't."""
    name = key.rsplit("/", 1)[-1]
    return name[: name.rfind(".")] if "." in name else name


def cancel_flag_key(job_id: str) -> str:
    """Written by the API's cancel; every worker of the job polls it (WorkerTask.cancel_url)."""
    return f"{CONTROL_PREFIX}{job_id}/cancel.json"


# ---------------------------------------------------------------------------------------------
# The task document and the markers
# ---------------------------------------------------------------------------------------------


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


class ChunkPlan(StrictModel):
    """One chunk of a parallel long avatar, as the segment step cut it (talkstack.media.segments.Chunk)."""

    index: NonNegativeInt
    start_s: NonNegativeFloat
    """Where this chunk's share of the output begins (a cut, or 0)."""
    end_s: NonNegativeFloat
    render_start_s: NonNegativeFloat
    """Audio the chunk is rendered from: its share plus half the overlap on each inner side."""
    render_end_s: NonNegativeFloat
    at_pause: bool
    """False when no pause was found in the window and the cut fell in the quietest spot instead."""


class StitchOptions(StrictModel):
    """The stitch step's options: the chunks to join, in order, with their cut points."""

    chunks: list[ChunkPlan] = Field(min_length=1)


class WorkerTaskBase(StrictModel):
    """What every task document carries; the subclasses add the step's typed options."""

    protocol: Literal["talkstack.worker/1"] = PROTOCOL
    job_id: str
    step: WorkerStep
    attempt_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    attempt: PositiveInt
    model: str
    text: str | None = None
    """Text to speak (voice steps), or a video step's prompt."""
    inputs: dict[str, InputUrl] = Field(default_factory=dict)
    """By role: image, audio, second_audio, reference_voice; for stitch chunk_<k>, audio and image
    (the photo: the chunks' colour reference)."""
    outputs: dict[str, OutputUrl]
    """By role: video + thumbnail (avatar, video, stitch), audio (voice)."""
    markers: Markers
    heartbeat_interval_s: Annotated[float, Field(gt=0)]
    deadline: UtcDatetime
    """The URLs expire around here; work past it cannot be delivered."""
    watermark: bool = True
    """Whether the engine watermarks what it writes (docs/safety.md; the worker's TALKSTACK_WATERMARK
    can still turn it off). False for a render a later step remakes, which marks it once: a chunk of
    a long avatar (the stitch step marks the joined frames and the sound) and a text-driven avatar's
    speech (the avatar step marks the sound track it muxes)."""
    cancel_url: str | None = None
    """Pre-signed GET of the job's cancel flag. While it answers 404 the job stands; once it answers
    200 the job was cancelled: stop, upload nothing, write no marker. Polled with each heartbeat."""


class VoiceTask(WorkerTaskBase):
    step: Literal["voice"] = "voice"
    options: VoiceOptions = Field(default_factory=VoiceOptions)
    """The voice request's options, or the voice options of a text-driven avatar."""


class AvatarTask(WorkerTaskBase):
    step: Literal["avatar"] = "avatar"
    options: AvatarOptions = Field(default_factory=AvatarOptions)
    """The avatar request's options (a chunk's: with no max_duration_s, the slice is cut already)."""


class VideoTask(WorkerTaskBase):
    step: Literal["video"] = "video"
    options: VideoOptions = Field(default_factory=VideoOptions)


class StitchTask(WorkerTaskBase):
    step: Literal["stitch"] = "stitch"
    options: StitchOptions


class MatteTask(WorkerTaskBase):
    """Cut the person out of a composition scene's video: input `video` (the scene's render or
    upload; an image for a still), and `image` (the avatar's photo) when the scene is a lite avatar;
    output `mask`, a grey video of the same size, frames and length (white = person)."""

    step: Literal["matte"] = "matte"
    options: MatteOptions


class ComposeTask(WorkerTaskBase):
    """Assemble a composition: inputs by talkstack.contract.composition.scene_role, outputs
    COMPOSE_OUTPUTS plus one scene thumbnail per scene."""

    step: Literal["compose"] = "compose"
    options: ComposeOptions


WorkerTask = Annotated[
    VoiceTask | AvatarTask | VideoTask | StitchTask | MatteTask | ComposeTask, Field(discriminator="step")
]
"""The task document: one model per step kind, told apart by `step` (the JSON shape is the same
for every kind: the common fields plus that step's `options`)."""
WORKER_TASK_ADAPTER: TypeAdapter[WorkerTask] = TypeAdapter(WorkerTask)
TASK_TYPES: dict[WorkerStep, type[WorkerTaskBase]] = {
    "voice": VoiceTask,
    "avatar": AvatarTask,
    "video": VideoTask,
    "stitch": StitchTask,
    "matte": MatteTask,
    "compose": ComposeTask,
}


OptionsT = TypeVar("OptionsT", bound=StrictModel)


def task_options(task: WorkerTaskBase, kind: type[OptionsT]) -> OptionsT:
    """The task's options as the engine expects them; a task of another kind is a routing mistake
    (the model and the step disagree), reported as such rather than as a confusing missing field."""
    options = getattr(task, "options", None)
    if not isinstance(options, kind):
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST,
            f"{task.model} takes {kind.__name__}; this {task.step} task carries {type(options).__name__}",
        )
    return options


NOWHERE = "http://render.invalid/"
"""The URL of every transfer in an offline task (`.invalid` never resolves, RFC 6761)."""


def offline_task(
    step: WorkerStep,
    model: str,
    options: Mapping[str, Any],
    inputs: Mapping[str, str] | None = None,
    *,
    text: str | None = None,
    job_id: str = "offline",
    outputs: Sequence[str] | None = None,
) -> WorkerTask:
    """A task document whose URLs point nowhere, parsed like any other: for calling an engine's
    `render` on local files outside the worker protocol (the Modal smoke jobs, the GPU smoke kit).
    `render` reads its inputs from the paths it is given and transfers nothing (only the runner
    does), so the engine sees exactly what a job would give it. `inputs`: role → file name;
    `outputs`: the output roles (default video + thumbnail, audio for voice). The step's own options
    get `model` unless they have no such field (stitch, compose)."""
    url = {"url": NOWHERE, "key": job_id, "content_type": "application/octet-stream"}
    if outputs is None:
        outputs = ("video", "thumbnail") if step != "voice" else ("audio",)
    with_model = step not in ("stitch", "compose")
    return parse_worker_task(
        {
            "job_id": job_id,
            "step": step,
            "attempt_id": job_id,
            "attempt": 1,
            "model": model,
            "text": text,
            "options": {"model": model, **options} if with_model else dict(options),
            "inputs": {role: {"url": NOWHERE, "filename": name} for role, name in (inputs or {}).items()},
            "outputs": dict.fromkeys(outputs, url),
            "markers": {"progress": url, "result": url, "error": url},
            "heartbeat_interval_s": 60.0,
            "deadline": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        }
    )


def parse_worker_task(payload: WorkerTaskBase | Mapping[str, Any] | str | bytes) -> WorkerTask:
    """A task as it arrives: the model, its JSON dict (a Modal call's argument) or its JSON text."""
    if isinstance(payload, WorkerTaskBase):
        return payload  # type: ignore[return-value]
    if isinstance(payload, str | bytes):
        return WORKER_TASK_ADAPTER.validate_json(payload)
    return WORKER_TASK_ADAPTER.validate_python(payload)


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
    quality: QualityReport | None = None
    """The avatar quality report of what was rendered (talkstack.contract.quality); None for steps
    that make no avatar video, and from workers that predate it. A failing report on a parallel
    chunk makes the pipeline render that chunk once more (docs/pipeline.md)."""
    scan: OutputScan | None = None
    """The output scan of what this step produced (talkstack/safety/scan.py), made before this
    marker was written; finalize holds a flagged output instead of publishing it. None from steps
    whose output is not the job's (voice for an avatar, parallel chunks) and older workers."""
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


Marker = ProgressMarker | ResultMarker | ErrorMarker
MARKER_ADAPTER: TypeAdapter[Marker] = TypeAdapter(Marker)
MARKER_MODELS: dict[MarkerKind, type[Marker]] = {
    "progress": ProgressMarker,
    "result": ResultMarker,
    "error": ErrorMarker,
}
