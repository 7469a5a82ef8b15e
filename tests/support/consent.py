"""Consent attestations for tests: one valid block to add to any request that animates a user's
photo or clones a voice (talkstack.safety.consent), and a user photo that is not a bundled sample."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

SAMPLE_PORTRAIT = Path(str(resources.files("talkstack") / "assets" / "samples" / "portrait.png"))


def consent_block(scope: str = "likeness", clip: str | None = None, **changes: Any) -> dict[str, Any]:
    """A valid `consent` attestation (given an hour ago) of `scope`, with a consent clip if `clip`."""
    block: dict[str, Any] = {
        "attested_by": "Ada Operator <ada@example.com>",
        "attested_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "subject": "Grace Subject",
        "scope": scope,
        "statement": "I agree that my likeness and voice may be used to make talking videos.",
    }
    if clip is not None:
        block["clip"] = clip
    return {**block, **changes}


def with_consent(request: dict[str, Any], scope: str = "likeness", **changes: Any) -> dict[str, Any]:
    """`request` with a valid consent attestation added."""
    return {**request, "consent": consent_block(scope, **changes)}


def user_photo_bytes() -> bytes:
    """A photo with a face that is not a bundled sample: the sample portrait mirrored (a new hash)."""
    buffer = io.BytesIO()
    ImageOps.mirror(Image.open(SAMPLE_PORTRAIT).convert("RGB")).save(buffer, format="PNG")
    return buffer.getvalue()
