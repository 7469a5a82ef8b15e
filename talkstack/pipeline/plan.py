"""Plan step: which engine steps a job runs, their time limits, and how their progress adds up.

Time limits come from here (the state machine reads them through HeartbeatSecondsPath and
TimeoutSecondsPath), so a ten-minute avatar gets more time than a five-second one, and local tests
can use short heartbeats without a different state machine. The plan is computed once: the state
machine carries it in `$.plan`, and the jobs table keeps it (`STEP#plan`) for dispatch.
"""

from __future__ import annotations

from typing import Any

from talkstack.contract.composition import (
    DEFAULT_STILL_SECONDS,
    CompositionRequest,
    MediaSource,
    TitleSource,
)
from talkstack.contract.fields import MATTE_MODELS
from talkstack.contract.record import JobRecord, JobSource
from talkstack.contract.request import AvatarRequest, JobRequestBase, VideoRequest
from talkstack.contract.state import Plan, ScenePlan, StepLimits
from talkstack.contract.worker import WORKER_STEPS, StepAddress, WorkerStep
from talkstack.engines.registry import COMPOSE_MODEL, STITCH_MODEL, get_model
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.step_results import PLAN_RESULT
from talkstack.settings import get_limits, get_modal_deploy

# Seconds of work per second of output, with margin (lite engines measured in docs/lite-engines.md).
REALTIME_FACTOR: dict[str, float] = {
    "lite-avatar": 1.0,
    "lite-voice": 0.2,
    # Estimates until bench/gpu measures them (docs/gpu-workers.md): MultiTalk's README gives ~35 s a
    # step on an A100, 40 steps × ~1.3 windows a second of 25 fps video; generous on purpose, since
    # heartbeats, not this limit, catch a dead worker.
    "multitalk": 400.0,
    "infinitetalk": 400.0,
    "chatterbox": 5.0,
    "indextts2": 5.0,
    STITCH_MODEL: 1.0,  # decode the chunks, encode one video, on a CPU
    # Compose decodes every scene, draws layouts, overlays and captions per frame and encodes the
    # video (and, when asked, two alpha files): a few times real time on a CPU.
    COMPOSE_MODEL: 4.0,
    "lite-matte": 2.0,  # a person mask per frame on a CPU (talkstack/engines/lite/matte.py)
}
DEFAULT_REALTIME_FACTOR = 60.0  # GPU models: ~23 min per 3.2 s window at 40 steps on an A100 (README)

GPU_AVATAR_STEPS = {"default": 40, "turbo": 4}
"""Sampling steps the GPU avatars run unless options.steps says (engines/gpu/avatar_prep.py): their
time scales with it, so the factors above (for 40 steps) are scaled by steps / 40."""

SPEECH_CHARS_PER_SECOND = 12.0
FINALIZE_SHARE = 0.05


def scene_seconds_bound(request: CompositionRequest, index: int) -> float:
    """An upper bound on the seconds scene `index` lasts: its duration_s, else its engine request's
    bound, else a still's default length (a video upload without duration_s: the longest input)."""
    scene = request.scenes[index]
    if scene.duration_s is not None:
        return scene.duration_s
    scene_request = request.scene_request(index)
    if scene_request is not None:
        return output_seconds_bound(scene_request)
    source = scene.source
    if isinstance(source, MediaSource) and source.media.key.lower().endswith(VIDEO_SUFFIXES):
        return get_limits().max_audio_seconds
    if isinstance(source, TitleSource | MediaSource):
        return DEFAULT_STILL_SECONDS
    return float(source.options.duration_s)  # a generated clip in a preview: a card as long as the clip


VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".m4v")


def output_seconds_bound(request: JobRequestBase) -> float:
    """An upper bound on the seconds of media the main step produces (no download needed)."""
    limits = get_limits()
    if isinstance(request, CompositionRequest):
        return sum(scene_seconds_bound(request, i) for i in range(len(request.scenes)))
    if isinstance(request, VideoRequest):
        return request.options.duration_s
    if isinstance(request, AvatarRequest) and request.options.max_duration_s is not None:
        return request.options.max_duration_s
    text = getattr(request.inputs, "text", None)
    if text is not None:
        return min(limits.max_audio_seconds, len(text) / SPEECH_CHARS_PER_SECOND + 5)
    return limits.max_audio_seconds


PREVIEW_MATTE_MODEL = "lite-matte"
"""What cuts people out in a preview, whatever the request or the deployment names: a preview runs
only lite engines (it holds none of the key's GPU tasks and is never charged GPU time)."""


def matte_model(request: CompositionRequest, config: PipelineConfig | None) -> str:
    """The model that cuts a composition's people out: the lite one in a preview, else the request's,
    else the deployment's."""
    if request.preview:
        return PREVIEW_MATTE_MODEL
    return request.options.matte_model or (config.matte_model if config else PREVIEW_MATTE_MODEL)


