"""The OpenAPI 3.1 document, generated from the code: powertools builds paths, parameters and
responses from the routes; the request bodies (JSON, or multipart with files) come from the same
pydantic models the handlers parse with, the error responses from ErrorBody, and the security
schemes from how `handle` authenticates. `schemas/openapi.json` is this document, kept in sync by
a test; the running API serves it at /openapi.json and renders it at /docs.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler.openapi.models import (
    APIKey,
    APIKeyIn,
    HTTPBearer,
    License,
    Server,
    Tag,
)
from pydantic.json_schema import models_json_schema

from talkstack import __version__
from talkstack.api.app import GENERATE_PATHS, NO_FORM_TASKS, PUBLIC_PATHS, app
from talkstack.api.models import GENERATE_BODIES, ErrorBody, TemplateGenerate, UploadRequest, WebhookCreate
from talkstack.api.uploads import MAX_FORM_BYTES

TITLE = "talkstack API"
DESCRIPTION = """Talking-avatar videos, cloned voices and text-to-video clips, rendered on your own
AWS account (GPU work on Modal).

Authenticate with `Authorization: Bearer <key>` or `x-api-key: <key>` (`talkstack keys create`).
Generation answers `202` with a job id at once; poll `GET /v1/jobs/{job_id}`, or receive signed
webhooks (`notify.webhook_url`). Media are `s3://bucket/key` references the stack may read, upload
ids from `POST /v1/uploads`, or, for small files, parts of a `multipart/form-data` request.

Every error is `{"error": {"code", "message", "details"}}`; the codes are the job contract's.
`429` carries `Retry-After`. `Idempotency-Key` makes a generation request safe to retry."""
SECURITY = [{"bearerAuth": []}, {"apiKey": []}]
REF = "#/components/schemas/{model}"
ERROR_DESCRIPTIONS = {
    400: "The request is malformed (INVALID_REQUEST)",
    401: "No key, or a key that is not valid (UNAUTHORIZED)",
    403: "An input the stack may not read (INPUT_FORBIDDEN)",
    404: "No such job for this key, or no such route (NOT_FOUND)",
    409: "The job already finished, or the same Idempotency-Key is still in flight (CONFLICT)",
    413: "An input over its size limit",
    415: "A media type the engines do not read (UNSUPPORTED_MEDIA)",
    422: "A well-formed request that cannot run: an unusable input, a model this stack "
    "cannot run, or an Idempotency-Key reused with another body",
    429: "Over the key's requests per minute or concurrent jobs (RATE_LIMITED); see Retry-After",
    500: "An unexpected error on our side (GENERATION_FAILED); it was logged",
}
INPUT_NOT_FOUND_404 = (
    "An input that does not exist, or that this key may not read: one answer (INPUT_NOT_FOUND)"
)
"""A generation request's 404 (talkstack/pipeline/tenancy.py)."""
SUBMIT_PATHS = frozenset({"/v1/templates/{template_id}/generate", "/v1/jobs/{job_id}/render"})
"""Routes that submit a job as the generation endpoints do (their checks, limits and answers)."""
TEMPLATE_ERRORS = {
    404: "No such template for this key (another key's answers the same) (NOT_FOUND)",
    409: "A bundled template's id: only this key's own templates can be written or deleted (CONFLICT)",
    422: "A template document that does not hold together: details.errors / the message list every "
    "problem (TEMPLATE_INVALID)",
}
RENDER_409 = "The job is not a composition preview, or it failed (CONFLICT)"
GENERATE_422 = (
    "Variables that do not fit the template: details.problems lists every one "
    "(TEMPLATE_VARIABLES_INVALID), or a composition that cannot run"
)
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _operation_errors(path: str, method: str) -> list[int]:
    codes = [400, 401, 429, 500]
    if "{job_id}" in path:
        codes.append(404)
    if path.endswith("/cancel"):
        codes.append(409)
    if path in GENERATE_PATHS or path in SUBMIT_PATHS:
        codes += [403, 404, 409, 413, 415, 422]
    if "{template_id}" in path:
        codes.append(404)  # another key's or a missing template (and, for an id no route takes, no route)
        if method in ("put", "delete"):
            codes.append(409)  # a bundled template's id
        if method == "put":
            codes.append(422)  # TEMPLATE_INVALID
    if path == "/v1/uploads":
        codes += [413, 415, 422]
    if "{webhook_id}" in path:
        codes.append(404)
    if path.startswith("/v1/webhooks") and method == "post":
        codes.append(409)  # the per-key endpoint limit; a rotation racing another
    return sorted(set(codes))


