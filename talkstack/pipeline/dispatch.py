"""Dispatch step: turn (job, step, task token) into a worker task and hand it to the worker backend.

The task document carries pre-signed URLs only: GET for each input, PUT for each output and for the
three markers. They expire shortly after the step's own timeout (never later than SigV4's 7 days),
so a leaked task document is useless once the step is over. The token is stored under the attempt
id, which the marker keys embed: complete finds the right token, and a late marker of an earlier
attempt finds its own, already-closed one.
"""

from __future__ import annotations

import hashlib
import posixpath
from datetime import timedelta
from typing import Any

from talkstack.contract.record import JobRecord, utc_now
from talkstack.contract.request import AvatarRequest, JobRequestBase, VideoRequest
from talkstack.contract.worker import InputUrl, Markers, OutputUrl, WorkerTask
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.backends import Backends
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.plan import plan_for, step_model

MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 limit
URL_GRACE_SECONDS = 300
CONTENT_TYPES = {".mp4": "video/mp4", ".jpg": "image/jpeg", ".wav": "audio/wav", ".mp3": "audio/mpeg"}


def attempt_id_for(step: str, retry_count: int, token: str) -> str:
    return f"{step}-{retry_count + 1}-{hashlib.sha256(token.encode()).hexdigest()[:10]}"


def url_lifetime(timeout_s: int, heartbeat_s: int) -> int:
    return min(MAX_PRESIGN_SECONDS, timeout_s + heartbeat_s + URL_GRACE_SECONDS)


def marker_key(job_id: str, attempt_id: str, kind: str) -> str:
    return f"markers/{job_id}/{attempt_id}/{kind}.json"


def cancel_flag_key(job_id: str) -> str:
    """Written by the API's cancel; every worker of the job polls it (WorkerTask.cancel_url)."""
    return f"control/{job_id}/cancel.json"


def work_key(job_id: str, attempt_id: str, filename: str) -> str:
    return f"work/{job_id}/{attempt_id}/{filename}"


class Presigner:
    def __init__(self, s3: Any, expires_in: int) -> None:
        self.s3, self.expires_in = s3, expires_in

    def get(self, bucket: str, key: str, filename: str) -> InputUrl:
        url = self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=self.expires_in
        )
        return InputUrl(url=url, filename=filename)

    def put(self, bucket: str, key: str) -> OutputUrl:
        content_type = CONTENT_TYPES.get(posixpath.splitext(key)[1], "application/json")
        url = self.s3.generate_presigned_url(
            "put_object",
            Params={"Bucket": bucket, "Key": key, "ContentType": content_type},
            ExpiresIn=self.expires_in,
        )
        return OutputUrl(url=url, key=key, content_type=content_type)


def source_audio(request: AvatarRequest, job_id: str, config: PipelineConfig, store: Any) -> tuple[str, str]:
    """(bucket, key) of the speech driving an avatar: the voice step's output, or inputs.audio."""
    if request.needs_voice_step:
        voice = store.get_step_result(job_id, "voice")
        if voice is None:
            raise RuntimeError(f"job {job_id}: the voice step left no result")
        return config.work_bucket, voice["outputs"]["audio"]["key"]
    ref = request.inputs.audio
    assert ref is not None and ref.bucket is not None  # resolved by the validate step
    return ref.bucket, ref.key


def _segments(job_id: str, store: Any) -> dict[str, Any]:
    segments = store.get_step_result(job_id, "segment")
    if segments is None:
        raise RuntimeError(f"job {job_id}: the segment step left no result")
    return segments


def _inputs(
    request: JobRequestBase,
    step: str,
    job_id: str,
    config: PipelineConfig,
    store: Any,
    sign: Presigner,
    chunk: int | None,
) -> dict[str, InputUrl]:
    inputs = {}
    if step == "stitch":
        assert isinstance(request, AvatarRequest)
        count = len(_segments(job_id, store)["chunks"])
        for k in range(count):
            rendered = store.get_step_result(job_id, f"avatar#{k}")
            if rendered is None:
                raise RuntimeError(f"job {job_id}: chunk {k} left no result")
            inputs[f"chunk_{k}"] = sign.get(
                config.work_bucket, rendered["outputs"]["video"]["key"], f"chunk_{k}.mp4"
            )
        bucket, key = source_audio(request, job_id, config, store)
        inputs["audio"] = sign.get(bucket, key, "audio" + posixpath.splitext(key)[1])
        return inputs
    for name, ref in request.media_inputs().items():
        if step == "voice" and name != "reference_voice":
            continue
        if step != "voice" and name == "reference_voice":
            continue
        assert ref.bucket is not None  # resolved by the validate step
        extension = posixpath.splitext(ref.key)[1].lower()
        inputs[name] = sign.get(ref.bucket, ref.key, f"{name}{extension}")
    if step == "avatar" and isinstance(request, AvatarRequest):
        if chunk is not None:  # this chunk's slice of the speech, cut by the segment step
            inputs["audio"] = sign.get(
                config.work_bucket, _segments(job_id, store)["audio_keys"][chunk], "audio.wav"
            )
        elif request.needs_voice_step:
            bucket, key = source_audio(request, job_id, config, store)
            inputs["audio"] = sign.get(bucket, key, "audio" + posixpath.splitext(key)[1])
    return inputs


