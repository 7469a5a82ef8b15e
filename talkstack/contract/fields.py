"""Field types shared by the request models: S3 references, keys, names, URLs, sizes.

Each rule is checked in Python and mirrored as a JSON Schema pattern for other languages.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    NonNegativeInt,
    PositiveInt,
)
from pydantic_core import PydanticCustomError, core_schema

_INDEX = re.compile(r"\.(\d+)(?=\.|$)")


def client_field(path: str) -> str:
    """A dotted field path as a client writes the field: `scenes.2.source.media` →
    `scenes[2].source.media` (a path without list indexes, `inputs.image`, is unchanged)."""
    return _INDEX.sub(r"[\1]", path)


TaskKind = Literal["avatar", "voice", "video", "composition"]
AvatarModelId = Literal["lite-avatar", "multitalk", "infinitetalk"]
VoiceModelId = Literal["lite-voice", "chatterbox", "indextts2"]
VideoModelId = Literal["ltx-video", "wan2.2-ti2v-5b"]
MatteModelId = Literal["lite-matte", "vitmatte"]
"""Models that cut a person out of their background (the matte step of compositions): `lite-matte`
on a CPU, `vitmatte` on a GPU (docs/backgrounds.md)."""
# Event types live here (not in events.py) because requests subscribe to them.
EventType = Literal[
    "job.queued", "job.started", "job.progress", "job.completed", "job.held", "job.failed", "job.cancelled"
]

TASK_KINDS: tuple[str, ...] = get_args(TaskKind)
AVATAR_MODELS: tuple[str, ...] = get_args(AvatarModelId)
VOICE_MODELS: tuple[str, ...] = get_args(VoiceModelId)
VIDEO_MODELS: tuple[str, ...] = get_args(VideoModelId)
MATTE_MODELS: tuple[str, ...] = get_args(MatteModelId)
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
DEFAULT_MODELS: dict[str, str] = {
    "avatar": "lite-avatar",
    "voice": "lite-voice",
    "video": "ltx-video",
    "matte": "lite-matte",  # the matte step of compositions (options.matte_model); no job task
}

MAX_REQUEST_BYTES = 256 * 1024  # the Step Functions input limit: a bigger request could never run
MAX_KEY_BYTES = 1024  # S3's object key limit
MAX_AVATAR_SECONDS = 600.0

# ---------------------------------------------------------------------------------------------
# S3 keys and media references
# ---------------------------------------------------------------------------------------------

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_URL_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_BAD_KEY_CHAR_RE = re.compile(r"[\\\x00-\x1f\x7f]")
_SEGMENT = r"(?!\.\.?(?:/|$))[^/\\\x00-\x1f\x7f]+"
# The same rules as `_check_key` / `MediaRef.parse`, for non-Python consumers of the JSON Schema.
MEDIA_REF_PATTERN = rf"^(?:s3://[a-z0-9][a-z0-9.-]{{1,61}}[a-z0-9]/|(?![A-Za-z][A-Za-z0-9+.-]*://)){_SEGMENT}(?:/{_SEGMENT})*$"
PREFIX_PATTERN = rf"^(?:{_SEGMENT}(?:/{_SEGMENT})*/?)?$"
FILENAME_PATTERN = r"^(?!\.)[^/\\\x00-\x1f\x7f]*\.[A-Za-z0-9]+$"


def _short(value: str, limit: int = 80) -> str:
    return repr(value if len(value) <= limit else value[: limit - 1] + "…")


def _check_key(key: str, what: str) -> str:
    """Reject keys that could escape their folder or mean something else on another system."""
    if not key:
        raise ValueError(f"{what} must not be empty")
    if key.startswith("/"):
        raise ValueError(f"{what} must be relative, without a leading '/' (got {_short(key)})")
    if _BAD_KEY_CHAR_RE.search(key):
        raise ValueError(f"{what} must not contain backslashes or control characters (got {_short(key)})")
    for segment in key.split("/"):
        if segment in (".", ".."):
            raise ValueError(f"{what} must not contain '.' or '..' segments (got {_short(key)})")
        if not segment:
            raise ValueError(f"{what} must not contain empty segments ('//' or a trailing '/')")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"{what} is longer than {MAX_KEY_BYTES} bytes")
    return key


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A media input: `s3://bucket/key`, or a key relative to the folder that holds the manifest.

    Keys are taken literally (no percent- or '+'-decoding: that belongs to whoever reads S3 event
    notifications). Other URL schemes, absolute paths, empty strings and '.'/'..' segments are
    rejected, so a manifest can only point inside S3 and a relative key can never leave its folder.
    """

    bucket: str | None
    key: str

    @classmethod
    def parse(cls, ref: str) -> MediaRef:
        """Parse a reference string; raises ValueError with a human message."""
        if not isinstance(ref, str):
            raise ValueError(f"expected a string, got {type(ref).__name__}")
        if ref.startswith("s3://"):
            bucket, sep, key = ref[len("s3://") :].partition("/")
            if not _BUCKET_RE.match(bucket):
                raise ValueError(f"{_short(ref)} has an invalid S3 bucket name {_short(bucket)}")
            if not sep or not key:
                raise ValueError(f"{_short(ref)} has no object key (expected s3://bucket/key)")
            return cls(bucket, _check_key(key, "the S3 key"))
        if _URL_SCHEME_RE.match(ref):
            raise ValueError(f"expected s3://bucket/key or a key relative to the manifest, got {_short(ref)}")
        return cls(None, _check_key(ref, "a relative key"))

    @property
    def is_relative(self) -> bool:
        return self.bucket is None

    def resolve(self, manifest_bucket: str, manifest_key: str = "") -> tuple[str, str]:
        """(bucket, key) of this ref. Relative keys resolve against the manifest's folder; a
        `manifest_key` ending in '/' is a folder itself, and "" means the bucket root."""
        if self.bucket is not None:
            return self.bucket, self.key
        folder = manifest_key.rpartition("/")[0]
        key = f"{folder}/{self.key}" if folder else self.key
        if len(key.encode()) > MAX_KEY_BYTES:
            raise ValueError(f"resolved key is longer than {MAX_KEY_BYTES} bytes")
        return manifest_bucket, key

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.bucket is not None else self.key

    @classmethod
    def _coerce(cls, value: Any) -> MediaRef:
        if isinstance(value, MediaRef):
            return value
        try:
            return cls.parse(value)
        except ValueError as exc:
            raise PydanticCustomError("media_ref", str(exc)) from None

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._coerce, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return {
            "type": "string",
            "minLength": 1,
            "maxLength": 5 + 63 + 1 + MAX_KEY_BYTES,
            "pattern": MEDIA_REF_PATTERN,
            "description": "s3://bucket/key, or a key relative to the folder holding the manifest.",
            "examples": ["s3://my-bucket/inputs/face.png", "media/speech.wav"],
        }


