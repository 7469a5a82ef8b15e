"""Stitching the chunks of a parallel long avatar: each moment from the chunk that owns it, a
crossfade over the overlap around each cut, the original speech as the sound."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from talkstack.contract.worker import ChunkPlan, Markers, OutputUrl, StitchOptions, StitchTask
from talkstack.media.audio import write_wav
from talkstack.media.colour import delta_e76, lab_stats
from talkstack.media.segments import Chunk
from talkstack.media.stitch import stitch_chunks
from talkstack.media.video import Mp4Writer, iter_frames, probe_video
from talkstack.settings.quality import QualityThresholds
from talkstack.workers.lite_steps import stitch
from tests.conftest import PORTRAIT


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


def _portrait_chunk(path: Path, portrait: np.ndarray, frames: int, gains=(1.0, 1.0, 1.0)) -> Path:
    """A chunk render of the portrait (small, drifting sideways), with a colour cast if `gains`."""
    small = np.asarray(Image.fromarray(portrait).resize((128, 128)))
    with Mp4Writer(path, 128, 128, 25, crf=12) as out:
        for i in range(frames):
            frame = np.roll(small, i % 5, axis=1).astype(np.float32) * gains
            out.write(np.clip(frame, 0, 255).astype(np.uint8))
    return path


def test_matching_each_chunk_to_the_reference_removes_a_colour_jump_at_the_cut(tmp_path, portrait_rgb):
    # cut at 1.0 s, 0.32 s overlap: chunk 0 renders 0–1.16 s, chunk 1 renders 0.84–2.0 s; chunk 1
    # drifted warm (what MultiTalk/InfiniteTalk users see between parallel chunks).
    chunks = [Chunk(0, 0.0, 1.0, 0.0, 1.16, True), Chunk(1, 1.0, 2.0, 0.84, 2.0, True)]
    videos = [
        _portrait_chunk(tmp_path / "a.mp4", portrait_rgb, 29),
        _portrait_chunk(tmp_path / "b.mp4", portrait_rgb, 29, gains=(1.15, 1.0, 0.8)),
    ]
    speech = write_wav(tmp_path / "s.wav", np.zeros(2 * 16000, np.float32), 16000)

    def jump(reference: np.ndarray | None) -> float:
        out = tmp_path / f"joined-{reference is None}.mp4"
        stitch_chunks(chunks, videos, speech, out, reference=reference)
        frames = list(iter_frames(out))
        before, after = lab_stats(frames[5:18]), lab_stats(frames[32:45])
        return delta_e76(before.mean, after.mean)

    unmatched, matched = jump(None), jump(portrait_rgb)
    assert unmatched > 8  # clearly visible
    assert matched < 1.5 and matched < unmatched / 5


def _stitch_task(chunks: list[Chunk]) -> StitchTask:
    put = OutputUrl(url="http://127.0.0.1:9/none", key="k", content_type="application/json")
    return StitchTask(
        job_id="job-1",
        attempt_id="stitch-1-abc",
        attempt=1,
        model="stitch",
        options=StitchOptions(chunks=[ChunkPlan(**c.as_dict()) for c in chunks]),
        outputs={"video": put, "thumbnail": put},
        markers=Markers(progress=put, result=put, error=put),
        heartbeat_interval_s=10,
        deadline=datetime.now(UTC) + timedelta(hours=1),
    )


@pytest.mark.parametrize("with_photo", [False, True])
def test_the_stitch_step_colour_matches_its_chunks(tmp_path, portrait_rgb, with_photo):
    # Without the photo in the task, every chunk is matched to the first chunk's opening frame.
    chunks = [Chunk(0, 0.0, 1.0, 0.0, 1.16, True), Chunk(1, 1.0, 2.0, 0.84, 2.0, True)]
    tone = 0.1 * np.sin(np.arange(2 * 16000, dtype=np.float32) / 8)
    inputs = {
        "chunk_0": _portrait_chunk(tmp_path / "a.mp4", portrait_rgb, 29),
        "chunk_1": _portrait_chunk(tmp_path / "b.mp4", portrait_rgb, 29, gains=(1.15, 1.0, 0.8)),
        "audio": write_wav(tmp_path / "s.wav", tone, 16000),
    }
    if with_photo:
        inputs["image"] = PORTRAIT
    out = tmp_path / "out"
    out.mkdir()
    outputs, result = stitch(_stitch_task(chunks), inputs, out, lambda _f, _m: None)
    frames = list(iter_frames(outputs["video"]))
    assert delta_e76(lab_stats(frames[5:18]).mean, lab_stats(frames[32:45]).mean) < 1.5
    # The joined video is measured when the photo is there to measure identity against; the seam's
    # face colour jump (ΔE ≈ 19 unmatched) is then under the pass mark.
    assert (result.quality is not None) == with_photo
    if result.quality is not None:
        assert result.quality.colour_drift is not None
        assert result.quality.colour_drift < QualityThresholds().max_colour_drift
