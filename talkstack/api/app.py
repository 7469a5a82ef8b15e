"""The REST API: powertools' API Gateway resolver over ApiService, plus what a gateway does before it.

`handle(event, context)` is the Lambda entry point (aws/lambda/api.py). Before routing it does what
must come first for every protected path: authenticate the key (401), count the request against
the key's per-minute budget (429 + Retry-After), and turn a multipart generation request into its
JSON form (its files named as uploads, stored only once the request passed its checks). Routing,
query/path validation and responses are powertools'.
Every error leaves as `{"error": {"code", "message", "details"}}` with the job contract's codes.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import replace
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query
from pydantic import AwareDatetime, ValidationError

from talkstack.api.keys import KeyStore, Principal
from talkstack.api.limits import RateLimiter
from talkstack.api.models import (
    AuditTrail,
    ErrorBody,
    Health,
    JobAccepted,
    JobList,
    JobView,
    ModelList,
    TemplateList,
    TemplateView,
    UploadRequest,
    UploadTicket,
    Usage,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookSecret,
    WebhookView,
)
from talkstack.api.service import ApiService
from talkstack.api.uploads import PendingFile, Uploads, parse_form
from talkstack.api.webhooks import WebhookService
from talkstack.contract.parse import invalid_request, load_request_json, request_text
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.aioboto3_s3 import session_s3
from talkstack.pipeline.aws import client
from talkstack.pipeline.backends import Backends
from talkstack.pipeline.deletion import DataErasure, JobDeletion
from talkstack.pipeline.services import Services, services

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs"})
GENERATE_PATHS = {
    "/v1/avatar/generate": "avatar",
    "/v1/voice/clone": "voice",
    "/v1/video/generate": "video",
    "/v1/composition/generate": "composition",
}
NO_FORM_TASKS = frozenset({"composition"})
"""Generation endpoints without multipart files: a composition's media sit in its scenes, not in
`inputs`, so they travel as upload ids or `s3://` references."""
JOB_ID = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,80}$", description="A job id from a 202 answer.")]
IDEMPOTENCY_KEY = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Makes a retry safe: the same key and body within 24 h return the original job.",
        max_length=255,
    ),
]
STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.INPUT_FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.INPUT_NOT_FOUND: 404,  # missing, or not this key's to read: one answer
    ErrorCode.CONFLICT: 409,
    ErrorCode.INPUT_TOO_LARGE: 413,
    ErrorCode.IMAGE_TOO_LARGE: 413,
    ErrorCode.STORAGE_QUOTA_EXCEEDED: 413,  # with Retry-After: when the oldest uploads stop counting
    ErrorCode.UNSUPPORTED_MEDIA: 415,
    ErrorCode.CONTENT_REFUSED: 422,  # the moderation policy or classifier refused a text
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.CONSENT_REQUIRED: 422,  # a request without the attestation it needs
    ErrorCode.CONSENT_CLIP_INVALID: 422,
    ErrorCode.TEMPLATE_INVALID: 422,  # an operator's template that does not hold together
    ErrorCode.TEMPLATE_VARIABLES_INVALID: 422,  # details.problems: every variable that does not fit
    ErrorCode.GENERATION_FAILED: 500,
}
"""Any other code (a missing input, a silent clip, a model this stack cannot run …) is 422."""

app = APIGatewayRestResolver(
    enable_validation=True,
    cors=CORSConfig(
        allow_origin="*",
        allow_headers=["Authorization", "x-api-key", "Idempotency-Key", "Content-Type"],
        expose_headers=["Retry-After", "Location", "Idempotent-Replayed"],
    ),
)


# --- plumbing ---------------------------------------------------------------------------------------


class Api:
    """Everything built from the configuration, once per container (rebuilt if it changes)."""

    def __init__(self, svc: Services) -> None:
        ddb = client("dynamodb")
        self.svc = svc
        self.keys = KeyStore(svc.config.jobs_table, ddb)
        self.rate = RateLimiter(svc.config.jobs_table, ddb)
        backends = Backends(svc.config, lambda: client("secretsmanager"))
        self.service = ApiService(svc, ddb, backends, aio_s3=session_s3())
        self.uploads: Uploads = self.service.uploads
        self.audit = self.service.audit
        self.webhooks = WebhookService(svc.config, ddb, self.audit)


_built: list[Api] = []


def api() -> Api:
    """The container's Api, rebuilt when the configuration is (local mode reconfigures in place)."""
    svc = services()
    if not _built or _built[0].svc is not svc:
        _built[:] = [Api(svc)]
    return _built[0]


