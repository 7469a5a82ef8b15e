"""The ffmpeg binary talkstack runs: the one imageio-ffmpeg ships, unless overridden."""

from __future__ import annotations

from functools import lru_cache

import imageio_ffmpeg

from talkstack.settings import get_settings


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    override = get_settings().ffmpeg
    return str(override) if override else imageio_ffmpeg.get_ffmpeg_exe()
