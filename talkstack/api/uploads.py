"""Uploads: pre-signed PUT URLs for media, and the `upl_…` ids generation requests use instead of S3 keys.

An upload is an item `UPLOAD#<id>` (owner, bucket, key, type, size; expired by TTL) plus an object
under `uploads/<key id>/<upload id>/<filename>` in the input bucket. The URL is signed for the
declared Content-Type and Content-Length, so S3 itself refuses a different type or size; the
validate step checks the object again (it exists, it is not empty, it is within its limit) when a
job uses it. Only the key that created an upload can use it.
"""

from __future__ import annotations

import io
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import multipart

from talkstack.api.keys import Principal
from talkstack.api.models import UploadRequest, UploadTicket
from talkstack.contract.fields import MediaRef
from talkstack.contract.record import utc_now
from talkstack.contract.request import JobRequestBase
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.aws import UrlSigner
from talkstack.settings import MediaLimits

UPLOAD_PREFIX = "uploads/"
URL_EXPIRY_S = 3600
UPLOAD_TTL_S = 7 * 24 * 3600
MAX_FORM_BYTES = 4 * 1024 * 1024
"""Multipart bodies pass through API Gateway and Lambda (6 MB event, base64): bigger media go
through `POST /v1/uploads`."""

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
AUDIO_TYPES = frozenset(
    {"audio/wav", "audio/x-wav", "audio/wave", "audio/mpeg", "audio/mp4", "audio/x-m4a", "audio/flac"}
    | {"audio/ogg"}
)
VIDEO_TYPES = frozenset({"video/mp4"})
MEDIA_TYPES = IMAGE_TYPES | AUDIO_TYPES | VIDEO_TYPES


def new_upload_id() -> str:
    return "upl_" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(24))


def size_limit(content_type: str, limits: MediaLimits) -> int:
    return limits.max_image_bytes if content_type in IMAGE_TYPES else limits.max_audio_bytes


@dataclass(frozen=True)
class Upload:
    upload_id: str
    owner: str
    bucket: str
    key: str
    content_type: str