def step_model(
    request: JobRequestBase, step: WorkerStep, scene: int | None = None, config: PipelineConfig | None = None
) -> str:
    """The model a step runs: for a composition's scene step, its scene request's (or the matte
    model); for the composition itself, the compose pseudo-model."""
    if isinstance(request, CompositionRequest):
        if step == "compose":
            return COMPOSE_MODEL
        if step == "matte":
            return matte_model(request, config)
        if scene is None:
            raise ValueError(f"a composition's {step} step belongs to a scene")
        scene_request = request.scene_request(scene)
        if scene_request is None:
            raise ValueError(f"scene {scene} runs no {step} step")
        return step_model(scene_request, step)
    if step == "stitch":
        return STITCH_MODEL
    if step == "voice" and isinstance(request, AvatarRequest):
        return request.voice_step_options().model
    return request.primary_model


def worker_run_limit(model: str, config: PipelineConfig) -> int | None:
    """Seconds the worker of `model` may run one task before its backend stops it: its Modal class's
    timeout (the settings `modal deploy` gives the apps); None on the local pool, which stops a task
    only at the step's own timeout."""
    if not model or config.backend_for(model) != "modal":
        return None
    if model == STITCH_MODEL:
        family = "stitch"
    elif model == COMPOSE_MODEL:
        family = "compose"
    elif model in MATTE_MODELS:
        family = "matte"
    else:
        family = get_model(model).task
    return get_modal_deploy().timeout_s(family)  # type: ignore[arg-type]


def _step_seconds(request: JobRequestBase, step: WorkerStep, config: PipelineConfig) -> tuple[float, bool]:
    """(seconds of media the step renders at most, whether the request fixes that length itself)."""
    if step == "avatar" and isinstance(request, AvatarRequest) and request.options.long_audio == "parallel":
        return config.parallel_chunk_seconds + config.parallel_overlap_seconds, True  # one chunk
    declared = isinstance(request, VideoRequest) or (
        isinstance(request, AvatarRequest) and request.options.max_duration_s is not None
    )
    return output_seconds_bound(request), declared


def _work_factor(request: JobRequestBase, model: str) -> float:
    factor = REALTIME_FACTOR.get(model, DEFAULT_REALTIME_FACTOR)
    if model in ("multitalk", "infinitetalk") and isinstance(request, AvatarRequest):
        options = request.options
        steps = options.steps or GPU_AVATAR_STEPS["turbo" if options.turbo else "default"]
        factor *= steps / GPU_AVATAR_STEPS["default"]
    return factor


def _cannot_fit(request: JobRequestBase, model: str, seconds: float, work: int, limit: int) -> TalkstackError:
    if isinstance(request, VideoRequest):
        code, field, hint = ErrorCode.INVALID_REQUEST, "options.duration_s", "; ask for a shorter clip"
    else:
        code, field = ErrorCode.AUDIO_TOO_LONG, "options.max_duration_s"
        hint = '; use options.long_audio "parallel", options.turbo, or a shorter cut'
    return TalkstackError(
        code,
        f"{field}: {seconds:g} s of {model} takes about {work / 3600:.1f} h to render; its worker stops "
        f"after {limit / 3600:g} h{hint}",
        field=field,
        estimated_s=work,
        worker_limit_s=limit,
    )


def _composition_plan(request: CompositionRequest, config: PipelineConfig) -> Plan:
    """A composition's plan: each engine step's limits are the most any scene's step needs (the
    Map's items share one `timeouts`), matte and compose are planned for the whole video."""
    scenes: list[ScenePlan] = []
    timeouts: dict[WorkerStep, StepLimits] = {}
    for index in range(len(request.scenes)):
        steps = request.scene_steps(index)
        scene_request = request.scene_request(index)
        scene_main = "none"
        if scene_request is not None:
            limits = plan_for(scene_request, config).timeouts
            for step in scene_request.worker_steps:
                kind = StepAddress.parse(step).step
                if kind not in timeouts or limits[kind].timeout_s > timeouts[kind].timeout_s:
                    timeouts[kind] = limits[kind]
            scene_main = scene_request.task if scene_request.task in ("avatar", "video") else "none"
        scenes.append(ScenePlan(index=index, voice="voice" in steps, main=scene_main, matte="matte" in steps))
    seconds = output_seconds_bound(request)
    for step, model in (("matte", matte_model(request, config)), ("compose", COMPOSE_MODEL)):
        timeouts[step] = _limits(request, model, seconds, declared=False, config=config)
    for step in WORKER_STEPS:  # steps it never runs get the shortest limits (the ASL reads every one)
        timeouts.setdefault(step, _limits(request, "", 0.0, declared=False, config=config))
    return Plan(
        steps=list(request.worker_steps),
        voice=False,
        main="composition",
        segment=False,
        timeouts=timeouts,
        scenes=scenes,
    )


