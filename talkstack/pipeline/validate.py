"""Validate step: the execution input → a checked request with absolute media refs, and a job record.

Every way in (S3 manifest, direct StartExecution, API) passes here, so every check lives here:
the request's shape (parse_job_request), where its media may come from and where it may publish
(the job's tenant namespace, talkstack.pipeline.tenancy), that each input exists and
is within its size limit (HeadObject: nothing is downloaded), that the models run on this stack's
worker backend, that the webhook target is not a private address, and that a photo animated or a
voice cloned comes with a consent attestation (talkstack.safety.consent: only an object the size of a
bundled sample, and a consent clip, are read). A failure raises TalkstackError; the state machine's
failure path turns it into a failed job record and event.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import ClientError

from talkstack.contract.composition import CompositionRequest
from talkstack.contract.fields import MediaRef, client_field
from talkstack.contract.parse import parse_job_request, with_default_models
from talkstack.contract.record import JobRecord, JobSource
from talkstack.contract.request import AvatarRequest, JobRequestBase
from talkstack.contract.state import split_execution_input
from talkstack.engines.registry import get_model
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.audit import DROP_ACTOR, PIPELINE_SOURCE, Actor, AuditLog
from talkstack.pipeline.aws import client as aws_client
from talkstack.pipeline.aws import error_code
from talkstack.pipeline.backends import read_modal_token
from talkstack.pipeline.compositions import (
    check_composition,
    check_scene_media,
    media_limit,
    with_scene_default_models,
)
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.jobids import manifest_job_name
from talkstack.pipeline.tenancy import Namespace
from talkstack.pipeline.webhooks import WebhookRefused, check_webhook_target
from talkstack.safety.consent import (
    ConsentPolicy,
    attestation_details,
    bundled_sample,
    check_consent,
    check_consent_clip,
    consent_needed,
)
from talkstack.settings import MediaLimits, get_limits


def resolve_media(request: JobRequestBase, bucket: str, manifest_key: str) -> JobRequestBase:
    """Relative refs → absolute `s3://` refs, resolved against the manifest's folder (or `bucket`'s root)."""
    resolved = {
        path: MediaRef(*ref.resolve(bucket, manifest_key)) for path, ref in request.referenced_media().items()
    }
    return request.with_media(resolved)


def _media_limit(path: str, limits: MediaLimits) -> tuple[int, ErrorCode]:
    if path == "inputs.image":
        return limits.max_image_bytes, ErrorCode.IMAGE_TOO_LARGE
    return limits.max_audio_bytes, ErrorCode.INPUT_TOO_LARGE


def check_media(
    request: JobRequestBase,
    namespace: Namespace,
    s3: Any,
    limits: MediaLimits,
    sent: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Each media object (the inputs and the consent clip) is the namespace's to read (before any S3
    call: no existence oracle), exists, is not empty and is within its limit (HeadObject: nothing is
    downloaded); returns their sizes by field path. Messages name each object as `sent` (by field
    path) says the caller wrote it: an upload id stays an upload id, so no answer names a bucket the
    caller did not."""
    namespace.check_reads(request)
    sizes: dict[str, int] = {}
    for path, ref in request.referenced_media().items():
        shown = (sent or {}).get(path, str(ref))
        field = client_field(path)
        try:
            head = s3.head_object(Bucket=ref.bucket, Key=ref.key)
        except ClientError as exc:
            code = error_code(exc)
            if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
                raise namespace.not_found(field, shown) from exc
            if code in ("403", "AccessDenied", "Forbidden"):
                raise TalkstackError(
                    ErrorCode.INPUT_FORBIDDEN, f"{field}: access to {shown} was denied", field=field
                ) from exc
            raise
        size = int(head.get("ContentLength", 0))
        if size == 0:
            raise TalkstackError(ErrorCode.EMPTY_INPUT, f"{field}: {shown} is empty (0 bytes)", field=field)
        if isinstance(request, CompositionRequest):
            check_scene_media(request, path, shown, str(head.get("ContentType", "")))
            limit, code = media_limit(request, path, limits)
        else:
            limit, code = _media_limit(field, limits)
        if size > limit:
            raise TalkstackError(
                code,
                f"{field}: {shown} is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB",
                field=field,
                bytes=size,
                max_bytes=limit,
            )
        sizes[path] = size
    return sizes


