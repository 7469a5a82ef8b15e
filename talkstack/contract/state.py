"""The data that crosses the state machine, typed: what each state's Lambda receives, what the Plan
and Segment states compute, and what a step leaves in the jobs table for the steps after it.

The ASL file (aws/stepfunctions/job.asl.json) decides the payload shapes; these models say them
once, so a handler parses its event on the way in and fails at once, naming the field, instead of
failing later on a missing key. Step results are stored and read back as these models (the jobs
table's `STEP#<label>` items), never as dicts indexed by string.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, NonNegativeInt, PositiveInt

from talkstack.contract.events import JobEvent
from talkstack.contract.fields import MAX_REQUEST_BYTES, EventType, StrictModel, TaskKind
from talkstack.contract.record import JobSource
from talkstack.contract.worker import ChunkPlan, StepAddress, WorkerStep
from talkstack.errors import ErrorCode, TalkstackError

# ---------------------------------------------------------------------------------------------
# The execution input
# ---------------------------------------------------------------------------------------------

ENVELOPE_KEYS = frozenset({"request", "source"})


def execution_input(request: Any, source: JobSource) -> dict[str, Any]:
    """What ingest and the API start an execution with: the request and where it came from. A direct
    StartExecution from another AWS service may pass the bare request instead."""
    return {"request": request, "source": source.model_dump(mode="json", exclude_none=True)}


ENVELOPE_BYTES = 1024
"""Room left in an execution's input for the envelope around the request (its `source`)."""


def execution_request(request: StrictModel) -> dict[str, Any]:
    """The request as an execution carries it (every default filled in, so the Validate step reads
    what was checked), or INVALID_REQUEST when that is more than Step Functions takes: its input is
    at most 256 KiB of UTF-8. A body under the API's limit can grow past it once its defaults are
    written out (a composition's scenes and overlays each gain a few dozen bytes) or its upload ids
    become `s3://` URLs; StartExecution would then refuse it after the job was admitted."""
    text = request.model_dump_json(exclude_none=True)
    size = len(text.encode())
    if size > MAX_REQUEST_BYTES - ENVELOPE_BYTES:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST,
            f"request: {size / 1024:.0f} KiB once its defaults are filled in; a job carries at most "
            f"{(MAX_REQUEST_BYTES - ENVELOPE_BYTES) // 1024} KiB (the Step Functions input limit): "
            "shorten its texts, or use fewer scenes or overlays",
            bytes=size,
            max_bytes=MAX_REQUEST_BYTES - ENVELOPE_BYTES,
        )
    return json.loads(text)


