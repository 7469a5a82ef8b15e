"""Runtime configuration, parsed once from the environment (``TALKSTACK_*``).

Limits live here so the CLI, the Lambdas and the workers enforce the same numbers.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MediaLimits(BaseSettings):
    """Input limits. Defaults follow the HeyGen API's published limits where they exist."""

    model_config = SettingsConfigDict(env_prefix="TALKSTACK_", frozen=True)

    min_audio_seconds: float = Field(0.5, gt=0)
    max_audio_seconds: float = Field(600.0, gt=0)
    max_audio_bytes: int = Field(50 * 1024 * 1024, gt=0)
    max_image_bytes: int = Field(50 * 1024 * 1024, gt=0)
    # Checked from the header before any pixel is decoded (decompression-bomb guard).
    max_image_pixels: int = Field(40_000_000, gt=0)
    min_image_side: int = Field(64, gt=0)
    # Smallest face (bounding-box width in source pixels) the lite engine animates.
    min_face_pixels: int = Field(48, gt=0)
    max_text_chars: int = Field(5000, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TALKSTACK_", frozen=True)

    # Override the ffmpeg binary; by default the one bundled with imageio-ffmpeg is used.
    ffmpeg: Path | None = None
    espeak: str = "espeak-ng"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


@lru_cache(maxsize=1)
def get_limits() -> MediaLimits:
    return MediaLimits()