def _check_prefix(prefix: str) -> str:
    prefix = prefix.rstrip("/")
    return _check_key(prefix, "the prefix") if prefix else ""


def _check_filename(name: str) -> str:
    if "/" in name or _BAD_KEY_CHAR_RE.search(name):
        raise ValueError(
            f"must be a bare file name without '/', '\\' or control characters (got {_short(name)})"
        )
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or not ext or name.startswith("."):
        raise ValueError(f"must be a file name with an extension, such as 'video.mp4' (got {_short(name)})")
    return name


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_webhook_url(url: str) -> str:
    """Shape only: the private-address (SSRF) check happens when the notify Lambda resolves the host."""
    if any(ch.isspace() for ch in url):
        raise ValueError("must not contain whitespace")
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"is not a valid URL ({exc})") from None
    if parts.scheme not in ("https", "http"):
        raise ValueError(f"must be an https:// URL (got {_short(url)})")
    if not parts.hostname:
        raise ValueError(f"must include a host name (got {_short(url)})")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not embed credentials (user:password@)")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError("must use https (plain http is allowed only for localhost / loopback addresses)")
    return url


def not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be blank")
    return text


def dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


JobId = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9_-]{1,80}$",
        description="Job id: [A-Za-z0-9_-], at most 80 characters (it doubles as the execution name).",
    ),
]
S3Bucket = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
KeyPrefix = Annotated[
    str, AfterValidator(_check_prefix), Field(max_length=900, json_schema_extra={"pattern": PREFIX_PATTERN})
]
Filename = Annotated[
    str,
    AfterValidator(_check_filename),
    Field(min_length=3, max_length=255, json_schema_extra={"pattern": FILENAME_PATTERN}),
]
WebhookUrl = Annotated[
    str,
    AfterValidator(_check_webhook_url),
    Field(max_length=2048, json_schema_extra={"format": "uri", "pattern": "^https?://"}),
]
CallbackId = Annotated[str, Field(min_length=1, max_length=256)]
Metadata = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=64)], Annotated[str, Field(max_length=256)]],
    Field(max_length=16),
]
SpeechText = Annotated[str, Field(min_length=1, max_length=20_000), AfterValidator(not_blank)]
Prompt = Annotated[str, Field(max_length=4000)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
EvenSize = Annotated[int, Field(ge=128, le=4096, multiple_of=2)]
Box = Annotated[
    tuple[NonNegativeInt, NonNegativeInt, PositiveInt, PositiveInt],
    Field(description="[x, y, width, height] in source-image pixels."),
]
Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$", max_length=35)]
Emotion = Annotated[str, Field(min_length=1, max_length=200)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


def check_size_pair(width: int | None, height: int | None, other: str, other_set: bool) -> None:
    if (width is None) != (height is None):
        raise ValueError("give both width and height, or neither")
    if width is not None and other_set:
        raise ValueError(f"give either {other} or width/height, not both")
