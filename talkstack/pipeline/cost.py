"""A job's estimated cost: GPU time at the provider's list price, plus the AWS orchestration around it.

List prices (us-east-1, checked 2026-11): Step Functions Standard $0.025 per 1,000 state
transitions (a retry enters its state again: another transition); Lambda on arm64 (what the CDK
stack deploys) $0.20 per 1M requests and $0.0000133334 per GB-second, at the memory each function is
deployed with; S3 requests are negligible at this scale.

Engine time is what workers report (`StepRecord.worker_s`: task taken → result marker, summed over
parallel chunks) at the per-second price of the GPU they report. `local` is your own machine (0).
Modal also bills container CPU and memory (about +25 % on an H100, docs/gpu-workers.md), cold starts,
failed attempts and the idle time before a container scales down; none of that is in here. An
estimate, not a bill.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from talkstack.contract.record import JobRecord, StepRecord
from talkstack.engines.registry import get_model
from talkstack.errors import TalkstackError

SFN_PER_TRANSITION = 0.025 / 1000
LAMBDA_PER_REQUEST = 0.20 / 1_000_000
LAMBDA_PER_GB_S = 0.0000133334
LAMBDA_SECONDS = 0.3  # assumed typical handler duration (local handlers take 35–60 ms; AWS adds cold starts)
LAMBDA_MEMORY_MB: dict[str, int] = {
    "validate": 512,
    "moderate": 512,
    "plan": 256,
    "segment": 2048,
    "dispatch": 512,
    "complete": 512,
    "finalize": 1024,
    "notify": 512,
}
"""Memory of each function a job invokes, as infra/cdk/talkstack_cdk/functions.py deploys it (a test
keeps the two equal). Lambda bills memory in GB: MB / 1024."""

WORKER_STEPS = ("voice", "avatar", "video", "stitch", "matte", "compose")
"""Steps the state machine runs as a dispatch Task that waits for a worker (one entry per attempt)."""
BASE_TRANSITIONS = 8
"""States every completed job enters: Validate, Moderate, Plan, HasVoiceStep, MainStep, Finalize,
NotifyCompleted, Completed (aws/stepfunctions/job.asl.json). The text-safety classifier's GPU
seconds on a Modal stack are not counted (the Moderate step does not record them)."""
PARALLEL_TRANSITIONS = 3
"""A parallel long avatar also enters Segment, HasChunks and the AvatarChunks Map."""
SCENE_TRANSITIONS = 4
"""A composition enters the Scenes Map once and, per scene, its three Choice states
(SceneHasVoice, SceneMain, SceneHasMatte) and an end (SceneDone, or its last Task's End)."""

MODAL_GPU_USD_PER_S: dict[str, float] = {
    "B200": 0.001736,
    "H200": 0.001261,
    "H100": 0.001097,
    "A100-80GB": 0.000694,
    "A100-40GB": 0.000583,
    "L40S": 0.000542,
    "A10G": 0.000306,
    "L4": 0.000222,
    "T4": 0.000164,
}
"""Modal's base-region per-second GPU prices (see docs/gpu-workers.md for the source and date).
bench/gpu/wan_step.py keeps its own copy: it runs as a single file on a bare GPU machine."""

# What the driver calls a GPU ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", "NVIDIA A10G") → a
# price key. Order matters: A100 before A10, L40S before L4.
_GPU_NAMES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bB200\b"), "B200"),
    (re.compile(r"\bH200\b"), "H200"),
    (re.compile(r"\bH100\b"), "H100"),
    (re.compile(r"\bA100\b.*\b80\s?GB\b"), "A100-80GB"),
    (re.compile(r"\bA100\b"), "A100-40GB"),
    (re.compile(r"\bL40S\b"), "L40S"),
    (re.compile(r"\bA10G?\b"), "A10G"),
    (re.compile(r"\bL4\b"), "L4"),
    (re.compile(r"\bT4\b"), "T4"),
]


def gpu_price_key(accelerator: str | None) -> str | None:
    """The MODAL_GPU_USD_PER_S key for a GPU name as the driver or Modal spells it; None if unknown."""
    if not accelerator:
        return None
    name = accelerator.upper().replace("_", "-")
    return next((key for pattern, key in _GPU_NAMES if pattern.search(name)), None)


def engine_cost(step: StepRecord) -> float:
    """What the provider charges for the GPU time of one step (0 on your own machine or on CPU)."""
    if step.backend != "modal":
        return 0.0
    key = gpu_price_key(step.accelerator)
    return step.worker_s * MODAL_GPU_USD_PER_S[key] if key else 0.0


def dispatches(step: StepRecord) -> int:
    """Times a worker step's Task state was entered: every attempt, retries included. A parallel
    avatar's step counts chunk 0's attempts only, but every chunk attempt that delivered has its
    worker time recorded, so the larger of the two."""
    return max(1, step.attempts, len(step.worker_seconds))


def orchestration(record: JobRecord) -> tuple[int, dict[str, int]]:
    """(state transitions, invocations by function) of a completed job, by the path it took."""
    worker_steps = [step for step in record.steps if step.name in WORKER_STEPS]
    entries = sum(dispatches(step) for step in worker_steps)
    parallel = any(step.name == "stitch" for step in worker_steps)
    transitions = BASE_TRANSITIONS + entries + (PARALLEL_TRANSITIONS if parallel else 0)
    scenes = getattr(record.request, "scenes", None)
    if scenes:
        transitions += 1 + SCENE_TRANSITIONS * len(scenes)
    invocations = {
        "validate": 1,
        "moderate": 1,
        "plan": 1,
        "segment": int(parallel),
        "dispatch": entries,
        "complete": 2 * entries,  # at least a progress and a result marker per attempt
        "finalize": 1,
        "notify": 3,  # queued, started, completed
    }
    return transitions, invocations


def orchestration_cost(transitions: int, invocations: Mapping[str, int]) -> float:
    """Step Functions transitions plus each function's requests and GB-seconds."""
    lambdas = sum(
        count * (LAMBDA_PER_REQUEST + LAMBDA_MEMORY_MB[name] / 1024 * LAMBDA_SECONDS * LAMBDA_PER_GB_S)
        for name, count in invocations.items()
    )
    return transitions * SFN_PER_TRANSITION + lambdas


def is_preview(record: JobRecord) -> bool:
    """A composition rendered as a preview: lite engines only, and never charged as GPU time."""
    return bool(getattr(record.request, "preview", False))


def estimate_cost(record: JobRecord) -> float:
    engine = 0.0 if is_preview(record) else sum(engine_cost(step) for step in record.steps)
    return round(engine + orchestration_cost(*orchestration(record)), 6)


def is_gpu_model(model_id: str) -> bool:
    """Whether `model_id` runs on a GPU (an unknown id, stitch or compose: no)."""
    try:
        return get_model(model_id).gpu
    except TalkstackError:
        return False


def gpu_seconds(record: JobRecord) -> float:
    """Seconds workers spent on the job's GPU model steps (what a GPU bill is made of). Records
    written before workers reported their time fall back to the step's wall time. A preview is
    charged none (it runs the lite engines; usage must not bill it whatever ran)."""
    if is_preview(record):
        return 0.0
    on_gpu = [step for step in record.steps if step.model and is_gpu_model(step.model)]
    return round(sum(step.worker_s or step.duration_s or 0.0 for step in on_gpu), 3)
