"""What every engine returns, and how it reports progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from talkstack.contract.captions import SpeechTimings
from talkstack.contract.quality import QualityReport

# progress(fraction 0..1, short message)
ProgressFn = Callable[[float, str], None]


def no_progress(fraction: float, message: str) -> None:
    return None


@dataclass(frozen=True)
class RenderResult:
    output: Path
    bytes: int
    duration_s: float
    poster: Path | None = None
    width: int | None = None
    height: int | None = None
    fps: int | None = None
    frames: int | None = None
    sample_rate: int | None = None
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    quality: QualityReport | None = None
    """The avatar quality report of the video (talkstack/engines/quality.py); None elsewhere."""
    words: SpeechTimings | None = None
    """A voice engine's own word timings (source "tts"); None when it has none, and then the
    worker aligns the text to the audio (talkstack/workers/words.py)."""
