"""Bundled template media in the input bucket, so jobs read them like any other input.

A template names a file that ships with talkstack as `asset:<name>`. Before a job can use it, the
file is copied once into the input bucket under `assets/bundled/<sha256 prefix>/<file name>`: the
key is derived from the bytes, so a copy is never stale, two versions never share a key, and
uploading is idempotent (HeadObject first; a present key is the same bytes). A template's few files
are checked and uploaded concurrently (talkstack/pipeline/aio_s3.py). Every API key may read
exactly these keys (talkstack.pipeline.tenancy: `is_bundled_key`); nothing else under `assets/` is
anybody's to read.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from talkstack.contract.fields import MediaRef
from talkstack.pipeline.aio_s3 import AsyncS3, bounded, run, threaded
from talkstack.pipeline.aws import error_code

BUNDLED_PREFIX = "assets/bundled/"
DIGEST_CHARS = 16
"""64 bits of the file's SHA-256: enough to tell the few dozen bundled files apart forever."""
_KEY = re.compile(
    rf"^{re.escape(BUNDLED_PREFIX)}[0-9a-f]{{{DIGEST_CHARS}}}/[A-Za-z0-9][A-Za-z0-9._-]{{0,119}}$"
)


def is_bundled_key(key: str) -> bool:
    """Exactly the keys `bundled_key` makes: a digest folder and one plain file name, so no other
    object (a longer path, a `..` segment, a key that only starts with the prefix) matches."""
    return bool(_KEY.fullmatch(key)) and ".." not in key


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", Path(name).name).lstrip(".-_") or "asset"
    return cleaned.replace("..", ".")[:120]


@lru_cache(maxsize=256)
def _digest(path: Path, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:DIGEST_CHARS]


def bundled_key(path: Path) -> str:
    """Where the bundled file at `path` lives in the input bucket."""
    stat = path.stat()
    return f"{BUNDLED_PREFIX}{_digest(path, stat.st_size, stat.st_mtime_ns)}/{_safe_name(path.name)}"


class BundledAssets:
    """Copies bundled files into the input bucket (once) and names them as `s3://` refs. `aio`
    opens the async client the HEADs and PUTs run on (the API Lambda's: aioboto3_s3.session_s3);
    without one they run on `s3` over threads."""

    def __init__(self, s3: Any, bucket: str, aio: AsyncS3 | None = None) -> None:
        self.s3, self.bucket = s3, bucket
        self.aio = aio or threaded(s3)

    async def _ensure_one(self, s3: Any, path: Path) -> MediaRef:
        key = bundled_key(path)
        try:
            await s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
                raise
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            await s3.put_object(Bucket=self.bucket, Key=key, Body=path.read_bytes(), ContentType=content_type)
        return MediaRef(self.bucket, key)

    def ensure(self, names: Iterable[str], path_of: Callable[[str], Path]) -> dict[str, MediaRef]:
        """`asset:` names → refs of their copies in the input bucket, uploading the missing ones
        concurrently (a template names a few: a background, a picture, music, the portrait).
        `path_of` maps a name to its bundled file and raises for a name that is not one."""
        paths = {name: path_of(name) for name in dict.fromkeys(names)}
        if not paths:
            return {}

        async def all_assets() -> list[MediaRef]:
            async with self.aio() as s3:
                return await bounded(self._ensure_one(s3, path) for path in paths.values())

        return dict(zip(paths, run(all_assets()), strict=True))
