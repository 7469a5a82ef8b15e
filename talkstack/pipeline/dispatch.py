"""Dispatch step: turn (job, step, task token) into a worker task and hand it to the worker backend.

The task document carries pre-signed URLs only: GET for each input, PUT for each output and for the
three markers. They expire shortly after the step's own timeout (never later than SigV4's 7 days),
so a leaked task document is useless once the step is over. Each URL is signed for its bucket's own
region, on that region's endpoint (aws.RegionalPresigner): the worker has no way to follow a
redirect to another region with a signed URL. The token is stored under the attempt
id, which the marker keys embed: complete finds the right token, and a late marker of an earlier
attempt finds its own, already-closed one. The attempt is also recorded as its step's current one
(CURRENT#<step>): a result marker of any other attempt cannot change the step's result.

The backend call that runs the attempt is kept on its TOKEN item. An attempt that replaces another
(a retry after a heartbeat timeout, a transient error) cancels the replaced attempt's call if it may
still run: a silent worker can otherwise hold its GPU for hours while the retry holds another. That
is best effort, for the GPU's sake; the CURRENT# guard is what keeps the late attempt's markers out.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
from datetime import timedelta
from typing import Any

from talkstack.contract.composition import CompositionRequest
from talkstack.contract.record import JobRecord, utc_now
from talkstack.contract.request import AvatarRequest, JobRequestBase, VideoRequest, VoiceRequest
from talkstack.contract.state import DispatchInput
from talkstack.contract.worker import (
    TASK_TYPES,
    InputUrl,
    Markers,
    OutputUrl,
    StepAddress,
    StitchOptions,
    WorkerTask,
    cancel_flag_key,
    marker_key,
    work_key,
)
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.aws import UrlSigner
from talkstack.pipeline.backends import Backends
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.cost import is_gpu_model
from talkstack.pipeline.plan import plan_for, step_model
from talkstack.pipeline.scenes import WORDS_FILE, WORDS_ROLE, compose_parts, matte_parts
from talkstack.pipeline.step_results import (
    rejected_result,
    segment_plan,
    source_audio,
    step_result,
    stored_plan,
)

log = logging.getLogger(__name__)
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 limit
URL_GRACE_SECONDS = 300
CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".json": "application/json",
    ".srt": "application/x-subrip",
    ".vtt": "text/vtt",
    ".webp": "image/webp",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
}


def attempt_id_for(address: StepAddress, retry_count: int, token: str) -> str:
    return f"{address.attempt_stem}-{retry_count + 1}-{hashlib.sha256(token.encode()).hexdigest()[:10]}"


def url_lifetime(timeout_s: int) -> int:
    """The step's own timeout plus a little: once the state machine has timed the step out, the
    attempt is over (a retry gets new URLs), and the plan keeps a Modal step's timeout within what
    its Modal class may run, so no URL outlives the worker that could use it."""
    return min(MAX_PRESIGN_SECONDS, timeout_s + URL_GRACE_SECONDS)


class Presigner:
    """The task's URLs, all expiring together."""

    def __init__(self, signer: UrlSigner, expires_in: int) -> None:
        self.signer, self.expires_in = signer, expires_in

    def get(self, bucket: str, key: str, filename: str) -> InputUrl:
        url = self.signer.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=self.expires_in
        )
        return InputUrl(url=url, filename=filename)

    def put(self, bucket: str, key: str) -> OutputUrl:
        content_type = CONTENT_TYPES.get(posixpath.splitext(key)[1], "application/json")
        url = self.signer.generate_presigned_url(
            "put_object",
            Params={"Bucket": bucket, "Key": key, "ContentType": content_type},
            ExpiresIn=self.expires_in,
        )
        return OutputUrl(url=url, key=key, content_type=content_type)


