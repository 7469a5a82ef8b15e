"""The watermark as the engines use it: one switch and one key from the settings, applied once per
output at encoding time (every frame written to a published video, every generated audio track).

Engines call `frame_marker()` before an Mp4Writer and pass each frame through it, and `mark_audio`
on speech samples before they are written or muxed. With the setting off both are the identity,
and so they are inside `unmarked()`: the runner renders a step whose output another step remakes
(a chunk of a long avatar, a text-driven avatar's speech) there, so what is published is marked once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from talkstack.media.audio import write_wav
from talkstack.safety.watermark_audio import embed_audio
from talkstack.safety.watermark_video import VideoWatermarker
from talkstack.settings import get_provenance_settings

__all__ = ["frame_marker", "mark_audio", "unmarked", "write_marked_wav"]

_unmarked: ContextVar[bool] = ContextVar("talkstack_unmarked", default=False)


@contextmanager
def unmarked() -> Iterator[None]:
    """Within it, nothing is marked (in this thread): for a render that is not published as it is,
    but joined or muxed by a later step that marks what it writes (WorkerTaskBase.watermark)."""
    token = _unmarked.set(True)
    try:
        yield
    finally:
        _unmarked.reset(token)


def watermark_key() -> str | None:
    """The configured key, or None when the watermark is turned off (or inside `unmarked()`)."""
    settings = get_provenance_settings()
    return settings.watermark_key.get_secret_value() if settings.watermark and not _unmarked.get() else None


def frame_marker() -> Callable[[np.ndarray], np.ndarray]:
    """A function that marks frames in the order they are written (one per video being encoded)."""
    key = watermark_key()
    if key is None:
        return lambda frame: frame
    return VideoWatermarker(key).apply


def mark_audio(samples: np.ndarray, rate: int) -> np.ndarray:
    """Mono float32 speech with the mark added (unchanged when the watermark is off)."""
    key = watermark_key()
    return samples if key is None else embed_audio(samples, rate, key)


def write_marked_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """`mark_audio`, then a 16-bit WAV: the sound track an engine muxes or publishes."""
    return write_wav(path, mark_audio(np.asarray(samples, np.float32), rate), rate)