def status_for(code: ErrorCode) -> int:
    return STATUS.get(code, 422)


def error_body(code: ErrorCode, message: str, details: dict[str, Any] | None = None) -> str:
    return ErrorBody.model_validate(
        {"error": {"code": code, "message": message, "details": details or {}}}
    ).model_dump_json()


def error_headers(exc: TalkstackError) -> dict[str, str]:
    headers = {}
    retry = exc.details.get("retry_after_s")
    if retry is not None:
        headers["Retry-After"] = str(int(retry))
    if exc.code == ErrorCode.UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Bearer realm="talkstack"'
    return headers


def error_response(exc: TalkstackError) -> Response:
    details = json.loads(json.dumps(exc.details, default=str))
    return Response(
        status_code=status_for(exc.code),
        content_type="application/json",
        body=error_body(exc.code, exc.message, details),
        headers=error_headers(exc),
    )


def json_response(status: int, model: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status, content_type="application/json", body=model.model_dump_json(), headers=headers
    )


def principal() -> Principal:
    return app.context["principal"]


# --- errors -----------------------------------------------------------------------------------------


@app.exception_handler(TalkstackError)
def _talkstack_error(exc: TalkstackError) -> Response:
    return error_response(exc)


@app.exception_handler(RequestValidationError)
def _validation_error(exc: RequestValidationError) -> Response:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body",))
        problems.append({"field": where, "type": error.get("type"), "message": str(error.get("msg"))})
    first = problems[0] if problems else {"field": "", "message": "invalid request"}
    message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    return error_response(TalkstackError(ErrorCode.INVALID_REQUEST, message, errors=problems))


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled API error")
    return error_response(
        TalkstackError(ErrorCode.GENERATION_FAILED, f"internal error: {type(exc).__name__}; it was logged")
    )


@app.not_found
def _not_found(exc: Exception) -> Response:
    path = app.current_event.path
    return error_response(
        TalkstackError(ErrorCode.NOT_FOUND, f"no route {app.current_event.http_method} {path}")
    )


# --- routes -----------------------------------------------------------------------------------------


def _responses(ok: int, model: type, description: str) -> dict[int, dict[str, Any]]:
    return {ok: {"description": description, "content": {"application/json": {"model": model}}}}


def _generate(task: str, idempotency_key: str | None) -> Response:
    event = app.current_event
    body = load_request_json(event.decoded_body or "")
    files = app.context.get("pending_files") or []
    accepted, replayed = api().service.submit(principal(), task, body, idempotency_key, files)
    return _accepted(accepted, replayed)


def _accepted(accepted: JobAccepted, replayed: bool) -> Response:
    headers = {"Location": accepted.links.self}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(202, accepted, headers)


@app.post(
    "/v1/avatar/generate",
    summary="Make a talking-avatar video",
    description="A photo plus speech (an audio file, or text for the voice step) → a lip-synced MP4. "
    "Answers 202 with the job id at once; poll `GET /v1/jobs/{job_id}` or wait for the webhook.",
    tags=["generate"],
    operation_id="generateAvatar",
    responses=_responses(202, JobAccepted, "Job accepted"),
)
def generate_avatar(idempotency_key: IDEMPOTENCY_KEY = None):  # -> Response (declared above)
    return _generate("avatar", idempotency_key)


@app.post(
    "/v1/voice/clone",
    summary="Speak text in a cloned voice",
    description="Text plus an optional reference voice (5-60 s of clean speech) → WAV or MP3.",
    tags=["generate"],
    operation_id="cloneVoice",
    responses=_responses(202, JobAccepted, "Job accepted"),
)
def clone_voice(idempotency_key: IDEMPOTENCY_KEY = None):  # -> Response (declared above)
    return _generate("voice", idempotency_key)


@app.post(
    "/v1/video/generate",
    summary="Make a video from a prompt",
    description="A text prompt, optionally a first frame → an MP4 clip (LTX-Video or Wan2.2).",
    tags=["generate"],
    operation_id="generateVideo",
    responses=_responses(202, JobAccepted, "Job accepted"),
)
def generate_video(idempotency_key: IDEMPOTENCY_KEY = None):  # -> Response (declared above)
    return _generate("video", idempotency_key)