def _stitch_inputs(
    request: AvatarRequest, job_id: str, config: PipelineConfig, store: Any, sign: Presigner
) -> dict[str, InputUrl]:
    inputs = {}
    for chunk in segment_plan(store, job_id).chunks:
        rendered = step_result(store, job_id, StepAddress(step="avatar", chunk=chunk.index))
        name = f"chunk_{chunk.index}"
        inputs[name] = sign.get(config.work_bucket, rendered.outputs["video"].key, f"{name}.mp4")
    bucket, key = source_audio(request, job_id, config, store)
    inputs["audio"] = sign.get(bucket, key, "audio" + posixpath.splitext(key)[1])
    # The photo: every chunk is colour-matched to it before the crossfade, and the joined video's
    # quality report measures identity against it (talkstack/workers/lite_steps.py `stitch`).
    photo = request.inputs.image
    assert photo.bucket is not None  # resolved by the validate step
    inputs["image"] = sign.get(photo.bucket, photo.key, "image" + posixpath.splitext(photo.key)[1].lower())
    return inputs


def _inputs(
    request: JobRequestBase,
    address: StepAddress,
    job_id: str,
    config: PipelineConfig,
    store: Any,
    sign: Presigner,
) -> dict[str, InputUrl]:
    step = address.step
    if step == "stitch":
        assert isinstance(request, AvatarRequest)
        return _stitch_inputs(request, job_id, config, store, sign)
    inputs = {}
    for name, ref in request.media_inputs().items():
        # The reference voice feeds the voice step only; every other input feeds the main step.
        if (step == "voice") != (name == "reference_voice"):
            continue
        assert ref.bucket is not None  # resolved by the validate step
        extension = posixpath.splitext(ref.key)[1].lower()
        inputs[name] = sign.get(ref.bucket, ref.key, f"{name}{extension}")
    if step == "avatar" and isinstance(request, AvatarRequest):
        if address.chunk is not None:  # this chunk's slice of the speech, cut by the segment step
            key = segment_plan(store, job_id).audio_keys[address.chunk]
            inputs["audio"] = sign.get(config.work_bucket, key, "audio.wav")
        elif request.needs_voice_step:
            bucket, key = source_audio(request, job_id, config, store, address.scene)
            inputs["audio"] = sign.get(bucket, key, "audio" + posixpath.splitext(key)[1])
    return inputs


def _options_and_text(
    request: JobRequestBase, address: StepAddress, job_id: str, store: Any
) -> tuple[Any, str | None]:
    """The step's typed options and its text: the words to speak, or a video step's prompt."""
    if address.step == "stitch":
        return StitchOptions(chunks=segment_plan(store, job_id).chunks), None
    if isinstance(request, AvatarRequest):
        if address.step == "voice":
            return request.voice_step_options(), request.inputs.text
        if address.chunk is not None:  # the slice is already cut to length
            options = request.options.model_copy(update={"max_duration_s": None})
            if rejected_result(store, job_id, address) is not None:
                # Rendering again for quality: the engines seed every generator (the GPU models run
                # deterministic cuDNN), so the same seed would draw the same failing video again.
                seed = options.seed if options.seed is not None else 0  # engines default to 42 / 0
                options = options.model_copy(update={"seed": (seed + 1) % 2**32})
            return options, None
        return request.options, None
    if isinstance(request, VideoRequest):
        return request.options, request.inputs.prompt
    assert isinstance(request, VoiceRequest)
    return request.options, request.inputs.text


def _output_names(address: StepAddress, options: Any) -> dict[str, str]:
    # stitch makes the same outputs as a single avatar step.
    if address.step == "voice":
        names = {"audio": f"speech.{options.format}"}
        if address.scene is not None:  # a composition scene's speech: its word timings for captions
            names[WORDS_ROLE] = WORDS_FILE
        return names
    return {"video": "video.mp4", "thumbnail": "thumbnail.jpg"}


def watermarks(request: JobRequestBase, address: StepAddress) -> bool:
    """Whether the step's engine marks its output (WorkerTaskBase.watermark): not a chunk, which the
    stitch step joins and marks, nor the speech of a job that is not a voice job, which the avatar
    step muxes and marks; marking them too would put a second mark on what is published."""
    if request.task == "composition":
        return address.step == "compose"  # the scenes' renders are marked once, composed
    return address.chunk is None and (address.step != "voice" or request.task == "voice")