def _limits(
    request: JobRequestBase, model: str, seconds: float, *, declared: bool, config: PipelineConfig
) -> StepLimits:
    work = int(60 + _work_factor(request, model) * seconds)
    limit = worker_run_limit(model, config)
    if limit is not None and work > limit and declared:
        raise _cannot_fit(request, model, seconds, work, limit)
    timeout = max(config.min_step_timeout_seconds, work)
    if limit is not None:
        timeout = min(timeout, limit)
    on_modal = bool(model) and config.backend_for(model) == "modal"
    heartbeat = config.modal_heartbeat_seconds if on_modal else config.heartbeat_seconds
    return StepLimits(
        heartbeat_s=heartbeat,
        timeout_s=max(timeout + (heartbeat if on_modal else 0), heartbeat + 1),
    )


def plan_for(request: JobRequestBase, config: PipelineConfig) -> Plan:
    """The job's steps and limits. A step on Modal never gets more time than its Modal class may
    run (plus the heartbeat it may wait for a cold container), so neither do its pre-signed URLs;
    a length the request fixes itself that cannot render within that is refused here, not left to
    fail hours later."""
    if isinstance(request, CompositionRequest):
        return _composition_plan(request, config)
    timeouts = {}
    for step in WORKER_STEPS:
        model = step_model(request, step) if step in request.worker_steps else ""
        seconds, declared = _step_seconds(request, step, config)
        timeouts[step] = _limits(request, model, seconds, declared=declared, config=config)
    main = request.task if request.task in ("avatar", "video") else "none"
    parallel = isinstance(request, AvatarRequest) and request.options.long_audio == "parallel"
    return Plan(
        steps=list(request.worker_steps),
        voice=request.needs_voice_step,
        main=main,
        segment=parallel,
        timeouts=timeouts,
    )


def progress_span(steps: list[str] | tuple[str, ...], step: str) -> tuple[float, float]:
    """The slice of overall progress that `step` covers (a voice step is short next to an avatar)."""
    weights = {"voice": 1.0 if len(steps) == 1 else 0.15, "stitch": 0.05}
    total = sum(weights.get(s, 1.0) for s in steps)
    start = 0.0
    for name in steps:
        share = (1.0 - FINALIZE_SHARE) * weights.get(name, 1.0) / total
        if name == step:
            return start, start + share
        start += share
    raise ValueError(f"{step!r} is not one of the job's steps {list(steps)}")


SCENES_SHARE = 0.75
"""A composition's progress: its scenes' engine steps move it to here (by their mean), compose
from here to COMPOSE_END, finalize the rest."""
COMPOSE_END = 1.0 - FINALIZE_SHARE


def scene_step_span(request: CompositionRequest, scene: int, step: str) -> tuple[float, float]:
    """The slice of scene `scene`'s own progress (0..1) that its `step` covers: its steps weighed
    as a single job's are (a voice step is short next to an avatar), and a matte step like a voice."""
    steps = request.scene_steps(scene)
    weights = {"voice": 1.0 if len(steps) == 1 else 0.15, "matte": 0.2}
    total = sum(weights.get(s, 1.0) for s in steps)
    start = 0.0
    for name in steps:
        share = weights.get(name, 1.0) / total
        if name == step:
            return start, start + share
        start += share
    raise ValueError(f"{step!r} is not one of scene {scene}'s steps {list(steps)}")


def max_concurrency(source: JobSource | None, request: JobRequestBase, config: PipelineConfig) -> int:
    """GPU tasks a job runs at once: what admission gave an API job out of its key's tier (so a free
    key's parallel avatar renders one chunk at a time), else the operator's setting — and never more
    than the avatar's Modal class may run containers (`TALKSTACK_AVATAR_MAX_CONTAINERS`): a chunk
    started beyond that would wait in Modal's queue without a heartbeat, and its attempt (and its
    URLs) would run out before it began."""
    slots = config.parallel_max_concurrency
    if source is not None and source.gpu_slots is not None:
        slots = min(source.gpu_slots, slots)
    if isinstance(request, CompositionRequest):
        # Scenes run side by side: never more than any Modal class their steps use may run.
        for family in _modal_scene_families(request, config):
            slots = min(slots, get_modal_deploy().max_containers(family))
        return slots
    if config.backend_for(request.primary_model) == "modal":
        slots = min(slots, get_modal_deploy().max_containers("avatar"))
    return slots


def _modal_scene_families(request: CompositionRequest, config: PipelineConfig) -> set[WorkerStep]:
    """The worker families (voice, avatar, video, matte) whose Modal classes the scenes' steps run."""
    families: set[WorkerStep] = set()
    for index in range(len(request.scenes)):
        for label in request.scene_steps(index):
            step = StepAddress.parse(label).step
            if config.backend_for(step_model(request, step, index, config)) == "modal":
                families.add(step)
    return families


def plan_job(job_id: str, config: PipelineConfig, store: Any) -> Plan:
    record: JobRecord | None = store.get(job_id)
    if record is None or record.request is None:
        raise KeyError(f"job {job_id} has no record")
    plan = plan_for(record.request, config)
    plan.max_concurrency = max_concurrency(record.source, record.request, config)
    store.put_step_result(job_id, PLAN_RESULT, plan)
    return plan
