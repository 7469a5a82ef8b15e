"""The "limits" group: input limits, so the CLI, the Lambdas and the workers enforce the same numbers."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MediaLimits(BaseSettings):
    """Input limits. Defaults follow the HeyGen API's published limits where they exist."""

    model_config = SettingsConfigDict(env_prefix="TALKSTACK_", frozen=True, use_attribute_docstrings=True)

    min_audio_seconds: float = Field(0.5, gt=0)
    """Shortest speech (seconds) an avatar or voice request may bring."""
    max_audio_seconds: float = Field(600.0, gt=0)
    """Longest speech (seconds) an avatar or voice request may bring. Decoding stops here whatever the
    file's header says (at most 48 kHz mono float32: 115 MB at the default), so a file that hides its
    length cannot make a decoder hold more."""
    max_audio_bytes: int = Field(50 * 1024 * 1024, gt=0)
    """Largest audio file accepted, in bytes."""
    max_image_bytes: int = Field(50 * 1024 * 1024, gt=0)
    """Largest image file accepted, in bytes."""
    max_image_pixels: int = Field(40_000_000, gt=0)
    """Largest image (width × height), checked from the header before any pixel is decoded
    (a decompression-bomb guard)."""
    min_image_side: int = Field(64, gt=0)
    """Smallest image side, in pixels."""
    min_face_pixels: int = Field(48, gt=0)
    """Smallest face (bounding-box width in source pixels) the lite engine animates."""
    max_text_chars: int = Field(5000, gt=0)
    """Longest text a request may have spoken."""


@lru_cache(maxsize=1)
def get_limits() -> MediaLimits:
    return MediaLimits()