def check_consent_for(
    request: JobRequestBase, sizes: Mapping[str, int], s3: Any, config: PipelineConfig, limits: MediaLimits
) -> None:
    """The request carries the consent its photo and reference voice need (none for bundled samples),
    and its consent clip, if any, is speech. Call after check_media (`sizes` is its answer): only an
    object exactly the size of a bundled sample is downloaded (to hash it), and the clip (to decode it)."""

    def read(path: str) -> bytes:
        ref = request.referenced_media()[path]
        return s3.get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read()

    bundled = {
        path
        for path in sizes
        if path.endswith(("inputs.image", "inputs.reference_voice"))
        and bundled_sample(sizes[path], lambda path=path: read(path)) is not None
    }
    policy = ConsentPolicy(config.consent_required, config.voice_clone_consent_clip)
    check_consent(request, consent_needed(request, bundled), policy)
    clip = request.referenced_media().get("consent.clip")
    if clip is not None:
        suffix = PurePosixPath(clip.key).suffix[:16]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"consent-clip{suffix}"
            path.write_bytes(read("consent.clip"))
            check_consent_clip(path, limits)


def consent_actor(source: JobSource, config: PipelineConfig) -> Actor:
    """Who an attestation is logged under: the API key, the drop folder (`drop:<folder>`, as ingest
    logs `job.submitted`), or `operator` for an execution started directly."""
    if source.kind == "api" and source.api_key_id is not None:
        return Actor(source.api_key_id, PIPELINE_SOURCE)
    if source.kind == "s3" and source.key:
        try:
            folder = manifest_job_name(source.key, config.input_prefix, config.manifest_name)
        except TalkstackError:
            folder = source.key.rpartition("/")[0]
        return Actor(f"{DROP_ACTOR}{folder}", PIPELINE_SOURCE)
    return Actor("operator", PIPELINE_SOURCE)


def audit_consent(audit: AuditLog, actor: Actor, job_id: str, request: JobRequestBase) -> None:
    """`consent.attested` for a request that carries an attestation (fail closed: raises if the
    entry cannot be written, before the job is created or started)."""
    consent = getattr(request, "consent", None)
    if consent is None:
        return
    clip = request.referenced_media().get("consent.clip")
    audit.record(
        actor, "consent.attested", "job", job_id, **attestation_details(consent, job_id, clip and str(clip))
    )


def _check_model(model_id: str, task: str, config: PipelineConfig, field: str) -> None:
    """The model exists, fits the task, and its backend can run it here (MODEL_UNAVAILABLE says why)."""
    model = get_model(model_id)
    if model.task != task:
        raise TalkstackError(ErrorCode.INVALID_REQUEST, f"{field}: {model_id} is a {model.task} model")
    backend = config.backend_for(model_id)
    if backend == "modal":
        if model.modal_app is None:
            raise TalkstackError(
                ErrorCode.MODEL_UNAVAILABLE,
                f"{field}: {model_id} has no Modal worker; run it on the local backend",
                model=model_id,
            )
        try:
            read_modal_token(config.modal_token_secret, aws_client("secretsmanager"))
        except TalkstackError as exc:
            raise TalkstackError(
                ErrorCode.MODEL_UNAVAILABLE,
                f"{field}: {model_id} runs on the modal worker backend, but {exc.message}",
                model=model_id,
            ) from exc
        return
    if model.gpu and model_id not in config.local_engines:
        # A video job has no CPU fallback at all, and its default model is a GPU one: say so, or a
        # request that named no model reads as if it had asked for something wrong.
        default = f" (the default for {task} jobs)" if config.default_model(task) == model_id else ""
        no_lite = "; there is no CPU video engine, so video jobs need a GPU" if task == "video" else ""
        raise TalkstackError(
            ErrorCode.MODEL_UNAVAILABLE,
            f"{field}: {model_id} is a GPU model{default} and this stack's local workers do not run "
            f"it{no_lite}; run it on Modal: TALKSTACK_MODEL_BACKENDS={model_id}=modal and a Modal token "
            "(docs/gpu-workers.md)",
            model=model_id,
        )
    if not model.gpu and not model.available:
        raise TalkstackError(
            ErrorCode.MODEL_UNAVAILABLE, f"{field}: {model_id} is unavailable: {model.unavailable_reason}"
        )