def _merge_components(target: dict[str, Any], extra: dict[str, Any]) -> None:
    for name, schema in extra.items():
        if name in target and target[name] != schema:
            # Validation and serialization schemas of one model can differ (defaults are required
            # on output); keep both under distinct names rather than lose either.
            name = f"{name}Input"
        target[name] = schema


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    schema = app.get_openapi_json_schema(
        title=TITLE,
        version=__version__,
        description=DESCRIPTION,
        servers=[Server(url="/", description="this deployment (the API Gateway stage, or `talkstack up`)")],
        license_info=License(name="Apache-2.0", identifier="Apache-2.0"),
        tags=[
            Tag(name="generate", description="Start jobs"),
            Tag(name="uploads", description="Put media where jobs can read them"),
            Tag(name="jobs", description="Follow, list and cancel jobs"),
            Tag(name="templates", description="Finished videos from templates with variables"),
            Tag(name="models", description="What this stack can run"),
            Tag(name="usage", description="What this key used"),
            Tag(name="webhooks", description="Where this key's job events go, and how they are signed"),
            Tag(name="meta", description="Service health"),
        ],
        security_schemes={
            "bearerAuth": HTTPBearer(description="An API key as a bearer token."),
            "apiKey": APIKey(name="x-api-key", in_=APIKeyIn.header, description="The same key, as a header."),
        },
        security=SECURITY,
    )
    doc = json.loads(schema)
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    bodies = [
        (model, "validation")
        for model in (*GENERATE_BODIES.values(), UploadRequest, WebhookCreate, TemplateGenerate)
    ]
    refs, definitions = models_json_schema(bodies, ref_template=REF)
    _merge_components(components, definitions.get("$defs", {}))
    error_ref, error_defs = models_json_schema([(ErrorBody, "serialization")], ref_template=REF)
    _merge_components(components, error_defs.get("$defs", {}))
    error_schema = error_ref[(ErrorBody, "serialization")]

    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # powertools' own validation error shape: ErrorBody replaces it
            if path in PUBLIC_PATHS:
                operation["security"] = []
                continue
            model = GENERATE_BODIES.get(GENERATE_PATHS.get(path, "")) or (
                UploadRequest if path == "/v1/uploads" else WebhookCreate if path == "/v1/webhooks" else None
            )
            if model is not None and method == "post":
                operation["requestBody"] = _request_body(path, refs[(model, "validation")])
            if path == "/v1/templates/{template_id}/generate":
                operation["requestBody"] = _request_body(path, refs[(TemplateGenerate, "validation")])
            if path == "/v1/templates/{template_id}" and method == "put":
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": _template_document_schema(components)}},
                }
            for code in _operation_errors(path, method):
                responses[str(code)] = {
                    "description": _error_description(path, method, code),
                    "content": {"application/json": {"schema": error_schema}},
                    **({"headers": RETRY_AFTER} if code in (409, 429) else {}),
                }
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components.pop("ResponseValidationError", None)
    return doc


TEMPLATE_DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A template document (schemas/template.schema.json); `id` may be left out (the "
    "path's), or must equal the path's.",
}


def _template_document_schema(components: dict[str, Any]) -> dict[str, Any]:
    """The template document's own schema where talkstack.templates exports its model, else a plain
    object (the handler validates it either way)."""
    import talkstack.templates as templates

    model = getattr(templates, "TemplateDocument", None)
    if model is None:
        return TEMPLATE_DOCUMENT_SCHEMA
    refs, definitions = models_json_schema([(model, "validation")], ref_template=REF)
    _merge_components(components, definitions.get("$defs", {}))
    return refs[(model, "validation")]


def _error_description(path: str, method: str, code: int) -> str:
    if path == "/v1/jobs/{job_id}/render" and code == 409:
        return RENDER_409
    if path == "/v1/templates/{template_id}/generate" and code == 422:
        return GENERATE_422
    if "{template_id}" in path and code in TEMPLATE_ERRORS and (code != 404 or not path.endswith("generate")):
        return TEMPLATE_ERRORS[code]
    if code == 404 and (path in GENERATE_PATHS or path in SUBMIT_PATHS):
        extra = " or no such template / job for this key" if path in SUBMIT_PATHS else ""
        return INPUT_NOT_FOUND_404 + extra
    return ERROR_DESCRIPTIONS[code]


def _request_body(path: str, schema_ref: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": schema_ref}}
    if path in GENERATE_PATHS and GENERATE_PATHS[path] not in NO_FORM_TASKS:
        binary = {"type": "string", "format": "binary"}
        content["multipart/form-data"] = {
            "schema": {
                "type": "object",
                "description": f"Small media inline (at most {MAX_FORM_BYTES // 2**20} MB in all): the JSON "
                "body as the `request` field, and each file as a part named after its input "
                "(image, audio, second_audio, reference_voice); `inputs` in `request` may then omit them.",
                "required": ["request"],
                "properties": {
                    "request": {"type": "string", "description": "The JSON request body, as text."},
                    **{name: binary for name in ("image", "audio", "second_audio", "reference_voice")},
                },
            }
        }
    return {"required": True, "content": content}


def published_documents() -> dict[str, dict[str, Any]]:
    """Everything `schemas/` holds: the contract's JSON Schemas and this OpenAPI document."""
    from talkstack.contract.schemas import schema_documents

    return {**schema_documents(), "openapi.json": openapi_document()}


def docs_page() -> str:
    """Swagger UI for the document (powertools ships the UI's files: no CDN needed)."""
    from pathlib import Path

    from aws_lambda_powertools.event_handler import openapi as powertools_openapi
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

    assets = Path(powertools_openapi.__file__).parent / "swagger_ui"
    spec = json.dumps(openapi_document()).replace("</", "<\\/")
    return generate_swagger_html(
        spec,
        (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (assets / "swagger-ui.min.css").read_text(encoding="utf-8"),
        None,
        None,
        False,
    )


__all__ = ["docs_page", "openapi_document", "published_documents"]