@app.post(
    "/v1/composition/generate",
    summary="Make a finished video from scenes",
    description="Scenes (avatars, generated clips, uploaded images or videos, title cards) laid out "
    "over backgrounds with text overlays, transitions, music and captions → one MP4 with captions, "
    "thumbnails and an animated preview (docs/compositions.md). `preview: true` renders it fast "
    "and cheap first; `POST /v1/jobs/{job_id}/render` then makes the full render.",
    tags=["generate"],
    operation_id="generateComposition",
    responses=_responses(202, JobAccepted, "Job accepted"),
)
def generate_composition(idempotency_key: IDEMPOTENCY_KEY = None):  # -> Response (declared above)
    return _generate("composition", idempotency_key)


@app.post(
    "/v1/uploads",
    summary="Get a pre-signed URL to upload one media file",
    description="Declare the file's name, type and exact size; PUT the bytes to `url` with `headers`, "
    "then use `upload_id` in a generation request's `inputs`.",
    tags=["uploads"],
    operation_id="createUpload",
    responses=_responses(201, UploadTicket, "Upload URL issued"),
)
def create_upload():  # -> Response (declared above)
    raw = load_request_json(app.current_event.decoded_body or "")
    try:
        request = UploadRequest.model_validate(raw)
    except ValidationError as exc:
        raise invalid_request(exc) from exc
    caller = principal()
    ticket = api().uploads.create(caller, request)
    # Logged before the URL is handed out (fail closed: an unlogged upload URL is never returned).
    api().audit.record(
        caller.actor, "upload.created", "upload", ticket.upload_id, content_type=request.content_type
    )
    return json_response(201, ticket)


@app.get(
    "/v1/jobs/<job_id>",
    summary="A job's status, progress and result",
    description="Completed jobs carry pre-signed download URLs for every output (valid one hour).",
    tags=["jobs"],
    operation_id="getJob",
)
def get_job(job_id: JOB_ID) -> JobView:
    return api().service.get_job(principal(), job_id)