def check_request(request: JobRequestBase, config: PipelineConfig, limits: MediaLimits) -> None:
    """Everything but the media objects and where the job publishes: models, text length, webhook
    target (the output is its namespace's: Namespace.check_output / place_output)."""
    if isinstance(request, CompositionRequest):
        check_composition(request, config, limits, _check_model)
        _check_webhook(request, config)
        return
    _check_model(request.primary_model, request.task, config, "options.model")
    if isinstance(request, AvatarRequest) and request.needs_voice_step:
        _check_model(request.voice_step_options().model, "voice", config, "options.voice.model")
    text = getattr(request.inputs, "text", None)
    if text is not None and len(text) > limits.max_text_chars:
        raise TalkstackError(
            ErrorCode.TEXT_TOO_LONG,
            f"inputs.text: {len(text)} characters; the limit is {limits.max_text_chars}",
            chars=len(text),
        )
    _check_webhook(request, config)


def _check_webhook(request: JobRequestBase, config: PipelineConfig) -> None:
    url = request.notify.webhook_url
    if url is not None:
        try:
            check_webhook_target(url, allow_loopback=config.allow_loopback_webhooks)
        except WebhookRefused as exc:
            raise TalkstackError(ErrorCode.INVALID_REQUEST, f"notify.webhook_url: {exc.reason}") from exc


def validate_request(
    raw: Any,
    source: JobSource,
    job_id: str,
    config: PipelineConfig,
    s3: Any,
    limits: MediaLimits | None = None,
) -> JobRequestBase:
    limits = limits or get_limits()
    request: JobRequestBase = with_default_models(parse_job_request(raw), config.default_models)
    if isinstance(request, CompositionRequest):
        request = with_scene_default_models(request, config.default_models)
    if request.job_id is not None and request.job_id != job_id:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST,
            f"job_id: {request.job_id!r} differs from the execution name {job_id!r}; start the execution "
            "with name = job_id",
        )
    base_bucket = source.bucket or config.input_bucket
    request = resolve_media(request, base_bucket, source.key or "")
    namespace = Namespace.for_source(source, config)
    check_request(request, config, limits)
    namespace.check_output(request)
    sizes = check_media(request, namespace, s3, limits)
    check_consent_for(request, sizes, s3, config, limits)
    return request


def open_job(
    raw: Any,
    job_id: str,
    execution_arn: str | None,
    config: PipelineConfig,
    store: Any,
    s3: Any,
    audit: AuditLog | None = None,
) -> tuple[JobRecord, bool]:
    """Validate and create the queued record; (record, created). Re-running for an existing job
    (a retried Lambda, or an API job, which the API validated and created) returns the stored record
    instead of creating a second one. A consent attestation is logged to `audit` before the record
    exists (a retry after a failed create may log it twice; never not at all)."""
    existing = store.get(job_id)
    if existing is not None:
        return existing, False
    request_raw, source = split_execution_input(raw, execution_arn)
    request = validate_request(request_raw, source, job_id, config, s3)
    if audit is not None:
        audit_consent(audit, consent_actor(source, config), job_id, request)
    record = JobRecord.new(job_id, request)
    record.source = source
    created = store.create(record)
    return (record if created else store.get(job_id)), created
