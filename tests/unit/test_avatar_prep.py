"""The avatar engines' preparation, on real speech (the bundled sample) and real photos: what the
official MultiTalk / InfiniteTalk code receives. No model is involved here."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest

from talkstack.contract.request import AvatarOptions
from talkstack.engines.gpu import avatar_prep as prep
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.audio import read_audio, write_wav
from talkstack.media.segments import plan_chunks
from tests.conftest import SPEECH


def _cut(tmp_path: Path, seconds: float, name: str = "cut.wav", start: float = 0.0) -> Path:
    clip = read_audio(SPEECH)
    a, b = int(start * clip.sample_rate), int((start + seconds) * clip.sample_rate)
    return write_wav(tmp_path / name, clip.samples[a:b], clip.sample_rate)


def _lufs(samples: np.ndarray, rate: int) -> float:
    return pyloudnorm.Meter(rate).integrated_loudness(samples.astype(np.float64))


def test_speech_is_16khz_at_minus_23_lufs_with_a_48khz_track_for_the_output() -> None:
    tracks = prep.prepare_tracks(SPEECH)
    source = read_audio(SPEECH).info.duration_s
    assert len(tracks.mix) / prep.SAMPLE_RATE == pytest.approx(source, abs=0.01)
    assert len(tracks.mux) / prep.MUX_SAMPLE_RATE == pytest.approx(source, abs=0.01)
    assert _lufs(tracks.mix, prep.SAMPLE_RATE) == pytest.approx(-23.0, abs=1.0)
    assert tracks.padded_s == 0 and tracks.frames == int(source * 25)
    assert prep.embedding_frames(len(tracks.mix) / prep.SAMPLE_RATE) > prep.CLIP_FRAMES


def test_speech_shorter_than_one_window_is_padded_and_the_video_length_kept(tmp_path: Path) -> None:
    tracks = prep.prepare_tracks(_cut(tmp_path, 1.2))
    assert tracks.duration_s == pytest.approx(1.2, abs=0.01)
    assert tracks.frames == 30  # the video is trimmed back to the speech
    assert tracks.padded_s > 2.0
    # the official code asserts the embedding is longer than the window: it now is
    assert prep.embedding_frames(len(tracks.mix) / prep.SAMPLE_RATE) > prep.CLIP_FRAMES
    assert np.abs(tracks.mix[int(1.3 * prep.SAMPLE_RATE) :]).max() == 0  # the padding is silence


def test_two_speakers_in_turn_and_at_once(tmp_path: Path) -> None:
    first, second = _cut(tmp_path, 4.0, "a.wav"), _cut(tmp_path, 6.0, "b.wav", start=5.0)
    turn = prep.prepare_tracks(first, second, "add")
    rate = prep.SAMPLE_RATE
    assert len(turn.mix) == pytest.approx(10 * rate, abs=rate * 0.01)
    one, two = turn.speakers
    assert len(one) == len(two) == len(turn.mix)
    assert np.abs(one[int(4.05 * rate) :]).max() == 0  # person1 silent while person2 speaks
    assert np.abs(two[: int(3.95 * rate)]).max() == 0
    together = prep.prepare_tracks(first, second, "para")
    assert len(together.mix) == pytest.approx(6 * rate, abs=rate * 0.01)  # the shorter one is padded
    assert all(len(s) == len(together.mix) for s in together.speakers)


def test_max_duration_cuts_the_speech() -> None:
    tracks = prep.prepare_tracks(SPEECH, max_duration_s=5.0)
    assert tracks.duration_s == pytest.approx(5.0, abs=0.01)
    assert len(tracks.mux) == 5 * prep.MUX_SAMPLE_RATE
    assert tracks.warnings


def test_default_and_turbo_settings_follow_the_official_recommendations() -> None:
    default = prep.generation_settings("multitalk", AvatarOptions(model="multitalk"), 3.0)
    assert (default.sampling_steps, default.text_guide_scale, default.audio_guide_scale) == (40, 5.0, 4.0)
    assert (default.shift, default.size_bucket, default.mode) == (7.0, "multitalk-480", "clip")
    assert default.use_teacache and not default.use_apg and default.passes_per_step() == 3
    assert default.generate_kwargs()["max_frames_num"] == prep.CLIP_FRAMES
    assert default.extra_args()["size"] == "multitalk-480"  # TeaCache's coefficient key

    turbo = prep.generation_settings("multitalk", AvatarOptions(model="multitalk", turbo=True), 3.0)
    assert (turbo.sampling_steps, turbo.text_guide_scale, turbo.audio_guide_scale, turbo.shift) == (
        8,
        1.0,
        2.0,
        2.0,
    )
    assert not turbo.use_teacache and turbo.passes_per_step() == 2

    chosen = AvatarOptions(model="infinitetalk", resolution="720p", steps=20, teacache=False, seed=3)
    high = prep.generation_settings("infinitetalk", chosen, 3.0)
    assert (high.size_bucket, high.shift, high.sampling_steps, high.use_teacache, high.seed) == (
        "infinitetalk-720",
        11.0,
        20,
        False,
        3,
    )
    assert high.motion_frame == 9


def test_long_speech_streams_with_apg_and_counts_windows() -> None:
    settings = prep.generation_settings("multitalk", AvatarOptions(model="multitalk"), 20.0)
    assert settings.mode == "streaming" and settings.use_apg
    assert settings.windows(500) == 1 + -(-(500 - 81) // 56)  # 56 new frames per MultiTalk window
    infinite = prep.generation_settings("infinitetalk", AvatarOptions(model="infinitetalk"), 60.0)
    assert infinite.windows(1500) == 1 + -(-(1500 - 81) // 72)
    assert infinite.generate_kwargs()["max_frames_num"] >= 1500
    with pytest.raises(TalkstackError) as caught:
        prep.generation_settings("multitalk", AvatarOptions(model="multitalk"), 45.0)
    assert caught.value.code == ErrorCode.AUDIO_TOO_LONG and "parallel" in caught.value.message


def test_speaker_boxes_become_top_left_bottom_right() -> None:
    boxes = prep.to_model_boxes([(100, 50, 200, 300), (700, 60, 180, 280)], 1280, 720)
    assert boxes == {"person1": [50, 100, 350, 300], "person2": [60, 700, 340, 880]}


@pytest.mark.parametrize(
    ("boxes", "fragment"),
    [
        ([(1200, 50, 200, 300), (0, 0, 100, 100)], "reaches past the 1280×720 photo"),
        ([(10, 10, 20, 300), (300, 10, 100, 100)], "too small"),
        ([(0, 0, 640, 720), (640, 0, 640, 720)], "cover the whole photo"),
    ],
)
def test_bad_boxes_are_refused_with_the_reason(boxes: list, fragment: str) -> None:
    with pytest.raises(TalkstackError) as caught:
        prep.to_model_boxes(boxes, 1280, 720)
    assert caught.value.code == ErrorCode.INVALID_REQUEST and fragment in caught.value.message


def test_the_input_document_for_each_model(tmp_path: Path) -> None:
    two = prep.input_document(
        "multitalk",
        prompt=None,
        image=tmp_path / "ref.png",
        embeddings=[tmp_path / "1.pt", tmp_path / "2.pt"],
        mix=tmp_path / "sum.wav",
        audio_type="para",
        boxes={"person1": [0, 0, 10, 10], "person2": [0, 20, 10, 30]},
    )
    assert two == {
        "prompt": prep.DEFAULT_PROMPT,
        "cond_image": str(tmp_path / "ref.png"),
        "cond_audio": {"person1": str(tmp_path / "1.pt"), "person2": str(tmp_path / "2.pt")},
        "video_audio": str(tmp_path / "sum.wav"),
        "audio_type": "para",
        "bbox": {"person1": [0, 0, 10, 10], "person2": [0, 20, 10, 30]},
    }
    one = prep.input_document(
        "infinitetalk",
        prompt="A news anchor",
        image=tmp_path / "ref.png",
        embeddings=[tmp_path / "1.pt"],
        mix=tmp_path / "sum.wav",
        audio_type=None,
        boxes=None,
    )
    assert one["cond_video"] == str(tmp_path / "ref.png") and "cond_image" not in one
    assert "audio_type" not in one and "bbox" not in one and one["prompt"] == "A news anchor"


def _long_speech(tmp_path: Path) -> tuple[np.ndarray, int, list[float]]:
    """~41 s: the sample three times with 0.6 s of silence between (known pause positions)."""
    clip = read_audio(SPEECH)
    rate = clip.sample_rate
    gap = np.zeros(int(0.6 * rate), dtype=np.float32)
    pieces, gaps, t = [], [], 0.0
    for i in range(3):
        pieces.append(clip.samples)
        t += len(clip.samples) / rate
        if i < 2:
            pieces.append(gap)
            gaps.append(t + 0.3)
            t += 0.6
    return np.concatenate(pieces), rate, gaps


def test_chunks_are_cut_in_pauses_with_overlap_for_the_crossfade(tmp_path: Path) -> None:
    samples, rate, _ = _long_speech(tmp_path)
    duration = len(samples) / rate
    chunks = plan_chunks(samples, rate, max_chunk_s=12, min_chunk_s=4, overlap_s=0.32)
    assert len(chunks) >= 4
    assert chunks[0].start_s == 0 and chunks[-1].end_s == pytest.approx(duration)
    for a, b in itertools.pairwise(chunks):
        assert a.end_s == b.start_s  # contiguous
        assert b.render_start_s == pytest.approx(b.start_s - 0.16) and a.render_end_s == pytest.approx(
            a.end_s + 0.16
        )
        assert round(a.end_s * 25, 6) == round(a.end_s * 25)  # on a frame boundary
    for chunk in chunks:
        assert chunk.at_pause
        assert 4 <= chunk.end_s - chunk.start_s <= 12 + 1e-6
        # the cut is silent: nothing above the pause threshold within 40 ms of it
        at = int(chunk.end_s * rate)
        if chunk.index < len(chunks) - 1:
            window = samples[at - int(0.04 * rate) : at + int(0.04 * rate)]
            assert 20 * np.log10(np.sqrt(np.mean(window**2)) + 1e-9) < -40


def test_speech_without_pauses_is_still_cut_within_bounds() -> None:
    rate = 16_000
    t = np.arange(30 * rate) / rate
    hum = (0.3 * np.sin(2 * np.pi * 140 * t) * (1 + 0.2 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    chunks = plan_chunks(hum, rate, max_chunk_s=10, min_chunk_s=4)
    assert [c.at_pause for c in chunks[1:]] == [False] * (len(chunks) - 1)
    assert all(4 <= c.end_s - c.start_s <= 10 + 1e-6 for c in chunks)


def test_short_speech_is_one_chunk() -> None:
    clip = read_audio(SPEECH)
    [only] = plan_chunks(clip.samples, clip.sample_rate, max_chunk_s=20, min_chunk_s=4)
    assert (only.start_s, only.render_start_s) == (0.0, 0.0)
    assert only.end_s == pytest.approx(clip.info.duration_s)