def build_task(
    record: JobRecord,
    address: StepAddress,
    token: str,
    retry_count: int,
    config: PipelineConfig,
    store: Any,
    signer: UrlSigner,
) -> WorkerTask:
    request = record.request
    assert request is not None
    job_id = record.job_id
    plan = stored_plan(store, job_id)
    if plan is None:  # planned before the plan was stored (a job in flight across a deploy)
        log.warning("job %s has no stored plan; planning it again", job_id)
        plan = plan_for(request, config)
    limits = plan.limits(address.step)
    lifetime = url_lifetime(limits.timeout_s)
    sign = Presigner(signer, lifetime)
    attempt_id = attempt_id_for(address, retry_count, token)
    task_type = TASK_TYPES[address.step]
    model = step_model(request, address.step, address.scene, config)
    if isinstance(request, CompositionRequest) and address.step in ("matte", "compose"):
        if address.step == "matte":
            options, inputs, names = matte_parts(request, address, job_id, config, store, sign)
        else:
            options, inputs, names = compose_parts(request, job_id, config, store, sign)
        text = None
    else:
        # An ordinary job's step, or a composition scene's engine step: its scene request's, built
        # by the same code.
        step_request = request
        if isinstance(request, CompositionRequest):
            assert address.scene is not None  # the ASL's scene steps always name their scene
            scene_request = request.scene_request(address.scene)
            assert scene_request is not None  # the plan runs engine steps only for scenes with one
            step_request = scene_request
        options, text = _options_and_text(step_request, address, job_id, store)
        inputs = _inputs(step_request, address, job_id, config, store, sign)
        names = _output_names(address, options)
    outputs = {
        role: sign.put(config.work_bucket, work_key(job_id, attempt_id, filename))
        for role, filename in names.items()
    }
    markers = Markers(
        progress=sign.put(config.work_bucket, marker_key(job_id, attempt_id, "progress")),
        result=sign.put(config.work_bucket, marker_key(job_id, attempt_id, "result")),
        error=sign.put(config.work_bucket, marker_key(job_id, attempt_id, "error")),
    )
    return task_type(  # type: ignore[return-value]
        job_id=job_id,
        attempt_id=attempt_id,
        attempt=retry_count + 1,
        model=model,
        options=options,
        text=text,
        inputs=inputs,
        outputs=outputs,
        markers=markers,
        heartbeat_interval_s=max(0.5, limits.heartbeat_s / 3),
        deadline=utc_now() + timedelta(seconds=lifetime),
        cancel_url=sign.get(config.work_bucket, cancel_flag_key(job_id), "cancel.json").url,
        watermark=watermarks(request, address),
    )


def _cancel_call(job_id: str, call_id: str, why: str, backends: Backends) -> None:
    try:
        backends.cancel(call_id)
        log.info("job %s: cancelled worker call %s (%s)", job_id, call_id, why)
    except Exception as exc:  # best effort: the replaced attempt's markers are ignored anyway
        log.warning("job %s: could not cancel worker call %s (%s): %s", job_id, call_id, why, exc)


def _cancel_replaced(
    job_id: str, address: StepAddress, replaced: str, store: Any, backends: Backends
) -> None:
    """Stop the call of the attempt this one replaces, if it may still run. Its call id may not be
    stored yet (its dispatch still between submit and _keep_call): that dispatch then finds itself
    replaced and cancels its own call."""
    try:
        attempt = store.get_token(job_id, replaced)
    except Exception as exc:
        log.warning("job %s: could not read replaced attempt %s: %s", job_id, replaced, exc)
        return
    if attempt is not None and attempt.may_be_running and attempt.call_id:
        _cancel_call(job_id, attempt.call_id, f"attempt {replaced} of {address} was replaced", backends)