@app.get(
    "/v1/jobs",
    summary="This key's jobs, newest first",
    tags=["jobs"],
    operation_id="listJobs",
)
def list_jobs(
    status: Annotated[
        str | None,
        Query(
            description="Only these statuses (comma-separated: queued,running,completed,failed,cancelled)."
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[
        str | None, Query(max_length=2048, description="`next_cursor` of the last page.")
    ] = None,
) -> JobList:
    return api().service.list_jobs(principal(), status, limit, cursor)


@app.post(
    "/v1/jobs/<job_id>/cancel",
    summary="Cancel a queued or running job",
    description="Stops the execution and its workers; nothing is published; a `job.cancelled` event "
    "follows. Cancelling a cancelled job answers the same again; a finished job answers 409.",
    tags=["jobs"],
    operation_id="cancelJob",
)
def cancel_job(job_id: JOB_ID) -> JobView:
    return api().service.cancel(principal(), job_id)


@app.delete(
    "/v1/jobs/<job_id>",
    summary="Delete a job and everything it left",
    description="Removes the job's inputs (its uploads, unless an unfinished job of this key uses "
    "them), outputs (published or held), intermediate files, records, events and delivery logs; keeps "
    "one `job.deleted` audit entry. A queued or running job is cancelled first. Answers a receipt of "
    "what was removed; 409 with Retry-After while the job's execution sends its last notifications.",
    tags=["jobs"],
    operation_id="deleteJob",
)
def delete_job(job_id: JOB_ID) -> JobDeletion:
    return api().service.delete_job(principal(), job_id)


@app.delete(
    "/v1/data",
    summary="Erase everything of this API key (a GDPR erasure request)",
    description="Deletes every job of this key as `DELETE /v1/jobs/{job_id}` does, then its uploads, "
    "outputs, webhook endpoints and secrets, rate and idempotency records, and finally the key itself: "
    "it authenticates no more. The audit trail is kept. A call works for at most 20 s: while the "
    "receipt says `complete: false`, call again (with the same key) to go on.",
    tags=["data"],
    operation_id="eraseData",
)
def erase_data() -> DataErasure:
    return api().service.erase_data(principal())


# --- templates ------------------------------------------------------------------------------------

TEMPLATE_ID = Annotated[
    str,
    Path(
        pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$",
        description="A template id: a bundled one (`GET /v1/templates`) or this key's own.",
    ),
]


@app.get(
    "/v1/templates",
    summary="Templates: the bundled ones and this key's own",
    description="Each with its id, version, name, aspect ratio, category and variable names.",
    tags=["templates"],
    operation_id="listTemplates",
)
def list_templates() -> TemplateList:
    return api().service.list_templates(principal())


@app.get(
    "/v1/templates/<template_id>",
    summary="One template: its variables, their types and defaults, an example",
    tags=["templates"],
    operation_id="getTemplate",
)
def get_template(template_id: TEMPLATE_ID) -> TemplateView:
    return api().service.get_template(principal(), template_id)


@app.put(
    "/v1/templates/<template_id>",
    summary="Create or replace one of this key's templates",
    description="The body is a template document (schemas/template.schema.json), validated at once: "
    "422 TEMPLATE_INVALID lists every problem. Stored for this key only; a bundled template's id "
    "answers 409. Answers 201 when created, 200 when replaced.",
    tags=["templates"],
    operation_id="putTemplate",
    responses={
        **_responses(200, TemplateView, "Template replaced"),
        **_responses(201, TemplateView, "Template created"),
    },
)
def put_template(template_id: TEMPLATE_ID):  # -> Response (declared above)
    body = load_request_json(app.current_event.decoded_body or "")
    view, created = api().service.put_template(principal(), template_id, body)
    return json_response(201 if created else 200, view)


@app.delete(
    "/v1/templates/<template_id>",
    summary="Delete one of this key's templates",
    tags=["templates"],
    operation_id="deleteTemplate",
    responses={204: {"description": "Template deleted"}},
)
def delete_template(template_id: TEMPLATE_ID):  # -> Response (declared above)
    api().service.delete_template(principal(), template_id)
    return Response(status_code=204, body="")


@app.post(
    "/v1/templates/<template_id>/generate",
    summary="Make a composition video from a template and its variables",
    description="Fills the template with `variables` (defaults for the rest) and submits the "
    "composition as a job, with the same checks, limits and Idempotency-Key handling as the "
    "generation endpoints. 422 TEMPLATE_VARIABLES_INVALID lists every problem at once (unknown "
    "variable, wrong type, missing required, media that does not exist or this key may not read). "
    "`preview: true` renders fast and cheap; `POST /v1/jobs/{job_id}/render` then renders it in full.",
    tags=["templates"],
    operation_id="generateFromTemplate",
    responses=_responses(202, JobAccepted, "Job accepted"),
)
def generate_from_template(template_id: TEMPLATE_ID, idempotency_key: IDEMPOTENCY_KEY = None):
    body = load_request_json(app.current_event.decoded_body or "{}")
    accepted, replayed = api().service.generate_from_template(principal(), template_id, body, idempotency_key)
    return _accepted(accepted, replayed)


@app.post(
    "/v1/jobs/<job_id>/render",
    summary="Render a preview in full",
    description="For a composition job submitted with `preview: true` (and not failed): a new job "
    "with the same request, `preview` off (full resolution, the requested engines, no PREVIEW mark). "
    "Any other job answers 409.",
    tags=["jobs"],
    operation_id="renderJob",
    responses=_responses(202, JobAccepted, "Job accepted"),
)
def render_job(job_id: JOB_ID, idempotency_key: IDEMPOTENCY_KEY = None):  # -> Response (declared above)
    accepted, replayed = api().service.render_job(principal(), job_id, idempotency_key)
    return _accepted(accepted, replayed)


@app.get(
    "/v1/models",
    summary="Models, their limits and licences, and whether this stack can run them now",
    tags=["models"],
    operation_id="listModels",
)
def list_models() -> ModelList:
    return api().service.models()


@app.get(
    "/v1/usage",
    summary="Jobs, rendered seconds, GPU seconds and estimated cost per day or month",
    tags=["usage"],
    operation_id="getUsage",
)
def get_usage(
    period: Annotated[Literal["day", "month"], Query(description="Bucket size.")] = "day",
    start: Annotated[AwareDatetime | None, Query(description="Default: 30 days (or 12 months) back.")] = None,
    end: Annotated[AwareDatetime | None, Query(description="Default: now.")] = None,
) -> Usage:
    return api().service.usage(principal(), period, start, end)


# --- webhooks: registered endpoints and the key's signing secret ---------------------------------------

WEBHOOK_ID = Annotated[str, Path(description="An endpoint id from `POST /v1/webhooks` (`wh_…`).")]
# No pattern on the id: a malformed id gets the same 404 as another key's or a missing one.


@app.post(
    "/v1/webhooks",
    summary="Register an endpoint for this key's job events",
    description="Every event of this key's jobs that matches `events` is POSTed to `url`, signed per "
    "Standard Webhooks with the endpoint's own secret, shown in this answer only.",
    tags=["webhooks"],
    operation_id="createWebhook",
    responses=_responses(201, WebhookCreated, "Endpoint registered"),
)
def create_webhook():  # -> Response (declared above)
    raw = load_request_json(app.current_event.decoded_body or "")
    try:
        request = WebhookCreate.model_validate(raw)
    except ValidationError as exc:
        raise invalid_request(exc) from exc
    return json_response(201, api().webhooks.create(principal(), request))


@app.get(
    "/v1/webhooks",
    summary="This key's endpoints (secrets not shown)",
    tags=["webhooks"],
    operation_id="listWebhooks",
)
def list_webhooks() -> WebhookList:
    return api().webhooks.list_endpoints(principal())


@app.get(
    "/v1/webhooks/secret",
    summary="This key's signing secret for per-request webhooks",
    description="The `notify.webhook_url` of this key's jobs is signed with this secret (created on "
    "first use). Events carry `api_key_id`, so one receiver can serve several keys.",
    tags=["webhooks"],
    operation_id="getWebhookSecret",
)
def get_webhook_secret() -> WebhookSecret:
    return api().webhooks.key_secret(principal())


@app.post(
    "/v1/webhooks/secret/rotate",
    summary="Replace this key's signing secret",
    description="Deliveries carry both signatures until `previous_secret_expires_at`.",
    tags=["webhooks"],
    operation_id="rotateWebhookSecret",
)
def rotate_webhook_secret() -> WebhookSecret:
    return api().webhooks.rotate_key_secret(principal())


@app.get("/v1/webhooks/<webhook_id>", summary="One endpoint", tags=["webhooks"], operation_id="getWebhook")
def get_webhook(webhook_id: WEBHOOK_ID) -> WebhookView:
    return api().webhooks.get(principal(), webhook_id)


@app.delete(
    "/v1/webhooks/<webhook_id>",
    summary="Remove an endpoint",
    tags=["webhooks"],
    operation_id="deleteWebhook",
    responses={204: {"description": "Endpoint removed"}},
)
def delete_webhook(webhook_id: WEBHOOK_ID):  # -> Response (declared above)
    api().webhooks.delete(principal(), webhook_id)
    return Response(status_code=204, body="")


@app.post(
    "/v1/webhooks/<webhook_id>/rotate",
    summary="Replace an endpoint's signing secret",
    description="Answers the new secret (shown once). Deliveries carry both signatures until "
    "`previous_secret_expires_at`.",
    tags=["webhooks"],
    operation_id="rotateWebhook",
)
def rotate_webhook(webhook_id: WEBHOOK_ID) -> WebhookCreated:
    return api().webhooks.rotate(principal(), webhook_id)


# --- audit trail ----------------------------------------------------------------------------------


@app.get(
    "/v1/audit",
    summary="This key's audit trail: who did what, when, from where",
    description="Append-only entries for this key only: key created/revoked, jobs submitted and "
    "cancelled, uploads created, download URLs issued, webhook endpoints changed. Each names the "
    "source IP and API Gateway request id. Entries are kept `audit_retention_days` (default 365).",
    tags=["audit"],
    operation_id="getAuditTrail",
)
def get_audit(
    action: Annotated[
        str | None,
        Query(max_length=512, description="Only these actions (comma-separated, e.g. job.submitted)."),
    ] = None,
    start: Annotated[AwareDatetime | None, Query(description="From this time (inclusive).")] = None,
    end: Annotated[AwareDatetime | None, Query(description="Before this time (exclusive).")] = None,
    order: Annotated[Literal["newest", "oldest"], Query(description="Which end to start from.")] = "newest",
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=2048, description="`next_cursor` of the last page.")
    ] = None,
) -> AuditTrail:
    return api().service.audit_trail(principal(), action, start, end, order, limit, cursor)


