"""The single door in: `parse_job_request` accepts the native request and the MultiTalk API v0
manifest, and turns every failure into one TalkstackError(INVALID_REQUEST) with a one-line message
naming the field.

The MultiTalk API v0 manifest is the S3 manifest shape of the original MultiTalk API:
`{input: {audio_s3_url, reference_image_s3_url, prompt}, output: {s3_bucket, s3_prefix, filename},
options: {resolution, video_length, turbo_mode, webhook_url}}`. It always means an avatar job and is
converted to the native `AvatarRequest`; its error messages keep the tag "[legacy request shape]",
the wording clients have already seen.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationError,
)

from talkstack.contract.composition import JOB_REQUEST_ADAPTER, CompositionRequest
from talkstack.contract.fields import (
    MAX_AVATAR_SECONDS,
    MAX_REQUEST_BYTES,
    TASK_KINDS,
    Filename,
    KeyPrefix,
    MediaRef,
    Prompt,
    S3Bucket,
    StrictModel,
    WebhookUrl,
)
from talkstack.contract.request import (
    AvatarRequest,
    JobRequestBase,
    VideoRequest,
    VoiceRequest,
)
from talkstack.errors import ErrorCode, TalkstackError

# ---------------------------------------------------------------------------------------------
# MultiTalk API v0 manifest (the original API's shape)
# ---------------------------------------------------------------------------------------------


class _V0Input(StrictModel):
    audio_s3_url: MediaRef
    reference_image_s3_url: MediaRef
    prompt: Prompt | None = None


class _V0Output(StrictModel):
    s3_bucket: S3Bucket | None = None
    s3_prefix: KeyPrefix | None = None
    filename: Filename | None = None


class _V0Options(StrictModel):
    resolution: Literal["480p", "720p"] | None = None
    video_length: Annotated[float, Field(gt=0, le=MAX_AVATAR_SECONDS)] | None = None
    """Seconds; becomes options.max_duration_s."""
    turbo_mode: bool = False
    webhook_url: WebhookUrl | None = None


class MultiTalkV0Manifest(StrictModel):
    """A manifest of the original MultiTalk API (always an avatar job); `to_native` maps it onto
    `AvatarRequest`."""

    input: _V0Input
    output: _V0Output
    options: _V0Options = Field(default_factory=_V0Options)

    def to_native(self) -> AvatarRequest:
        native: dict[str, Any] = {
            "task": "avatar",
            "inputs": {"image": self.input.reference_image_s3_url, "audio": self.input.audio_s3_url},
            "options": {"turbo": self.options.turbo_mode},
            "output": {
                "bucket": self.output.s3_bucket,
                "prefix": self.output.s3_prefix,
                "filename": self.output.filename,
            },
        }
        if self.input.prompt is not None:
            native["options"]["prompt"] = self.input.prompt
        if self.options.resolution is not None:
            native["options"]["resolution"] = self.options.resolution
        if self.options.video_length is not None:
            native["options"]["max_duration_s"] = self.options.video_length
        if self.options.webhook_url is not None:
            native["notify"] = {"webhook_url": self.options.webhook_url}
        return AvatarRequest.model_validate(native)


def is_multitalk_v0_manifest(data: Mapping[str, Any]) -> bool:
    """A MultiTalk API v0 manifest has `input` (singular) and no `task`."""
    return "task" not in data and "input" in data


# ---------------------------------------------------------------------------------------------
# Parsing and error reporting
# ---------------------------------------------------------------------------------------------


_NAMED_MESSAGE_RE = re.compile(r"^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*): (.+)$")


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _human(error: Mapping[str, Any]) -> str:
    kind, msg = error["type"], str(error["msg"])
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return "unknown field (check the spelling; extra fields are not allowed)"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"must be one of {', '.join(map(repr, TASK_KINDS))}"
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if len(msg) > 1 and msg[0].isupper() and msg[1].islower():
        msg = msg[0].lower() + msg[1:]
    return " ".join(msg.split())


def _invalid(message: str, errors: list[dict[str, Any]]) -> TalkstackError:
    return TalkstackError(ErrorCode.INVALID_REQUEST, message, errors=errors)


def _from_validation_error(exc: ValidationError, tag: str | None, v0_manifest: bool) -> TalkstackError:
    errors: list[dict[str, Any]] = []
    for raw in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = tuple(raw["loc"])
        if tag is not None and loc[:1] == (tag,):
            loc = loc[1:]
        if raw["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = ("task",)
        field, human = _field_path(loc), _human(raw)
        if (named := _NAMED_MESSAGE_RE.match(human)) and raw["type"] == "value_error":
            # cross-field checks name their field in the message ("output.filename: ...")
            named_field, human = named.groups()
            field = f"{field}.{named_field}" if field else named_field
        errors.append({"field": field, "loc": list(loc), "type": raw["type"], "message": human})
    first = errors[0]
    message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    if v0_manifest:
        message += " [legacy request shape]"  # unchanged wording: clients may match on it
    return _invalid(message, errors)


def invalid_request(exc: ValidationError) -> TalkstackError:
    """Any pydantic ValidationError of a request document → INVALID_REQUEST in the same one-line form."""
    return _from_validation_error(exc, None, False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a request document may have. A real request is a handful of
levels deep; Python's parser and encoders recurse once per level (a RecursionError near 1000), so
depth is checked before parsing, by a scan that does not recurse."""

