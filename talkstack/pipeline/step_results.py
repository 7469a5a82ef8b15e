"""What the steps leave for each other in the jobs table (`STEP#<name>` items), read back as models.

    STEP#plan         Plan           the Plan state's steps and time limits (dispatch reads the limits)
    STEP#segment      SegmentPlan    a parallel long avatar's cut (dispatch, stitch)
    STEP#<address>    ResultMarker   a worker step's result: `voice`, `avatar`, `avatar#3`, `video`, …
                      (written only by the step's current attempt: store.put_attempt_result)
    STEP#rejected:<address>  ResultMarker  a chunk's render turned down for its quality report (it was
                      rendered again; complete.py), kept for the job's warning and the bill

A step that finds what it needs missing raises: the state machine ran out of order, which is a bug,
not bad input.
"""

from __future__ import annotations

from typing import Any

from talkstack.contract.request import AvatarRequest
from talkstack.contract.state import Plan, SegmentPlan
from talkstack.contract.worker import ResultMarker, StepAddress
from talkstack.pipeline.config import PipelineConfig

PLAN_RESULT = "plan"
SEGMENT_RESULT = "segment"


def rejected_name(address: StepAddress) -> str:
    """Where a chunk's render turned down for quality is kept (`rejected:avatar#3`)."""
    return f"rejected:{address.label}"


def rejected_result(store: Any, job_id: str, address: StepAddress) -> ResultMarker | None:
    """The render of this chunk that was turned down for quality (None: none was)."""
    return store.get_step_result(job_id, rejected_name(address), ResultMarker)


def stored_plan(store: Any, job_id: str) -> Plan | None:
    """The plan the Plan state computed for this job (None for an execution planned by a version
    that did not store it)."""
    return store.get_step_result(job_id, PLAN_RESULT, Plan)


def step_result(store: Any, job_id: str, address: StepAddress) -> ResultMarker:
    """The result a finished worker step left (its temporary output keys, metrics)."""
    result = store.get_step_result(job_id, address, ResultMarker)
    if result is None:
        raise RuntimeError(f"job {job_id}: the {address} step left no result")
    return result


def segment_plan(store: Any, job_id: str) -> SegmentPlan:
    segments = store.get_step_result(job_id, SEGMENT_RESULT, SegmentPlan)
    if segments is None:
        raise RuntimeError(f"job {job_id}: the segment step left no result")
    return segments


def source_audio(
    request: AvatarRequest, job_id: str, config: PipelineConfig, store: Any, scene: int | None = None
) -> tuple[str, str]:
    """(bucket, key) of the speech driving an avatar: the voice step's output (scene `scene`'s, in
    a composition), or inputs.audio."""
    if request.needs_voice_step:
        voice = step_result(store, job_id, StepAddress(step="voice", scene=scene))
        return config.work_bucket, voice.outputs["audio"].key
    ref = request.inputs.audio
    assert ref is not None and ref.bucket is not None  # resolved by the validate step
    return ref.bucket, ref.key
