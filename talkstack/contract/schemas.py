"""JSON Schemas generated from the contract models, for clients that do not use Python.

`schemas/` in the repository holds the rendered documents; a test fails when they drift from the
models (`make schemas` rewrites them). Rendering is deterministic: sorted keys, 2-space indent,
trailing newline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from talkstack.contract.composition import JOB_REQUEST_ADAPTER
from talkstack.contract.events import JobEvent
from talkstack.contract.record import JobRecord
from talkstack.contract.template import TemplateDocument
from talkstack.contract.worker import MARKER_ADAPTER, WORKER_TASK_ADAPTER

DIALECT = "https://json-schema.org/draft/2020-12/schema"

_REQUEST_DESCRIPTION = (
    "A talkstack job request: one of three task kinds (avatar, voice, video), selected by `task`. "
    "Media inputs are s3://bucket/key URIs or keys relative to the folder holding the manifest. "
    "Unknown fields are rejected. The parser (talkstack.contract.parse_job_request) also accepts the "
    "MultiTalk API v0 manifest (the original MultiTalk API's legacy S3 manifest shape) "
    "{input: {audio_s3_url, reference_image_s3_url, prompt}, "
    "output: {s3_bucket, s3_prefix, filename}, options: {resolution, video_length, turbo_mode, "
    "webhook_url}} and converts it to an avatar request; this schema describes the native shape only."
)
_RECORD_DESCRIPTION = (
    "The state of one talkstack job: status, progress, steps, timings, and the result or the error."
)
_EVENT_DESCRIPTION = (
    "A talkstack job event (SNS message and webhook body), one shape for every type: job.queued, "
    "job.started, job.progress, job.completed (with result), job.failed (with error), job.cancelled."
)

_TASK_DESCRIPTION = (
    "A talkstack worker task (protocol talkstack.worker/1): everything a worker needs, as pre-signed "
    "URLs (GET for inputs and the cancel flag, PUT for outputs and the three markers). One shape per "
    "step kind, told apart by `step`; `options` are that step's. Any worker that speaks it — a Modal "
    "container, a local process, your own GPU box — can serve talkstack's engine steps."
)
_MARKER_DESCRIPTION = (
    "What a worker PUTs to a task's marker URLs: a progress marker (the heartbeat), then exactly one "
    "result or error marker. The marker URL says which kind it is."
)


_TEMPLATE_DESCRIPTION = (
    "A talkstack template (JSON or YAML): a composition (scenes, options) whose strings may hold "
    "{{name}} placeholders, the typed variables they name (text, image, video, audio, avatar, voice, "
    "colour) with defaults, an example set of variables, and the licences of the bundled files "
    "(asset:<path>) it uses. See docs/templates.md."
)


def _document(schema: dict[str, Any], title: str, description: str) -> dict[str, Any]:
    return {"$schema": DIALECT, **schema, "title": title, "description": description}


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema document."""
    return {
        "job-request.schema.json": _document(
            JOB_REQUEST_ADAPTER.json_schema(), "JobRequest", _REQUEST_DESCRIPTION
        ),
        "job-record.schema.json": _document(JobRecord.model_json_schema(), "JobRecord", _RECORD_DESCRIPTION),
        "job-event.schema.json": _document(JobEvent.model_json_schema(), "JobEvent", _EVENT_DESCRIPTION),
        "worker-task.schema.json": _document(
            WORKER_TASK_ADAPTER.json_schema(), "WorkerTask", _TASK_DESCRIPTION
        ),
        "worker-marker.schema.json": _document(
            MARKER_ADAPTER.json_schema(), "WorkerMarker", _MARKER_DESCRIPTION
        ),
        "template.schema.json": _document(
            TemplateDocument.model_json_schema(), "TemplateDocument", _TEMPLATE_DESCRIPTION
        ),
    }


def render_schema(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(directory: Path, documents: dict[str, dict[str, Any]] | None = None) -> list[Path]:
    """Write every document (default: the contract's) into `directory` (created if needed); returns
    the paths written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in (documents or schema_documents()).items():
        path = directory / name
        path.write_text(render_schema(document), encoding="utf-8")
        written.append(path)
    return written


def stale_schemas(directory: Path, documents: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Names of documents missing from `directory` or differing from the models."""
    directory = Path(directory)
    stale = []
    for name, document in (documents or schema_documents()).items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != render_schema(document):
            stale.append(name)
    return stale
