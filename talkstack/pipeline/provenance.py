"""C2PA content credentials at publish time: finalize signs every video and audio output it publishes.

`sign_output` downloads the worker's object from the work bucket, signs the job's manifest into it
(talkstack/safety/credentials.py), uploads the signed file beside it in the work bucket (under
`signed/`, so a retried finalize finds the worker's original untouched) and returns that object,
which the publish step then copies to the output key like any other. Thumbnails are not signed.

The signer comes from the Secrets Manager secret TALKSTACK_C2PA_SECRET names (cached five minutes);
with none configured, or a secret not yet filled, a throwaway self-signed test signer signs and the
job gets a warning saying so. TALKSTACK_C2PA=false publishes outputs unsigned.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from talkstack.contract.record import JobRecord
from talkstack.contract.worker import OutputObject
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.aws import secrets_provider
from talkstack.safety.credentials import (
    FORMATS,
    Generation,
    SignerDocument,
    sign_file,
    signer_from_secret,
    throwaway_signer,
)
from talkstack.settings import get_provenance_settings

log = logging.getLogger(__name__)

SIGNED_ROLES = ("video", "audio", "video_mov")
UNSIGNABLE_ROLES = ("video_webm",)
"""Published unsigned, with a warning: c2pa cannot embed a manifest in WebM."""
WEBM_WARNING = "the WebM with alpha carries no content credentials (C2PA cannot be embedded in WebM)"
TEST_SIGNER_WARNING = (
    "content credentials signed with a throwaway test certificate: set TALKSTACK_C2PA_SECRET to a "
    "secret holding your signer (docs/safety.md)"
)


def signer() -> tuple[SignerDocument, str | None]:
    """The operator's signer, or the test signer and the warning that says so."""
    name = get_provenance_settings().c2pa_secret
    document = signer_from_secret(secrets_provider().get(name, max_age=300)) if name else None
    if document is None:
        return throwaway_signer(), TEST_SIGNER_WARNING
    return document, None


def signed_key(work_key: str) -> str:
    """Where the signed copy of a worker's output goes in the work bucket."""
    path = PurePosixPath(work_key)
    return str(path.parent / "signed" / path.name)


def sign_output(
    s3: Any, work_bucket: str, record: JobRecord, role: str, obj: OutputObject, warnings: list[str]
) -> OutputObject:
    """The object to publish for an output: a signed copy for video and audio, `obj` otherwise.
    Appends the test-signer warning to `warnings` (once) when no operator signer is configured."""
    suffix = PurePosixPath(obj.key).suffix.lower()
    if role in UNSIGNABLE_ROLES and get_provenance_settings().c2pa and WEBM_WARNING not in warnings:
        warnings.append(WEBM_WARNING)
    if role not in SIGNED_ROLES or suffix not in FORMATS or not get_provenance_settings().c2pa:
        return obj
    document, warning = signer()
    if warning and warning not in warnings:
        warnings.append(warning)
    models = sorted({step.model for step in record.steps if step.model} | ({record.model} - {None}))
    generation = Generation(job_id=record.job_id, models=models, title=PurePosixPath(obj.key).name)
    key = signed_key(obj.key)
    with tempfile.TemporaryDirectory() as tmp:
        source, dest = Path(tmp) / f"source{suffix}", Path(tmp) / f"signed{suffix}"
        s3.download_file(work_bucket, obj.key, str(source))
        try:
            sign_file(source, dest, generation, document)
        except Exception as exc:  # c2pa.C2paError: the worker's file is not the media it claims
            raise TalkstackError(
                ErrorCode.GENERATION_FAILED,
                f"could not sign content credentials into {PurePosixPath(obj.key).name}: {exc}",
            ) from exc
        s3.upload_file(str(dest), work_bucket, key, ExtraArgs={"ContentType": obj.content_type})
        size = dest.stat().st_size
    log.info("signed %s (%s) for %s with models %s", key, obj.content_type, record.job_id, models)
    return OutputObject(key=key, bytes=size, content_type=obj.content_type)