@app.get("/health", summary="Liveness", tags=["meta"], operation_id="health")
def health() -> Health:
    return api().service.health()


@app.get("/openapi.json", include_in_schema=False)
def openapi_json():  # -> Response (declared above)
    from talkstack.api.openapi import openapi_document

    return Response(200, "application/json", json.dumps(openapi_document(), indent=2))


@app.get("/docs", include_in_schema=False)
def docs():  # -> Response (declared above)
    from talkstack.api.openapi import docs_page

    return Response(200, "text/html", docs_page())


# --- the gateway part ---------------------------------------------------------------------------------


def _header(event: dict[str, Any], name: str) -> str:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return value or ""
    return ""


def _raw_body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("latin-1")


def _form_to_json(event: dict[str, Any], caller: Principal) -> tuple[dict[str, Any], list[PendingFile]]:
    """A multipart generation request → the same request as JSON, its files named by upload ids, and
    the files themselves, checked but not stored: ApiService.submit stores them only once the request
    passed its checks and is not an idempotent replay (which names the same ids, so its body is the
    original's). No I/O here."""
    raw = _raw_body(event)
    request_json, files = parse_form(raw, _header(event, "content-type"))
    if request_json is None:
        raise TalkstackError(ErrorCode.INVALID_REQUEST, "multipart request without a `request` field (JSON)")
    document = load_request_json(request_json)
    if not isinstance(document, dict):
        raise TalkstackError(ErrorCode.INVALID_REQUEST, "request: expected a JSON object")
    inputs = document.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise TalkstackError(ErrorCode.INVALID_REQUEST, "inputs: expected a JSON object", field="inputs")
    inputs = dict(inputs)
    idempotency_key = _header(event, "idempotency-key") or None
    pending = []
    for field, (filename, content_type, data) in files.items():
        if field in inputs:
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST, f"inputs.{field}: given both as a file and in `request`"
            )
        file = api().uploads.pending(caller, field, filename, content_type, data, idempotency_key)
        inputs[field] = file.upload_id
        pending.append(file)
    document["inputs"] = inputs
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    headers["Content-Type"] = "application/json"
    return {**event, "body": json.dumps(document), "isBase64Encoded": False, "headers": headers}, pending