class Uploads:
    def __init__(
        self,
        table: str,
        ddb: Any,
        s3: Any,
        bucket: str,
        limits: MediaLimits,
        presign: UrlSigner | None = None,
    ) -> None:
        self.table, self.ddb, self.s3, self.bucket, self.limits = table, ddb, s3, bucket, limits
        # URLs are signed for the bucket's own region (aws.RegionalPresigner); `s3` stores bytes.
        self.presign: UrlSigner = presign or s3

    def create(self, principal: Principal, request: UploadRequest) -> UploadTicket:
        content_type = request.content_type.split(";")[0].strip().lower()
        if content_type not in MEDIA_TYPES:
            raise TalkstackError(
                ErrorCode.UNSUPPORTED_MEDIA,
                f"content_type: {content_type!r} is not a media type the engines read "
                f"({', '.join(sorted(MEDIA_TYPES))})",
                field="content_type",
            )
        limit = size_limit(content_type, self.limits)
        if request.bytes > limit:
            code = ErrorCode.IMAGE_TOO_LARGE if content_type in IMAGE_TYPES else ErrorCode.INPUT_TOO_LARGE
            raise TalkstackError(
                code,
                f"bytes: {request.bytes / 1e6:.1f} MB; the limit for {content_type} is {limit / 1e6:.0f} MB",
                field="bytes",
                max_bytes=limit,
            )
        upload = self._record(principal, request.filename, content_type, request.bytes)
        url = self.presign.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": upload.bucket,
                "Key": upload.key,
                "ContentType": content_type,
                "ContentLength": request.bytes,
            },
            ExpiresIn=URL_EXPIRY_S,
        )
        return UploadTicket(
            upload_id=upload.upload_id,
            url=url,
            headers={"Content-Type": content_type, "Content-Length": str(request.bytes)},
            expires_at=utc_now() + timedelta(seconds=URL_EXPIRY_S),
            max_bytes=limit,
        )

    def store_bytes(self, principal: Principal, filename: str, content_type: str, data: bytes) -> Upload:
        """A small file that came inside a multipart request: stored now, used like an upload."""
        content_type = content_type.split(";")[0].strip().lower()
        if content_type not in MEDIA_TYPES:
            raise TalkstackError(
                ErrorCode.UNSUPPORTED_MEDIA, f"{filename}: {content_type!r} is not a supported media type"
            )
        upload = self._record(principal, filename, content_type, len(data))
        self.s3.put_object(Bucket=upload.bucket, Key=upload.key, Body=data, ContentType=content_type)
        return upload

    def _record(self, principal: Principal, filename: str, content_type: str, size: int) -> Upload:
        upload_id = new_upload_id()
        safe_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename)[-100:] or "file"
        upload = Upload(
            upload_id,
            principal.key_id,
            self.bucket,
            f"{UPLOAD_PREFIX}{principal.key_id}/{upload_id}/{safe_name}",
            content_type,
        )
        self.ddb.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": f"UPLOAD#{upload_id}"},
                "sk": {"S": "UPLOAD"},
                "owner": {"S": principal.key_id},
                "bucket": {"S": upload.bucket},
                "key": {"S": upload.key},
                "content_type": {"S": content_type},
                "bytes": {"N": str(size)},
                "expires_at": {"N": str(int(utc_now().timestamp()) + UPLOAD_TTL_S)},
            },
        )
        return upload

    def get(self, principal: Principal, upload_id: str) -> Upload | None:
        item = self.ddb.get_item(
            TableName=self.table,
            Key={"pk": {"S": f"UPLOAD#{upload_id}"}, "sk": {"S": "UPLOAD"}},
            ConsistentRead=True,
        ).get("Item")
        if not item or item["owner"]["S"] != principal.key_id:
            return None  # another key's upload is as good as none
        return Upload(
            upload_id, principal.key_id, item["bucket"]["S"], item["key"]["S"], item["content_type"]["S"]
        )

    def resolve(self, principal: Principal, request: JobRequestBase) -> JobRequestBase:
        """Upload ids → `s3://` refs. A relative key that is not an upload id means nothing in an API
        request (there is no manifest folder to resolve it against)."""
        resolved: dict[str, MediaRef] = {}
        for name, ref in request.media_inputs().items():
            if not ref.is_relative:
                continue
            field = f"inputs.{name}"
            if not ref.key.startswith("upl_"):
                raise TalkstackError(
                    ErrorCode.INVALID_REQUEST,
                    f"{field}: give s3://bucket/key or an upload id from POST /v1/uploads (got {ref.key!r})",
                    field=field,
                )
            upload = self.get(principal, ref.key)
            if upload is None:
                raise TalkstackError(
                    ErrorCode.INPUT_NOT_FOUND, f"{field}: no upload {ref.key!r} for this key", field=field
                )
            resolved[name] = MediaRef(upload.bucket, upload.key)
        if not resolved:
            return request
        return request.model_copy(update={"inputs": request.inputs.model_copy(update=resolved)})


def parse_form(body: bytes, content_type: str) -> tuple[str | None, dict[str, tuple[str, str, bytes]]]:
    """A multipart/form-data body → (the `request` field's JSON text, {field: (filename, type, bytes)})."""
    _, options = multipart.parse_options_header(content_type)
    boundary = options.get("boundary")
    if not boundary:
        raise TalkstackError(ErrorCode.INVALID_REQUEST, "multipart/form-data without a boundary")
    if len(body) > MAX_FORM_BYTES:
        raise TalkstackError(
            ErrorCode.INPUT_TOO_LARGE,
            f"multipart body is {len(body) / 1e6:.1f} MB; send at most {MAX_FORM_BYTES // 2**20} MB this way "
            "and bigger files through POST /v1/uploads",
        )
    request_json: str | None = None
    files: dict[str, tuple[str, str, bytes]] = {}
    try:
        parser = multipart.MultipartParser(io.BytesIO(body), boundary, len(body), part_limit=16)
        for part in parser:
            if part.filename is None:
                if part.name == "request":
                    request_json = part.value
                else:
                    raise TalkstackError(
                        ErrorCode.INVALID_REQUEST,
                        f"unexpected form field {part.name!r}: send the JSON body as `request` "
                        "and media as files",
                    )
            else:
                files[part.name] = (part.filename, part.content_type or "application/octet-stream", part.raw)
    except multipart.MultipartError as exc:
        raise TalkstackError(ErrorCode.INVALID_REQUEST, f"malformed multipart/form-data: {exc}") from exc
    return request_json, files
