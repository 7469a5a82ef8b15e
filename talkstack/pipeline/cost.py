"""A job's estimated cost: GPU time at the provider's list price, plus the AWS orchestration around it.

List prices (us-east-1, checked 2026-11): Step Functions Standard $0.025 per 1,000 state
transitions; Lambda on arm64 (what the CDK stack deploys) $0.20 per 1M requests and $0.0000133334
per GB-second; S3 requests are negligible at this scale.

Engine time is what workers report (`StepRecord.worker_s`: task taken → result marker, summed over
parallel chunks) at the per-second price of the GPU they report. `local` is your own machine (0).
Modal also bills container CPU and memory (about +25 % on an H100, docs/gpu-workers.md), cold starts,
failed attempts and the idle time before a container scales down; none of that is in here. An
estimate, not a bill.
"""

from __future__ import annotations

import re

from talkstack.contract.record import JobRecord, StepRecord
from talkstack.engines.registry import get_model
from talkstack.errors import TalkstackError

SFN_PER_TRANSITION = 0.025 / 1000
LAMBDA_PER_REQUEST = 0.20 / 1_000_000
LAMBDA_PER_GB_S = 0.0000133334
LAMBDA_GB = 0.5
LAMBDA_SECONDS = 0.3  # assumed typical handler duration (local handlers take 35–60 ms; AWS adds cold starts)

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


def orchestration_cost(transitions: int, invocations: int) -> float:
    per_invocation = LAMBDA_PER_REQUEST + LAMBDA_GB * LAMBDA_SECONDS * LAMBDA_PER_GB_S
    return transitions * SFN_PER_TRANSITION + invocations * per_invocation


def estimate_cost(record: JobRecord) -> float:
    engine = sum(engine_cost(step) for step in record.steps)
    worker_steps = [step for step in record.steps if step.name in ("voice", "avatar", "video")]
    attempts = sum(max(1, step.attempts) for step in worker_steps)
    # validate, plan, finalize, notify + per attempt: dispatch, ≥2 complete (progress, result)
    invocations = 4 + 3 * attempts + 2  # + queued/started events
    transitions = 7 + 2 * len(worker_steps)
    return round(engine + orchestration_cost(transitions, invocations), 6)


def _is_gpu(model_id: str) -> bool:
    try:
        return get_model(model_id).gpu
    except TalkstackError:
        return False


def gpu_seconds(record: JobRecord) -> float:
    """Seconds workers spent on the job's GPU model steps (what a GPU bill is made of). Records
    written before workers reported their time fall back to the step's wall time."""
    on_gpu = [step for step in record.steps if step.model and _is_gpu(step.model)]
    return round(sum(step.worker_s or step.duration_s or 0.0 for step in on_gpu), 3)
