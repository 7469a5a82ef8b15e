"""Frame-exact stitching: every output frame is traced back to the chunk frame(s) it came from.

Each chunk frame carries its own identity: a 4×4 grid of grey blocks whose levels are drawn from a
generator seeded with (chunk, frame). Flat 16-pixel grey blocks survive h264 with only a level or two
of error in their means, while two different frames differ by tens of levels in most blocks, so
a frame read at the wrong index (a chunk frozen on its last frame, a crossfade one frame early) is
unmistakable. The chunk plan comes from the real planner on speech with pauses at known times.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from talkstack.media.audio import write_wav
from talkstack.media.segments import Chunk, plan_chunks
from talkstack.media.stitch import stitch_chunks
from talkstack.media.video import Mp4Writer, iter_frames, probe_video

FPS = 25
RATE = 16000
SIDE, GRID = 64, 4
BLOCK = SIDE // GRID
TOLERANCE = 8.0
"""Largest error (grey levels) allowed in one block's mean after two h264 encodes: measured ≈ 2.3,
so 8 leaves room for another encoder build; the subtlest wrong read (the incoming frame off by one
at weight 1/8) is off by ≥ 17, still more than twice this."""


def _levels(chunk: int, index: int) -> np.ndarray:
    """The 4×4 grey levels of frame `index` of chunk `chunk` (its identity)."""
    return np.random.default_rng([chunk, index]).integers(16, 240, (GRID, GRID)).astype(np.float64)


def _image(levels: np.ndarray) -> np.ndarray:
    grey = np.kron(levels, np.ones((BLOCK, BLOCK))).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _block_means(frame: np.ndarray) -> np.ndarray:
    grey = frame.astype(np.float64).mean(axis=2)
    return grey.reshape(GRID, BLOCK, GRID, BLOCK).mean(axis=(1, 3))


def _render(path: Path, chunk: int, frames: int) -> Path:
    with Mp4Writer(path, SIDE, SIDE, FPS, crf=1) as out:
        for i in range(frames):
            out.write(_image(_levels(chunk, i)))
    return path


def _speech_with_pauses(duration_s: float, pauses_s: list[tuple[float, float]]) -> np.ndarray:
    t = np.arange(round(duration_s * RATE)) / RATE
    voice = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))
    for a, b in pauses_s:
        voice[round(a * RATE) : round(b * RATE)] = 0.0
    return voice.astype(np.float32)


@pytest.fixture(scope="module", params=[(0.32, 4), (0.0, 0)], ids=["overlap", "no-overlap"])
def plan(request: pytest.FixtureRequest) -> list[Chunk]:
    # 6 s of speech, pauses 1.84–2.24 s and 3.72–4.12 s: cuts at their middles, 2.04 s (frame 51)
    # and 3.92 s (frame 98); a 0.32 s overlap puts 4 frames of extra render on each side of a cut
    # (a zero overlap, which the settings allow, none: each chunk then starts exactly at its cut).
    overlap_s, h = request.param
    samples = _speech_with_pauses(6.0, [(1.84, 2.24), (3.72, 4.12)])
    chunks = plan_chunks(samples, RATE, max_chunk_s=2.5, min_chunk_s=1.0, overlap_s=overlap_s, fps=FPS)
    frames = [
        tuple(round(x * FPS) for x in (c.start_s, c.end_s, c.render_start_s, c.render_end_s)) for c in chunks
    ]
    assert frames == [(0, 51, 0, 51 + h), (51, 98, 51 - h, 98 + h), (98, 150, 98 - h, 150)]
    return chunks


def _expected(chunks: list[Chunk]) -> list[tuple[tuple[int, int], tuple[int, int] | None, float]]:
    """For each output frame: (chunk, frame) it shows, and within a crossfade the incoming
    (chunk, frame) with its weight — worked out in whole frames, independently of the stitcher."""
    bounds = [(round(c.start_s * FPS), round(c.end_s * FPS), round(c.render_start_s * FPS)) for c in chunks]
    half = bounds[1][0] - bounds[1][2]  # frames rendered before the cut by the chunk after it
    out = []
    for f in range(bounds[-1][1]):
        k = next(i for i, (_, end, _) in enumerate(bounds) if f < end)
        own, incoming, alpha = (k, f - bounds[k][2]), None, 0.0
        for a, b in ((k - 1, k), (k, k + 1)):
            if a >= 0 and b < len(bounds):
                cut = bounds[b][0]
                if cut - half <= f < cut + half:
                    # The outgoing chunk a fades out, the incoming chunk b fades in, linearly over
                    # 2·half frames starting at b's first rendered frame.
                    alpha = (f - (cut - half)) / (2 * half)
                    own, incoming = (a, f - bounds[a][2]), (b, f - bounds[b][2])
        out.append((own, incoming, alpha))
    return out


@pytest.fixture(scope="module")
def stitched(plan: list[Chunk], tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    tmp = tmp_path_factory.mktemp("frame-exact")
    videos = [
        _render(tmp / f"chunk-{c.index}.mp4", c.index, round((c.render_end_s - c.render_start_s) * FPS))
        for c in plan
    ]
    speech = write_wav(tmp / "speech.wav", _speech_with_pauses(6.0, []), RATE)
    out = tmp / "joined.mp4"
    count = stitch_chunks(plan, videos, speech, out, fps=FPS)
    assert count == probe_video(out).frames == 150
    return [_block_means(frame) for frame in iter_frames(out)]


def test_each_frame_outside_the_overlaps_is_the_owning_chunks_frame_at_its_render_offset(plan, stitched):
    sources = [(c.index, i) for c in plan for i in range(round((c.render_end_s - c.render_start_s) * FPS))]
    library = np.stack([_levels(c, i) for c, i in sources])
    wrong = []
    for f, ((own, incoming, _), got) in enumerate(zip(_expected(plan), stitched, strict=True)):
        if incoming is not None:
            continue
        errors = np.abs(library - got).max(axis=(1, 2))
        nearest = sources[int(np.argmin(errors))]
        if nearest != own or errors.min() > TOLERANCE:
            wrong.append((f, own, nearest, round(float(errors.min()), 1)))
    assert not wrong, f"(output frame, expected source, nearest source, error): {wrong}"


def test_each_crossfade_frame_is_the_weighted_blend_of_the_two_right_chunk_frames(plan, stitched):
    wrong, fades = [], 0
    for f, ((own, incoming, alpha), got) in enumerate(zip(_expected(plan), stitched, strict=True)):
        if incoming is None:
            continue
        fades += 1
        blend = (1 - alpha) * _levels(*own) + alpha * _levels(*incoming)
        error = float(np.abs(blend - got).max())
        if error > TOLERANCE:
            wrong.append((f, own, incoming, alpha, round(error, 1)))
    half = round((plan[1].start_s - plan[1].render_start_s) * FPS)
    assert fades == 4 * half  # 2·half frames around each of the two cuts
    assert not wrong, f"(output frame, outgoing, incoming, weight, error): {wrong}"