def _step_options(
    request: JobRequestBase, step: str, job_id: str, store: Any, chunk: int | None
) -> tuple[dict[str, Any], str | None]:
    """The step's options and its text: the words to speak, or a video step's prompt."""
    if step == "stitch":
        return {"chunks": _segments(job_id, store)["chunks"]}, None
    if chunk is not None:  # the slice is already cut to length
        return request.options.model_dump(mode="json") | {"max_duration_s": None}, None
    if step == "voice" and isinstance(request, AvatarRequest):
        return request.voice_step_options().model_dump(mode="json"), request.inputs.text
    if isinstance(request, VideoRequest):
        return request.options.model_dump(mode="json"), request.inputs.prompt
    return request.options.model_dump(mode="json"), getattr(request.inputs, "text", None)


def _output_names(step: str, options: dict[str, Any]) -> dict[str, str]:
    # stitch makes the same outputs as a single avatar step.
    if step == "voice":
        return {"audio": f"speech.{options.get('format', 'wav')}"}
    return {"video": "video.mp4", "thumbnail": "thumbnail.jpg"}


def step_label(step: str, chunk: int | None) -> str:
    """How the table names a step's attempt: `avatar`, or `avatar#3` for chunk 3 of a long avatar."""
    return step if chunk is None else f"{step}#{chunk}"


def build_task(
    record: JobRecord,
    step: str,
    token: str,
    retry_count: int,
    config: PipelineConfig,
    store: Any,
    s3: Any,
    chunk: int | None = None,
) -> WorkerTask:
    request = record.request
    assert request is not None
    job_id = record.job_id
    limits = plan_for(request, config)["timeouts"][step]
    lifetime = url_lifetime(limits["timeout_s"], limits["heartbeat_s"])
    sign = Presigner(s3, lifetime)
    attempt_id = attempt_id_for(step if chunk is None else f"{step}-c{chunk}", retry_count, token)
    options, text = _step_options(request, step, job_id, store, chunk)
    outputs = {
        role: sign.put(config.work_bucket, work_key(job_id, attempt_id, filename))
        for role, filename in _output_names(step, options).items()
    }
    markers = Markers(
        **{
            kind: sign.put(config.work_bucket, marker_key(job_id, attempt_id, kind))
            for kind in ("progress", "result", "error")
        }
    )
    return WorkerTask(
        job_id=job_id,
        step=step,  # type: ignore[arg-type]
        attempt_id=attempt_id,
        attempt=retry_count + 1,
        model=step_model(request, step),
        options=options,
        text=text,
        inputs=_inputs(request, step, job_id, config, store, sign, chunk),
        outputs=outputs,
        markers=markers,
        heartbeat_interval_s=max(0.5, limits["heartbeat_s"] / 3),
        deadline=utc_now() + timedelta(seconds=lifetime),
        cancel_url=sign.get(config.work_bucket, cancel_flag_key(job_id), "cancel.json").url,
    )


def dispatch_step(
    job_id: str,
    step: str,
    token: str,
    retry_count: int,
    config: PipelineConfig,
    store: Any,
    s3: Any,
    backends: Backends,
    chunk: int | None = None,
) -> tuple[WorkerTask, JobRecord, bool]:
    """Record the attempt and start the worker; (task, record, first step of the job started)."""
    record = store.get(job_id)
    if record is None or record.request is None:
        raise KeyError(f"job {job_id} has no record")
    if record.is_terminal:  # cancelled while the execution was on its way here
        raise TalkstackError(
            ErrorCode.CONFLICT, f"job {job_id} is already {record.status}; no worker started"
        )
    task = build_task(record, step, token, retry_count, config, store, s3, chunk)
    backend = backends.for_model(task.model)
    ttl = config.token_ttl_hours * 3600
    store.put_token(job_id, task.attempt_id, step_label(step, chunk), token, ttl)
    was_queued = record.status == "queued"

    def start(current: JobRecord) -> None:
        if step == "stitch" and (avatar := current.step("avatar")) and avatar.status == "running":
            current.finish_step("avatar")  # every chunk is in: the avatar step is done
        existing = current.step(step)  # type: ignore[arg-type]
        if chunk is not None and existing is not None and existing.status == "running":
            return  # one avatar step for all chunks; it counts attempts of chunk 0 only
        current.start_step(step, backend=backend.name, model=task.model)  # type: ignore[arg-type]

    record = store.update(job_id, start)
    call_id = backend.submit(task)

    def remember(current: JobRecord) -> None:
        # The backend's call id (a Modal FunctionCall): what to look up in Modal's dashboard or cancel.
        # The worker's own id (host:pid) arrives with its result marker (complete.py).
        current.step(step).call_id = call_id  # type: ignore[arg-type, union-attr]

    record = store.update(job_id, remember)
    return task, record, was_queued