def _keep_call(
    job_id: str, address: StepAddress, attempt_id: str, call_id: str, store: Any, backends: Backends
) -> None:
    """Store the attempt's call id; if a later attempt was dispatched meanwhile (it read this one's
    TOKEN before the call id was on it), cancel the call here."""
    try:
        store.set_attempt_call(job_id, attempt_id, call_id)
        current = store.current_attempt(job_id, address)
    except Exception as exc:  # the worker runs; only a later cancel of this call is lost
        log.warning("job %s: could not record call %s of %s: %s", job_id, call_id, attempt_id, exc)
        return
    if current not in (None, attempt_id):
        _cancel_call(
            job_id, call_id, f"attempt {attempt_id} of {address} was replaced while starting", backends
        )


def dispatch_step(
    event: DispatchInput,
    config: PipelineConfig,
    store: Any,
    signer: UrlSigner,
    backends: Backends,
) -> tuple[WorkerTask, JobRecord, bool]:
    """Record the attempt and start the worker; (task, record, first step of the job started).
    `signer` pre-signs the task's URLs (the services' `presign`: each bucket's own region)."""
    job_id, address, step = event.job_id, event.address, event.step
    record = store.get(job_id)
    if record is None or record.request is None:
        raise KeyError(f"job {job_id} has no record")
    if record.is_terminal:  # cancelled while the execution was on its way here
        raise TalkstackError(
            ErrorCode.CONFLICT, f"job {job_id} is already {record.status}; no worker started"
        )
    task = build_task(record, address, event.task_token, event.retry_count, config, store, signer)
    backend = backends.for_model(task.model)
    ttl = config.token_ttl_hours * 3600
    store.put_token(job_id, task.attempt_id, address, event.task_token, ttl)
    # From here on only this attempt's markers may change the step's result (complete.py): a late
    # marker of the attempt it replaces is ignored. Before the worker starts, so no marker of this
    # attempt can land first.
    current, replaced = store.put_current_attempt(job_id, address, task.attempt_id, event.retry_count + 1)
    if not current:
        # A dispatch that ran so late that the state machine already gave up on its task and
        # dispatched a later attempt: its token is dead, and no worker should start for it.
        raise TalkstackError(
            ErrorCode.CONFLICT, f"job {job_id}: a later attempt of {address} is already dispatched"
        )
    if replaced is not None:
        _cancel_replaced(job_id, address, replaced, store, backends)
    was_queued = record.status == "queued"

    def start(current: JobRecord) -> None:
        if step == "stitch" and (avatar := current.step("avatar")) and avatar.status == "running":
            current.finish_step("avatar")  # every chunk is in: the avatar step is done
        if step == "compose":  # every scene is in: their steps are done
            for scene_step in ("voice", "avatar", "video", "matte"):
                if (running := current.step(scene_step)) is not None and running.status == "running":
                    current.finish_step(scene_step)
        existing = current.step(step)
        if address.chunk is not None and existing is not None and existing.status == "running":
            return  # one avatar step for all chunks; it counts attempts of chunk 0 only
        if address.scene is not None and existing is not None and existing.status == "running":
            # One step record per kind for all scenes (another scene's is running): it counts every
            # scene's attempts, and keeps the backend and model of the first, unless this scene's
            # model is a GPU one and that is not: the step's worker time (every scene's) is then
            # GPU time, so a lite scene dispatched first cannot hide a GPU scene's from usage.
            existing.attempts += 1
            if is_gpu_model(task.model) and not (existing.model and is_gpu_model(existing.model)):
                existing.model, existing.backend = task.model, backend.name
            return
        current.start_step(step, backend=backend.name, model=task.model)

    record = store.update(job_id, start)
    call_id = backend.submit(task)
    _keep_call(job_id, address, task.attempt_id, call_id, store, backends)

    def remember(current: JobRecord) -> None:
        # The backend's call id (a Modal FunctionCall): what to look up in Modal's dashboard or cancel.
        # The worker's own id (host:pid) arrives with its result marker (complete.py).
        running = current.step(step)
        assert running is not None  # started above
        running.call_id = call_id

    record = store.update(job_id, remember)
    return task, record, was_queued
