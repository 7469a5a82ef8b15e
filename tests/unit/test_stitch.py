"""Stitching the chunks of a parallel long avatar: each moment from the chunk that owns it, a
crossfade over the overlap around each cut, the original speech as the sound."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from talkstack.media.audio import write_wav
from talkstack.media.segments import Chunk
from talkstack.media.stitch import stitch_chunks
from talkstack.media.video import Mp4Writer, iter_frames, probe_video


def _solid(path: Path, colour: tuple[int, int, int], frames: int) -> Path:
    with Mp4Writer(path, 64, 48, 25, crf=1) as out:
        for _ in range(frames):
            out.write(np.full((48, 64, 3), colour, dtype=np.uint8))
    return path


def test_chunks_are_joined_with_a_crossfade_in_the_overlap(tmp_path: Path) -> None:
    # cut at 2.0 s, 0.32 s overlap: chunk 0 renders 0–2.16 s, chunk 1 renders 1.84–4.0 s
    chunks = [Chunk(0, 0.0, 2.0, 0.0, 2.16, True), Chunk(1, 2.0, 4.0, 1.84, 4.0, True)]
    red = _solid(tmp_path / "a.mp4", (230, 20, 20), 54)
    blue = _solid(tmp_path / "b.mp4", (20, 20, 230), 54)
    speech = write_wav(
        tmp_path / "s.wav", 0.1 * np.sin(np.linspace(0, 2000, 4 * 16000)).astype(np.float32), 16000
    )
    out = tmp_path / "joined.mp4"
    frames = stitch_chunks(chunks, [red, blue], speech, out, poster=tmp_path / "p.jpg")
    info = probe_video(out)
    assert frames == info.frames == 100
    assert info.audio is not None and info.duration_s == pytest.approx(4.0, abs=0.1)
    means = [f.reshape(-1, 3).mean(axis=0) for f in iter_frames(out)]
    assert means[10][0] > 200 and means[90][2] > 200  # red before, blue after
    red_share = [m[0] / (m[0] + m[2]) for m in means[46:54]]  # 1.84–2.16 s: the fade
    assert all(a >= b - 0.02 for a, b in itertools.pairwise(red_share))  # monotone
    assert 0.3 < red_share[len(red_share) // 2] < 0.7  # halfway through, half of each
    assert (tmp_path / "p.jpg").exists()