def execution_json(payload: Mapping[str, Any]) -> str:
    """An execution's input as sent: compact UTF-8 JSON (Step Functions counts UTF-8 bytes, so
    non-ASCII text is not escaped into six bytes a character)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def split_execution_input(raw: Any, execution_arn: str | None = None) -> tuple[Any, JobSource]:
    """The request and where it came from, from either shape of execution input."""
    if isinstance(raw, Mapping) and "request" in raw and set(raw) <= ENVELOPE_KEYS:
        source = JobSource.model_validate(raw.get("source") or {"kind": "execution"})
        return raw["request"], source.model_copy(update={"execution_arn": execution_arn})
    return raw, JobSource(kind="execution", execution_arn=execution_arn)


# ---------------------------------------------------------------------------------------------
# Computed by the Plan and Segment states
# ---------------------------------------------------------------------------------------------


class StepLimits(StrictModel):
    """Read by the engine states through HeartbeatSecondsPath / TimeoutSecondsPath."""

    heartbeat_s: PositiveInt
    timeout_s: PositiveInt


class ScenePlan(StrictModel):
    """One scene of a composition as the `Scenes` Map runs it: which of its engine steps run, in the
    order voice → avatar | video → matte (each flag read by a Choice state of the Map's items)."""

    index: NonNegativeInt
    voice: bool = False
    """A voice step speaks the scene's text first (a text-driven avatar scene)."""
    main: Literal["avatar", "video", "none"] = "none"
    """The scene's engine step: none for uploads and title cards (and generated clips in a preview)."""
    matte: bool = False
    """A matte step cuts the scene's person out (Scene.cutout)."""


class Plan(StrictModel):
    """Which engine steps a job runs and their time limits: computed once by the Plan state, kept in
    the execution state (`$.plan`) for the Choice states and in the jobs table for dispatch."""

    steps: list[WorkerStep]
    voice: bool
    """A voice step runs first (text-driven avatars and voice jobs; a composition's scenes have
    their own, in `scenes`)."""
    main: Literal["avatar", "video", "composition", "none"]
    segment: bool
    """The avatar asked for `long_audio: "parallel"`: the Segment state may cut it into chunks."""
    timeouts: dict[WorkerStep, StepLimits]
    max_concurrency: PositiveInt = 1
    """GPU tasks the job runs at once: the chunk Map's MaxConcurrencyPath (never 0, which would
    mean no limit). The job's admitted share of its key's tier, or the setting for S3 drops."""
    scenes: list[ScenePlan] = Field(default_factory=list)
    """A composition's scenes, the `Scenes` Map's items (empty for every other job)."""

    def limits(self, step: WorkerStep) -> StepLimits:
        return self.timeouts[step]


class SegmentPlan(StrictModel):
    """The Segment state's cut of a parallel long avatar's speech (one chunk = no cut)."""

    chunks: list[ChunkPlan] = Field(min_length=1)
    audio_keys: list[str]
    """Work-bucket keys of each chunk's speech slice (empty when there is one chunk)."""
    source: tuple[str, str]
    """(bucket, key) of the speech that was cut: the voice step's output or the request's audio."""

    @property
    def parallel(self) -> bool:
        return len(self.chunks) > 1


class SegmentOutput(StrictModel):
    """What the Segment state hands the Map state (payloads stay small: the details are in the table)."""

    count: PositiveInt
    chunks: list[dict[Literal["index"], NonNegativeInt]]

    @classmethod
    def of(cls, plan: SegmentPlan) -> SegmentOutput:
        return cls(count=len(plan.chunks), chunks=[{"index": c.index} for c in plan.chunks])


# ---------------------------------------------------------------------------------------------
# Handler inputs, as the ASL's Parameters build them
# ---------------------------------------------------------------------------------------------


class StateInput(StrictModel):
    # Exactly what the ASL sends: an unexpected field means the definition and the code disagree.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValidateInput(StateInput):
    """State `Validate`: the execution input (any entry point's request) and the execution's ids."""

    input: Any
    """Any JSON: the request (or ingest's envelope); what is not a request is validate's to refuse,
    with a job error, like any bad input."""
    execution_name: str
    execution_arn: str | None = None


class ValidateOutput(StrictModel):
    job_id: str
    task: TaskKind


class JobInput(StateInput):
    """States `Plan`, `Segment`, `Finalize`: the job to work on."""

    job_id: str


class DispatchInput(StateInput):
    """States `Voice`, `Avatar`, `AvatarChunk`, `Stitch`, `Video`, the `Scenes` Map's `SceneVoice`,
    `SceneAvatar`, `SceneVideo`, `SceneMatte`, and `Compose` (`.waitForTaskToken`)."""

    task_token: str = Field(min_length=1)
    job_id: str
    step: WorkerStep
    retry_count: NonNegativeInt = 0
    chunk: NonNegativeInt | None = None
    scene: NonNegativeInt | None = None

    @property
    def address(self) -> StepAddress:
        return StepAddress(step=self.step, chunk=self.chunk, scene=self.scene)


class DispatchOutput(StrictModel):
    attempt_id: str


class FailureInput(StateInput):
    """State `RecordFailure` (every Catch): the caught error and the whole state at that point."""

    job_id: str
    execution_arn: str | None = None
    error: dict[str, Any] | None = None
    """Step Functions' `{"Error": …, "Cause": …}`."""
    input: dict[str, Any] | None = None


class NotifyRequest(StateInput):
    """The notify Lambda's one payload: the state machine names the job and the event type and notify
    builds the event from the record; a handler that raised the event at its moment (queued,
    started, progress) sends that event too, so it carries the job's state as it was then."""

    job_id: str
    type: EventType
    event: JobEvent | None = None

    @classmethod
    def of(cls, event: JobEvent) -> NotifyRequest:
        return cls(job_id=event.job_id, type=event.type, event=event)
