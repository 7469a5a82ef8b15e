"""Uploads: pre-signed PUT URLs for media, and the `upl_…` ids generation requests use instead of S3 keys.

An upload is an item `UPLOAD#<id>` (owner, bucket, key, type, size; expired by TTL) plus an object
under `uploads/<key id>/<upload id>/<filename>` in the input bucket. The URL is signed for the
declared Content-Type and Content-Length, so S3 itself refuses a different type or size; the
validate step checks the object again (it exists, it is not empty, it is within its limit) when a
job uses it. Only the key that created an upload can use it.

Every upload counts against its key's storage quota (talkstack.api.limits.UploadQuota) from the
moment its URL is issued or its bytes stored, in the same transaction that writes its record.
Files inside a multipart request are checked and named first (`PendingFile`, no I/O) and stored
only once the request itself passed its checks; with an Idempotency-Key their upload ids derive
from the key, the field and the bytes, so a replay names the same uploads and stores nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import multipart

from talkstack.api.keys import Principal
from talkstack.api.limits import UploadQuota
from talkstack.api.models import UploadRequest, UploadTicket
from talkstack.contract.fields import MediaRef, client_field
from talkstack.contract.record import utc_now
from talkstack.contract.request import JobRequestBase
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.aws import UrlSigner
from talkstack.pipeline.tenancy import UPLOADS_PREFIX, input_not_found
from talkstack.settings import MediaLimits
from talkstack.settings.retention import UPLOAD_RETENTION_DAYS, ttl_seconds

UPLOAD_PREFIX = UPLOADS_PREFIX
URL_EXPIRY_S = 3600
UPLOAD_TTL_S = ttl_seconds(UPLOAD_RETENTION_DAYS)
"""The default life of an upload record: the `uploads/` lifecycle rule's (PipelineConfig's
`upload_retention_days` sets both in a deployed stack)."""
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


def derived_upload_id(
    owner: str, idempotency_key: str, field: str, filename: str, content_type: str, data: bytes
) -> str:
    """The upload id of a file in a multipart request with an Idempotency-Key: the same key, field and
    file always give the same id (so a replay's JSON body is the original's, byte for byte), and
    another key's request can never name it (the owner is hashed in)."""
    digest = hashlib.sha256()
    for part in (owner, idempotency_key, field, filename, content_type):
        digest.update(part.encode() + b"\0")
    digest.update(data)
    return "upl_" + base64.b32encode(digest.digest()).decode().lower()[:24]


def size_limit(content_type: str, limits: MediaLimits) -> int:
    return limits.max_image_bytes if content_type in IMAGE_TYPES else limits.max_audio_bytes