def with_origin(caller: Principal, event: dict[str, Any]) -> Principal:
    """The caller plus where the request came from, for the audit trail: API Gateway's source IP
    (the TCP peer it saw, not a client-supplied X-Forwarded-For) and its request id."""
    context = event.get("requestContext") or {}
    source_ip = (context.get("identity") or {}).get("sourceIp") or "unknown"
    return replace(caller, source_ip=str(source_ip), request_id=context.get("requestId"))


def _proxy_error(exc: TalkstackError) -> dict[str, Any]:
    return {
        "statusCode": status_for(exc.code),
        "headers": {
            "Content-Type": "application/json",
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Expose-Headers": "Retry-After,WWW-Authenticate",
            **error_headers(exc),
        },
        "body": error_body(exc.code, exc.message, json.loads(json.dumps(exc.details, default=str))),
        "isBase64Encoded": False,
    }


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An API Gateway (REST, proxy integration) event → its response."""
    path, method = event.get("path") or "/", (event.get("httpMethod") or "GET").upper()
    if path not in PUBLIC_PATHS and method != "OPTIONS":
        try:
            parts = api()
            if context is not None:
                parts.service.idempotency.register_lambda_context(context)
            caller = with_origin(parts.keys.authenticate(event.get("headers") or {}), event)
            parts.rate.hit(caller)
            pending: list[PendingFile] = []
            if path in GENERATE_PATHS and _header(event, "content-type").lower().startswith("multipart/"):
                if GENERATE_PATHS[path] in NO_FORM_TASKS:
                    raise TalkstackError(
                        ErrorCode.UNSUPPORTED_MEDIA,
                        f"{path} takes JSON only: name a composition's media by upload id "
                        "(POST /v1/uploads) or s3:// reference in its scenes",
                    )
                event, pending = _form_to_json(event, caller)
            elif body := event.get("body"):
                # Every JSON body, before any route (or powertools' body validation) parses it: size
                # and nesting depth, so no parser can recurse into a RecursionError (a 500).
                request_text(_raw_body(event) if event.get("isBase64Encoded") else body)
        except TalkstackError as exc:
            return _proxy_error(exc)
        app.append_context(principal=caller, pending_files=pending)
    return app.resolve(event, context)
