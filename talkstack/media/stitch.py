"""Join the chunks of a long avatar rendered in parallel into one video, with no seam at the cuts.

Each chunk was rendered from its share of the speech plus half the overlap on each inner side
(segments.plan_chunks), and every cut sits in a pause. Over the overlap both renders exist, so the
output fades from one to the other there; outside it each frame comes from the chunk that owns that
moment. The sound is the original speech track, never re-assembled from the chunks, so the audio
has no seam at all.

Given the reference photo, each chunk's colours are first matched to it (media/colour.py: one Lab
statistics transfer per chunk, measured on frames spread over the chunk), so the crossfade joins
two renders of the same tint instead of fading one drift into another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from talkstack.media.colour import ColourTransfer, fit_to_frame, match_colour
from talkstack.media.segments import Chunk
from talkstack.media.video import Mp4Writer, iter_frames, probe_video, write_poster

COLOUR_SAMPLES = 12
"""Frames per chunk its colour statistics are measured on, spread evenly over the chunk."""


class _Cursor:
    """Frames of one chunk video by index, read forward once (an index past the end repeats the
    last frame: a render may be a frame short of its share), colour-matched when a transfer is set
    (once per frame: the crossfade asks for the same frame more than once)."""

    def __init__(self, path: Path, transfer: ColourTransfer | None = None) -> None:
        self._frames: Iterator[np.ndarray] = iter_frames(path)
        self._index, self._frame = -1, None
        self._transfer, self._matched_index = transfer, -1

    def get(self, index: int) -> np.ndarray:
        while self._index < index:
            try:
                self._frame = next(self._frames)
                self._index += 1
            except StopIteration:
                break
        if self._frame is None:
            raise ValueError("chunk video has no frames")
        if self._transfer is not None and self._matched_index != self._index:
            self._frame, self._matched_index = self._transfer.apply(self._frame), self._index
        return self._frame


def opening_frame(video: Path) -> np.ndarray:
    """The first frame of a video (a chunk's render starts from the reference photo)."""
    frames = iter_frames(video)
    try:
        return next(frames)
    finally:
        frames.close()


def chunk_colour_transfer(
    video: Path, reference: np.ndarray, samples: int = COLOUR_SAMPLES
) -> ColourTransfer:
    """The transfer that brings a chunk's colour statistics (over frames spread across it) to those
    of the reference photo as it appears in the chunk's frame (scaled to cover, centre-cropped)."""
    info = probe_video(video)
    count = max(1, info.frames)
    wanted = set(np.linspace(0, count - 1, min(samples, count)).round().astype(int).tolist())
    frames = [frame for i, frame in enumerate(iter_frames(video)) if i in wanted]
    return match_colour(frames, fit_to_frame(reference, info.width, info.height))


def _owner(chunks: list[Chunk], t: float) -> int:
    for chunk in chunks:
        if t < chunk.end_s:
            return chunk.index
    return chunks[-1].index


def stitch_chunks(
    chunks: list[Chunk],
    videos: list[Path],
    audio: Path,
    output: Path,
    fps: int = 25,
    poster: Path | None = None,
    reference: np.ndarray | None = None,
    mark: Callable[[np.ndarray], np.ndarray] | None = None,
) -> int:
    """Write the joined video (with `audio` as its sound) to `output`; returns its frame count.

    `reference` (RGB, the avatar's photo): colour-match every chunk to it before joining.
    `mark`: applied to each joined frame, in order, as it is written (the caller's watermark: the
    chunks are rendered unmarked, as their marks would not line up across the joins)."""
    if len(chunks) != len(videos):
        raise ValueError(f"{len(chunks)} chunks but {len(videos)} videos")
    first = probe_video(videos[0])
    width, height = first.width, first.height
    transfers = [None if reference is None else chunk_colour_transfer(path, reference) for path in videos]
    cursors = [_Cursor(path, transfer) for path, transfer in zip(videos, transfers, strict=True)]
    total = round(chunks[-1].end_s * fps)
    with Mp4Writer(output, width, height, fps, audio) as out:
        for f in range(total):
            t = f / fps
            k = _owner(chunks, t)
            frame = cursors[k].get(round((t - chunks[k].render_start_s) * fps))
            # Inside an overlap both neighbours rendered this moment: crossfade across the cut.
            for a, b in ((k - 1, k), (k, k + 1)):
                if a < 0 or b >= len(chunks):
                    continue
                start, end = chunks[b].render_start_s, chunks[a].render_end_s
                if start <= t < end and end > start:
                    alpha = (t - start) / (end - start)
                    one = cursors[a].get(round((t - chunks[a].render_start_s) * fps)).astype(np.float32)
                    two = cursors[b].get(round((t - chunks[b].render_start_s) * fps)).astype(np.float32)
                    frame = np.clip((1 - alpha) * one + alpha * two + 0.5, 0, 255).astype(np.uint8)
            out.write(frame if mark is None else mark(frame))
            if f == 0 and poster is not None:
                write_poster(frame, poster)
    return total
