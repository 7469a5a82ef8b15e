"""Job ids for S3-dropped manifests: derived from the object, so every delivery of the same
upload (S3 delivers at least once; a multipart upload emits two events) names the same execution,
and Step Functions refuses to start it twice.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from talkstack.errors import ErrorCode, TalkstackError

MAX_JOB_ID = 80


def slug(text: str, limit: int = 48) -> str:
    """ASCII [a-z0-9-] from any text ("Démo Video+1" → "demo-video-1")."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:limit].strip("-")


def manifest_job_name(key: str, input_prefix: str, manifest_name: str) -> str:
    """`inputs/<name>/job.json` → `<name>` (nested folders joined with '-')."""
    if not key.startswith(input_prefix) or not key.endswith(manifest_name):
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST,
            f"{key!r} is not a manifest: expected {input_prefix}<name>/{manifest_name}",
        )
    return key[len(input_prefix) : len(key) - len(manifest_name)].strip("/")


def job_id_for_object(bucket: str, key: str, etag: str, name: str, version_id: str | None = None) -> str:
    """`<slug of name>-<16 hex of the object identity>`: readable, and the same for the same upload.
    A changed manifest (new ETag or version) is a new job; re-uploading identical bytes is not."""
    identity = f"{bucket}\n{key}\n{version_id or etag.strip(chr(34))}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    base = slug(name) or "job"
    return f"{base}-{digest}"[:MAX_JOB_ID]