# One token at a time, left to right: a string (to its closing quote, or to the end if it has none:
# never a retry from inside it, so the scan stays linear on hostile text) or a bracket.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def _too_deep() -> TalkstackError:
    return _invalid(f"request: nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects", [])


def check_json_depth(text: str) -> None:
    """INVALID_REQUEST if JSON text nests deeper than MAX_JSON_DEPTH (or brackets never balance out
    that far); linear, no recursion, no parsing."""
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        first = token.group()[0]
        if first in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise _too_deep()
        elif first in "]}":
            depth -= 1


def check_object_depth(obj: Any) -> None:
    """The same limit for a document that arrived already parsed (a Step Functions execution input)."""
    stack = [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        if depth + 1 > MAX_JSON_DEPTH:
            raise _too_deep()
        stack.extend((child, depth + 1) for child in children)


def request_text(data: str | bytes | bytearray) -> str:
    """A request document's text, checked before any parser sees it: at most MAX_REQUEST_BYTES, in
    UTF-8 (or the UTF-16/32 that json.loads also detects), nested at most MAX_JSON_DEPTH levels."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > MAX_REQUEST_BYTES:
        raise _invalid(f"request: larger than {MAX_REQUEST_BYTES // 1024} KiB", [])
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode(json.detect_encoding(data), "surrogatepass")
        except UnicodeDecodeError as exc:
            raise _invalid(f"request: not UTF-8 text ({exc.reason} at byte {exc.start})", []) from exc
    check_json_depth(data)
    return data


def load_request_json(data: str | bytes | bytearray) -> Any:
    """JSON text → object; INVALID_REQUEST naming the line and column of a syntax error."""
    text = request_text(data)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _invalid(
            f"request: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", []
        ) from exc
    except RecursionError as exc:  # unreachable past check_json_depth; never a 500 if it is not
        raise _too_deep() from exc
    except ValueError as exc:
        raise _invalid(f"request: invalid JSON ({exc})", []) from exc


def parse_job_request(
    data: Mapping[str, Any]
    | str
    | bytes
    | bytearray
    | AvatarRequest
    | VoiceRequest
    | VideoRequest
    | CompositionRequest,
) -> AvatarRequest | VoiceRequest | VideoRequest | CompositionRequest:
    """Validate a native request or a MultiTalk API v0 manifest (dict or JSON text).

    Raises TalkstackError(INVALID_REQUEST) with a one-line message naming the first bad field, and
    `details["errors"]`: a JSON-safe list of {field, loc, type, message}.
    """
    if isinstance(data, JobRequestBase):
        return data  # type: ignore[return-value]
    if isinstance(data, str | bytes | bytearray):
        obj = load_request_json(data)
    else:
        check_object_depth(data)
        obj = data
    if not isinstance(obj, Mapping):
        raise _invalid(f"request: expected a JSON object, got {type(obj).__name__}", [])
    v0_manifest = is_multitalk_v0_manifest(obj)
    tag = obj.get("task") if isinstance(obj.get("task"), str) else None
    try:
        if v0_manifest:
            return MultiTalkV0Manifest.model_validate(obj).to_native()
        if "task" not in obj:
            field_error = {"field": "task", "loc": ["task"], "type": "missing", "message": "field required"}
            raise _invalid(f"task: field required (one of {', '.join(map(repr, TASK_KINDS))})", [field_error])
        return JOB_REQUEST_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise _from_validation_error(exc, tag, v0_manifest) from exc


def with_default_models(
    request: AvatarRequest | VoiceRequest | VideoRequest | CompositionRequest, defaults: Mapping[str, str]
) -> AvatarRequest | VoiceRequest | VideoRequest | CompositionRequest:
    """`request` with a deployment's default models (task → model id) wherever it names none: its
    own choice always wins. Validated again, so a default that does not suit the request fails
    exactly as the same model named in it would."""
    data = request.model_dump(mode="json", exclude_unset=True)
    options = data["options"] = data.get("options") or {}
    slots = [(options, request.task)]
    if isinstance(request, AvatarRequest) and request.needs_voice_step:
        voice = options["voice"] = options.get("voice") or {}  # an explicit null names no model either
        slots.append((voice, "voice"))
    missing = [(slot, task) for slot, task in slots if "model" not in slot and task in defaults]
    if not missing:
        return request
    for slot, task in missing:
        slot["model"] = defaults[task]
    return parse_job_request(data)
