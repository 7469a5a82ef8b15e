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
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.plan import plan_for, step_model
from talkstack.workers.backends import Backends
from talkstack.workers.protocol import InputUrl, Markers, OutputUrl, WorkerTask

MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 limit
URL_GRACE_SECONDS = 300
CONTENT_TYPES = {".mp4": "video/mp4", ".jpg": "image/jpeg", ".wav": "audio/wav", ".mp3": "audio/mpeg"}


def attempt_id_for(step: str, retry_count: int, token: str) -> str:
    return f"{step}-{retry_count + 1}-{hashlib.sha256(token.encode()).hexdigest()[:10]}"


def url_lifetime(timeout_s: int, heartbeat_s: int) -> int:
    return min(MAX_PRESIGN_SECONDS, timeout_s + heartbeat_s + URL_GRACE_SECONDS)


def marker_key(job_id: str, attempt_id: str, kind: str) -> str:
    return f"markers/{job_id}/{attempt_id}/{kind}.json"


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


def _inputs(
    request: JobRequestBase, step: str, job_id: str, config: PipelineConfig, store: Any, sign: Presigner
) -> dict[str, InputUrl]:
    inputs = {}
    for name, ref in request.media_inputs().items():
        if step == "voice" and name != "reference_voice":
            continue
        if step != "voice" and name == "reference_voice":
            continue
        assert ref.bucket is not None  # resolved by the validate step
        extension = posixpath.splitext(ref.key)[1].lower()
        inputs[name] = sign.get(ref.bucket, ref.key, f"{name}{extension}")
    if step == "avatar" and isinstance(request, AvatarRequest) and request.needs_voice_step:
        voice = store.get_step_result(job_id, "voice")
        if voice is None:
            raise RuntimeError(f"job {job_id}: the voice step left no result")
        key = voice["outputs"]["audio"]["key"]
        inputs["audio"] = sign.get(config.work_bucket, key, "audio" + posixpath.splitext(key)[1])
    return inputs


def _step_options(request: JobRequestBase, step: str) -> tuple[dict[str, Any], str | None]:
    """The step's options and its text: the words to speak, or a video step's prompt."""
    if step == "voice" and isinstance(request, AvatarRequest):
        return request.voice_step_options().model_dump(mode="json"), request.inputs.text
    if isinstance(request, VideoRequest):
        return request.options.model_dump(mode="json"), request.inputs.prompt
    return request.options.model_dump(mode="json"), getattr(request.inputs, "text", None)


def _output_names(step: str, options: dict[str, Any]) -> dict[str, str]:
    if step == "voice":
        return {"audio": f"speech.{options.get('format', 'wav')}"}
    return {"video": "video.mp4", "thumbnail": "thumbnail.jpg"}


def build_task(
    record: JobRecord,
    step: str,
    token: str,
    retry_count: int,
    config: PipelineConfig,
    store: Any,
    s3: Any,
) -> WorkerTask:
    request = record.request
    assert request is not None
    job_id = record.job_id
    limits = plan_for(request, config)["timeouts"][step]
    lifetime = url_lifetime(limits["timeout_s"], limits["heartbeat_s"])
    sign = Presigner(s3, lifetime)
    attempt_id = attempt_id_for(step, retry_count, token)
    options, text = _step_options(request, step)
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
        inputs=_inputs(request, step, job_id, config, store, sign),
        outputs=outputs,
        markers=markers,
        heartbeat_interval_s=max(0.5, limits["heartbeat_s"] / 3),
        deadline=utc_now() + timedelta(seconds=lifetime),
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
) -> tuple[WorkerTask, JobRecord, bool]:
    """Record the attempt and start the worker; (task, record, first step of the job started)."""
    record = store.get(job_id)
    if record is None or record.request is None:
        raise KeyError(f"job {job_id} has no record")
    task = build_task(record, step, token, retry_count, config, store, s3)
    backend = backends.for_model(task.model)
    ttl = config.token_ttl_hours * 3600
    store.put_token(job_id, task.attempt_id, step, token, ttl)
    was_queued = record.status == "queued"

    def start(current: JobRecord) -> None:
        current.start_step(step, backend=backend.name, model=task.model)  # type: ignore[arg-type]

    record = store.update(job_id, start)
    call_id = backend.submit(task)

    def remember(current: JobRecord) -> None:
        # The backend's call id (a Modal FunctionCall): what to look up in Modal's dashboard or cancel.
        # The worker's own id (host:pid) arrives with its result marker (complete.py).
        current.step(step).call_id = call_id  # type: ignore[arg-type, union-attr]

    record = store.update(job_id, remember)
    return task, record, was_queued
