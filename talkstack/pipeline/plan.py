"""Plan step: which engine steps a job runs, their time limits, and how their progress adds up.

Time limits come from here (the state machine reads them through HeartbeatSecondsPath and
TimeoutSecondsPath), so a ten-minute avatar gets more time than a five-second one, and local tests
can use short heartbeats without a different state machine.
"""

from __future__ import annotations

from typing import Any

from talkstack.contract.record import JobRecord
from talkstack.contract.request import AvatarRequest, JobRequestBase, VideoRequest
from talkstack.pipeline.config import PipelineConfig
from talkstack.settings import get_limits

# Seconds of work per second of output, with margin (lite engines measured in docs/lite-engines.md).
REALTIME_FACTOR: dict[str, float] = {"lite-avatar": 1.0, "lite-voice": 0.2}
DEFAULT_REALTIME_FACTOR = 60.0  # GPU models: issue 4 measures and replaces this
SPEECH_CHARS_PER_SECOND = 12.0
FINALIZE_SHARE = 0.05


def output_seconds_bound(request: JobRequestBase) -> float:
    """An upper bound on the seconds of media the main step produces (no download needed)."""
    limits = get_limits()
    if isinstance(request, VideoRequest):
        return request.options.duration_s
    if isinstance(request, AvatarRequest) and request.options.max_duration_s is not None:
        return request.options.max_duration_s
    text = getattr(request.inputs, "text", None)
    if text is not None:
        return min(limits.max_audio_seconds, len(text) / SPEECH_CHARS_PER_SECOND + 5)
    return limits.max_audio_seconds


def step_model(request: JobRequestBase, step: str) -> str:
    if step == "voice" and isinstance(request, AvatarRequest):
        return request.voice_step_options().model
    return request.primary_model


def plan_for(request: JobRequestBase, config: PipelineConfig) -> dict[str, Any]:
    seconds = output_seconds_bound(request)
    timeouts = {}
    for step in ("voice", "avatar", "video"):
        model = step_model(request, step) if step in request.worker_steps else ""
        factor = REALTIME_FACTOR.get(model, DEFAULT_REALTIME_FACTOR)
        timeout = max(config.min_step_timeout_seconds, int(60 + factor * seconds))
        timeouts[step] = {
            "heartbeat_s": config.heartbeat_seconds,
            "timeout_s": max(timeout, config.heartbeat_seconds + 1),
        }
    main = request.task if request.task in ("avatar", "video") else "none"
    return {
        "steps": list(request.worker_steps),
        "voice": request.needs_voice_step,
        "main": main,
        "timeouts": timeouts,
    }


def progress_span(steps: list[str] | tuple[str, ...], step: str) -> tuple[float, float]:
    """The slice of overall progress that `step` covers (a voice step is short next to an avatar)."""
    weights = {"voice": 1.0 if len(steps) == 1 else 0.15}
    total = sum(weights.get(s, 1.0) for s in steps)
    start = 0.0
    for name in steps:
        share = (1.0 - FINALIZE_SHARE) * weights.get(name, 1.0) / total
        if name == step:
            return start, start + share
        start += share
    raise ValueError(f"{step!r} is not one of the job's steps {list(steps)}")


def plan_job(job_id: str, config: PipelineConfig, store: Any) -> dict[str, Any]:
    record: JobRecord | None = store.get(job_id)
    if record is None or record.request is None:
        raise KeyError(f"job {job_id} has no record")
    return plan_for(record.request, config)
