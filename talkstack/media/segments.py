"""Cut long speech into chunks at pauses, for avatars rendered in parallel and stitched.

A cut in the middle of a word is audible and visible (the mouth is open while the next chunk starts
from the reference pose); a cut in a pause is neither. So cuts go in the middle of the longest pause
inside each allowed window, snapped to a video frame, and every chunk is rendered with a little
extra audio on both sides (`overlap_s`) so the stitcher can crossfade the two renders over the pause.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from talkstack.media.audio import frame_levels_dbfs

WINDOW_S = 0.02
MIN_PAUSE_S = 0.12
QUIET_BELOW_SPEECH_DB = 28.0  # a window this far below typical speech level counts as a pause
QUIET_FLOOR_DBFS = -50.0


@dataclass(frozen=True)
class Chunk:
    index: int
    start_s: float
    """Where this chunk's share of the output begins (a cut, or 0)."""
    end_s: float
    render_start_s: float
    """Audio the chunk is rendered from: its share plus half the overlap on each inner side."""
    render_end_s: float
    at_pause: bool
    """False when no pause was found in the window and the cut fell in the quietest spot instead."""

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


def pauses(samples: np.ndarray, rate: int) -> list[tuple[float, float]]:
    """(start_s, end_s) of each pause of at least MIN_PAUSE_S."""
    levels = frame_levels_dbfs(samples, rate, WINDOW_S)
    voiced = levels[levels > QUIET_FLOOR_DBFS]
    speech_level = float(np.percentile(voiced, 90)) if voiced.size else 0.0
    quiet = levels < max(QUIET_FLOOR_DBFS, speech_level - QUIET_BELOW_SPEECH_DB)
    found, start = [], None
    for i, is_quiet in enumerate([*quiet.tolist(), False]):
        if is_quiet and start is None:
            start = i
        elif not is_quiet and start is not None:
            if (i - start) * WINDOW_S >= MIN_PAUSE_S:
                found.append((start * WINDOW_S, i * WINDOW_S))
            start = None
    return found


def _snap(t: float, fps: int) -> float:
    return round(t * fps) / fps


def plan_chunks(
    samples: np.ndarray,
    rate: int,
    *,
    max_chunk_s: float,
    min_chunk_s: float,
    overlap_s: float = 0.32,
    fps: int = 25,
) -> list[Chunk]:
    """Chunks of at most `max_chunk_s` (plus overlap) and at least `min_chunk_s`, cut at pauses."""
    if min_chunk_s * 2 > max_chunk_s:
        raise ValueError(f"max_chunk_s ({max_chunk_s}) must be at least twice min_chunk_s ({min_chunk_s})")
    duration = len(samples) / rate
    if duration <= max_chunk_s:
        return [Chunk(0, 0.0, duration, 0.0, duration, True)]
    levels = frame_levels_dbfs(samples, rate, WINDOW_S)
    found = pauses(samples, rate)
    cuts: list[tuple[float, bool]] = []
    start = 0.0
    while duration - start > max_chunk_s:
        # The cut must leave this chunk ≥ min and the rest ≥ min (no tiny tail chunk).
        lo, hi = start + min_chunk_s, min(start + max_chunk_s, duration - min_chunk_s)
        inside = [(b - a, (a + b) / 2) for a, b in found if lo <= (a + b) / 2 <= hi]
        if inside:
            # Longest pause wins; among similar ones (within 40 ms) the later, so chunks stay long.
            longest = max(length for length, _ in inside)
            cut, at_pause = max(mid for length, mid in inside if length >= longest - 0.04), True
        else:
            first, last = int(lo / WINDOW_S), max(int(lo / WINDOW_S) + 1, int(hi / WINDOW_S))
            cut, at_pause = (first + int(np.argmin(levels[first:last]))) * WINDOW_S + WINDOW_S / 2, False
        cut = min(max(_snap(cut, fps), np.ceil(lo * fps) / fps), np.floor(hi * fps) / fps)
        cuts.append((float(cut), at_pause))
        start = cut
    bounds = [0.0, *[c for c, _ in cuts], duration]
    half = _snap(overlap_s / 2, fps)
    chunks = []
    for i in range(len(bounds) - 1):
        a, b = bounds[i], bounds[i + 1]
        chunks.append(
            Chunk(
                index=i,
                start_s=a,
                end_s=b,
                render_start_s=max(0.0, a - half) if i else 0.0,
                render_end_s=min(duration, b + half) if i < len(bounds) - 2 else duration,
                at_pause=True if i == 0 else cuts[i - 1][1],
            )
        )
    return chunks