@dataclass(frozen=True)
class PendingFile:
    """A file of a multipart request, checked and named but not stored yet."""

    upload_id: str
    filename: str
    content_type: str
    data: bytes = dataclasses.field(repr=False)


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
        quota_bytes: Callable[[str], int] | None = None,
        ttl_s: int = UPLOAD_TTL_S,
    ) -> None:
        self.table, self.ddb, self.s3, self.bucket, self.limits = table, ddb, s3, bucket, limits
        # URLs are signed for the bucket's own region (aws.RegionalPresigner); `s3` stores bytes.
        self.presign: UrlSigner = presign or s3
        self.quota = UploadQuota(table, ddb)
        self.ttl_s = ttl_s
        """How long an upload record lives (DynamoDB TTL), as long as S3 keeps its bytes."""
        self.quota_bytes = quota_bytes or (lambda tier: 2**63 - 1)
        """Bytes of live uploads a key of a tier may hold (PipelineConfig.upload_quota_bytes)."""

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
        upload, _ = self._record(principal, new_upload_id(), request.filename, content_type, request.bytes)
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

    def pending(
        self,
        principal: Principal,
        field: str,
        filename: str,
        content_type: str,
        data: bytes,
        idempotency_key: str | None = None,
    ) -> PendingFile:
        """A file that came inside a multipart request, checked (type, size) and given its upload id;
        nothing is stored yet (`store`, once the request is known to be good)."""
        content_type = content_type.split(";")[0].strip().lower()
        if content_type not in MEDIA_TYPES:
            raise TalkstackError(
                ErrorCode.UNSUPPORTED_MEDIA,
                f"{filename}: {content_type!r} is not a supported media type",
                field=f"inputs.{field}",
            )
        limit = size_limit(content_type, self.limits)
        if len(data) > limit:
            code = ErrorCode.IMAGE_TOO_LARGE if content_type in IMAGE_TYPES else ErrorCode.INPUT_TOO_LARGE
            raise TalkstackError(
                code,
                f"{filename}: {len(data) / 1e6:.1f} MB; the limit for {content_type} is {limit / 1e6:.0f} MB",
                field=f"inputs.{field}",
                max_bytes=limit,
            )
        upload_id = (
            derived_upload_id(principal.key_id, idempotency_key, field, filename, content_type, data)
            if idempotency_key is not None
            else new_upload_id()
        )
        return PendingFile(upload_id, filename, content_type, data)

    def store(self, principal: Principal, file: PendingFile) -> Upload:
        """Store a multipart request's file as an upload (within the key's quota). The same upload id
        twice (a retry after a failed attempt) counts and writes the bytes once."""
        upload, _ = self._record(principal, file.upload_id, file.filename, file.content_type, len(file.data))
        self.s3.put_object(
            Bucket=upload.bucket, Key=upload.key, Body=file.data, ContentType=file.content_type
        )
        return upload

    def _record(
        self, principal: Principal, upload_id: str, filename: str, content_type: str, size: int
    ) -> tuple[Upload, bool]:
        """The upload's record, written and counted against the quota; (upload, whether it is new).
        An existing record of this key with this id is returned as it is, counted once."""
        existing = self.get(principal, upload_id)
        if existing is not None:
            return existing, False
        safe_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename)[-100:] or "file"
        upload = Upload(
            upload_id,
            principal.key_id,
            self.bucket,
            f"{UPLOAD_PREFIX}{principal.key_id}/{upload_id}/{safe_name}",
            content_type,
        )
        expires_at = int(utc_now().timestamp()) + self.ttl_s
        item = {
            "pk": {"S": f"UPLOAD#{upload_id}"},
            "sk": {"S": "UPLOAD"},
            "owner": {"S": principal.key_id},
            "bucket": {"S": upload.bucket},
            "key": {"S": upload.key},
            "content_type": {"S": content_type},
            "bytes": {"N": str(size)},
            "expires_at": {"N": str(expires_at)},
        }
        created = self.quota.reserve(principal, size, self.quota_bytes(principal.tier), expires_at, item)
        if not created:  # written meanwhile by a concurrent retry of the same request
            again = self.get(principal, upload_id)
            if again is None:
                raise TalkstackError(ErrorCode.CONFLICT, f"upload id {upload_id!r} is taken; retry")
            return again, False
        return upload, True

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
        request (there is no manifest folder to resolve it against). `s3://` refs are left to the
        key's namespace (talkstack.pipeline.tenancy), which the caller checks next."""
        resolved: dict[str, MediaRef] = {}
        for path, ref in request.referenced_media().items():
            if not ref.is_relative:
                continue
            field = client_field(path)
            if not ref.key.startswith("upl_"):
                raise TalkstackError(
                    ErrorCode.INVALID_REQUEST,
                    f"{field}: give s3://bucket/key or an upload id from POST /v1/uploads (got {ref.key!r})",
                    field=field,
                )
            upload = self.get(principal, ref.key)
            if upload is None:  # missing, expired or another key's: one answer
                raise input_not_found(field, ref, "api")
            resolved[path] = MediaRef(upload.bucket, upload.key)
        return request.with_media(resolved)


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
