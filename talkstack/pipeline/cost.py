"""A job's estimated cost: engine time at its backend's rate, plus the AWS orchestration around it.

List prices (us-east-1, checked 2026-11): Step Functions Standard $0.025 per 1,000 state
transitions; Lambda $0.20 per 1M requests and $0.0000166667 per GB-second; S3 requests are
negligible at this scale. Engine rates per backend are per second of step wall time; `local` is
your own CPU (0). GPU rates arrive with the Modal backend (issue 4). An estimate, not a bill.
"""

from __future__ import annotations

from talkstack.contract.record import JobRecord
from talkstack.engines.registry import get_model
from talkstack.errors import TalkstackError

SFN_PER_TRANSITION = 0.025 / 1000
LAMBDA_PER_REQUEST = 0.20 / 1_000_000
LAMBDA_PER_GB_S = 0.0000166667
LAMBDA_GB = 0.5
LAMBDA_SECONDS = 0.3  # assumed typical handler duration (local handlers take 35–60 ms; AWS adds cold starts)
BACKEND_USD_PER_S: dict[str, float] = {"local": 0.0, "lite": 0.0}


def orchestration_cost(transitions: int, invocations: int) -> float:
    per_invocation = LAMBDA_PER_REQUEST + LAMBDA_GB * LAMBDA_SECONDS * LAMBDA_PER_GB_S
    return transitions * SFN_PER_TRANSITION + invocations * per_invocation


def estimate_cost(record: JobRecord) -> float:
    engine = sum(
        (step.duration_s or 0.0) * BACKEND_USD_PER_S.get(step.backend or "", 0.0) for step in record.steps
    )
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
    """Seconds the job's steps spent on GPU models (what a GPU bill is made of)."""
    on_gpu = [step for step in record.steps if step.model and _is_gpu(step.model)]
    return round(sum(step.duration_s or 0.0 for step in on_gpu), 3)
