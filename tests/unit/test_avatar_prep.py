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
from tests.support import wan_upstream


def _cut(tmp_path: Path, seconds: float, name: str = "cut.wav", start: float = 0.0) -> Path:
    clip = read_audio(SPEECH)
    a, b = int(start * clip.sample_rate), int((start + seconds) * clip.sample_rate)
    return write_wav(tmp_path / name, clip.samples[a:b], clip.sample_rate)


def _lufs(samples: np.ndarray, rate: int) -> float:
    return pyloudnorm.Meter(rate).integrated_loudness(samples.astype(np.float64))


def test_speech_is_16khz_at_minus_23_lufs_with_a_48khz_track_for_the_output() -> None:
    tracks = prep.prepare_tracks(SPEECH)
    source = read_audio(SPEECH).info.duration_s
    speech = tracks.mix[: round(tracks.duration_s * prep.SAMPLE_RATE)]
    assert tracks.duration_s == pytest.approx(source, abs=0.01)
    assert len(tracks.mux) / prep.MUX_SAMPLE_RATE == pytest.approx(source, abs=0.01)
    assert _lufs(speech, prep.SAMPLE_RATE) == pytest.approx(-23.0, abs=1.0)
    assert tracks.frames == int(source * 25)
    # silence after it: rows past the last window, so upstream returns every frame (model_plan)
    plan = prep.model_plan("multitalk", tracks.frames)
    assert prep.frames_for_samples(len(tracks.mix)) == plan.rows >= tracks.frames + prep.TAIL_PAD_FRAMES
    assert len(tracks.mix) == len(speech) + round(tracks.padded_s * prep.SAMPLE_RATE)
    assert np.abs(tracks.mix[len(speech) :]).max() == 0


# --- upstream's window arithmetic ------------------------------------------------------------
# Hand-derived from the `while True` loop of MultiTalkPipeline.generate (MultiTalk c1ad840) and
# InfiniteTalkPipeline.generate_infinitetalk (InfiniteTalk 0107cd9), wan/multitalk.py:
#   window k covers audio rows [k·(81−M), k·(81−M)+81); window 0 keeps 81 frames, later ones 81−M;
#   once a window's end reaches min(max_frames_num, rows) it is the last, and if it reaches past the
#   rows the embedding grows by miss = end − rows + 3; the frames are cut [:max_frames_num], then
#   MultiTalk cuts [:-miss], InfiniteTalk cuts [:rows].


@pytest.mark.parametrize(
    ("model", "rows", "cap", "windows", "frames"),
    [
        # 5 s (125 rows), MultiTalk streaming at its CLI's cap of 1000: windows [0,81) and [56,137);
        # miss = 137 − 125 + 3 = 15; 137 frames → [:-15] → 122. The finding: 122 of 125.
        ("multitalk", 125, 1000, 2, 122),
        # InfiniteTalk (M = 9): windows [0,81) and [72,153); 153 frames → [:125] → 125.
        ("infinitetalk", 125, 1000, 2, 125),
        # Clip mode (max_frames_num = frame_num): one window, 81 frames, whatever the rows.
        ("multitalk", 300, 81, 1, 81),
        # 994 rows against the cap: the window ending at 81 + 17·56 = 1033 is the last; miss = 42;
        # 1033 → [:1000] → [:-42] → 958: the cap costs MultiTalk 36 frames more.
        ("multitalk", 994, 1000, 18, 958),
        # Rows beyond the cap: it stops on the cap (1033 ≥ 1000), nothing missing → 1000 frames.
        ("multitalk", 1200, 1000, 18, 1000),
        # The cap at the speech (what model_plan asks for), rows past the last window: exact.
        ("multitalk", 138, 125, 2, 125),
        ("infinitetalk", 154, 125, 2, 125),
    ],
)
def test_upstream_frame_arithmetic(model: str, rows: int, cap: int, windows: int, frames: int) -> None:
    outcome = prep.upstream_outcome(
        model, rows, frame_num=81, motion_frame=prep.MOTION_FRAMES[model], max_frames_num=cap
    )
    assert (outcome.windows, outcome.frames) == (windows, frames)


def test_upstream_refuses_an_embedding_not_longer_than_a_window() -> None:
    with pytest.raises(ValueError, match="more than frame_num"):
        prep.upstream_outcome("multitalk", 81, frame_num=81, motion_frame=25, max_frames_num=81)


@pytest.mark.parametrize("model", ["multitalk", "infinitetalk"])
def test_the_plan_gets_every_frame_of_the_speech_without_an_extra_window(model: str) -> None:
    motion = prep.MOTION_FRAMES[model]
    for frames in range(1, 1101):
        plan = prep.model_plan(model, frames)
        outcome = prep.upstream_outcome(
            model, plan.rows, frame_num=81, motion_frame=motion, max_frames_num=plan.max_frames_num
        )
        assert outcome.frames >= frames, frames
        assert outcome.windows == plan.windows == prep.windows_for(frames, 81, motion), frames
        assert plan.rows >= frames + prep.TAIL_PAD_FRAMES
        if frames > 81:
            assert outcome.frames == frames  # streaming: exactly the speech, nothing to trim


def test_rows_are_counted_in_exact_integers() -> None:
    # int(18_560 / 16_000 * 25) == 28 in floating point: one row short of 18_560 / 640 = 29.
    assert int(640 * 29 / 16_000 * 25) == 28
    assert prep.frames_for_samples(640 * 29) == 29 == prep.embedding_frames(640 * 29 / 16_000)
    assert prep.frames_for_samples(640 * 29 - 1) == 28


UPSTREAM_PHOTO_SIDE = 32


def _upstream(model: str, rows: int, cap: int, tmp_path: Path, speakers: int = 1, text_guide: float = 5.0):
    import torch
    from PIL import Image

    code = wan_upstream.code_dir(model)
    if code is None:
        pytest.skip(f"no {model} checkout ({model.upper()}_CODE_DIR)")
    photo = tmp_path / "photo.png"
    Image.new("RGB", (UPSTREAM_PHOTO_SIDE, UPSTREAM_PHOTO_SIDE)).save(photo)
    torch.manual_seed(0)
    bucket = f"{model}-480"
    return wan_upstream.run(
        code,
        model,
        [torch.randn(rows, 3, 8) for _ in range(speakers)],  # [rows, layers, dim], as embed() makes
        photo,
        workdir=tmp_path,
        extra={
            "use_teacache": False,
            "teacache_thresh": 0.2,
            "size": bucket,
            "use_apg": False,
            "apg_momentum": -0.75,
            "apg_norm_threshold": 55.0,
        },
        size_buckget=bucket,
        motion_frame=prep.MOTION_FRAMES[model],
        frame_num=81,
        shift=7.0,
        sampling_steps=2,
        text_guide_scale=text_guide,
        audio_guide_scale=4.0,
        seed=1,
        offload_model=False,
        max_frames_num=cap,
        color_correction_strength=0.0,
    )


@pytest.mark.parametrize("model", ["multitalk", "infinitetalk"])
def test_the_arithmetic_matches_upstreams_own_loop(model: str, tmp_path: Path) -> None:
    """The real generate loop (stub networks, tests/support/wan_upstream.py), when a checkout of
    the official code is available: its frames and passes are what upstream_outcome says."""
    motion = prep.MOTION_FRAMES[model]
    for rows, cap in [(125, 1000), (200, 1000), (1004, 1000), (300, 81)]:
        frames, passes, audio = _upstream(model, rows, cap, tmp_path)
        expected = prep.upstream_outcome(model, rows, frame_num=81, motion_frame=motion, max_frames_num=cap)
        assert (frames, passes) == (expected.frames, expected.windows * 2 * 3), (rows, cap)
        assert audio[0] == (1, 81, 5, 3, 8)  # 81 frames × 5 neighbouring rows of [layers, dim]
    for speech in (125, 137, 138, 500):  # what the engine hands it: every frame of the speech
        plan = prep.model_plan(model, speech)
        frames, _, _ = _upstream(model, plan.rows, plan.max_frames_num, tmp_path)
        assert frames == speech


def test_upstream_runs_two_passes_a_step_at_text_guidance_one(tmp_path: Path) -> None:
    # What passes_per_step() and the TeaCache rule rest on (TeaCache's slots are cnt % 3).
    _, passes, audio = _upstream("multitalk", 125, 81, tmp_path, speakers=2, text_guide=1.0)
    settings = prep.generation_settings(
        "multitalk", AvatarOptions(model="multitalk", turbo=True, steps=2), 125 / 25
    )
    assert passes == 1 * 2 * settings.passes_per_step() == 4
    assert audio[0][0] == 2 and audio[1][0] == 1  # both speakers, then the audio-free pass


def test_teacache_is_refused_at_text_guidance_one() -> None:
    # Upstream's TeaCache (multitalk_model.py forward) keeps its caches per pass slot cnt % 3 —
    # cond, drop-text, uncond — and resets after sample_steps × 3 passes: with 2 passes a step the
    # slots drift and a pass would be answered with another pass's cached residual.
    asked = AvatarOptions(model="multitalk", turbo=True, teacache=True)
    settings = prep.generation_settings("multitalk", asked, 3.0)
    assert settings.passes_per_step() == 2 and not settings.use_teacache
    assert settings.extra_args()["use_teacache"] is False
    assert any("teacache" in w for w in settings.warnings)
    plain = AvatarOptions(model="infinitetalk", text_guidance=1.0)
    assert not prep.generation_settings("infinitetalk", plain, 3.0).use_teacache
    assert prep.generation_settings("multitalk", AvatarOptions(model="multitalk"), 3.0).use_teacache


def test_speech_shorter_than_one_window_is_padded_and_the_video_length_kept(tmp_path: Path) -> None:
    tracks = prep.prepare_tracks(_cut(tmp_path, 1.2))
    assert tracks.duration_s == pytest.approx(1.2, abs=0.01)
    assert tracks.frames == 30  # the video is trimmed back to the speech
    assert tracks.padded_s > 2.0
    # the official code asserts the embedding is longer than the window: it now is
    assert prep.frames_for_samples(len(tracks.mix)) > prep.CLIP_FRAMES
    assert np.abs(tracks.mix[int(1.3 * prep.SAMPLE_RATE) :]).max() == 0  # the padding is silence


def test_two_speakers_in_turn_and_at_once(tmp_path: Path) -> None:
    first, second = _cut(tmp_path, 4.0, "a.wav"), _cut(tmp_path, 6.0, "b.wav", start=5.0)
    turn = prep.prepare_tracks(first, second, "add")
    rate = prep.SAMPLE_RATE
    assert turn.duration_s == pytest.approx(10, abs=0.01)
    one, two = turn.speakers
    assert len(one) == len(two) == len(turn.mix)
    assert np.abs(one[int(4.05 * rate) :]).max() == 0  # person1 silent while person2 speaks
    assert np.abs(two[: int(3.95 * rate)]).max() == 0
    together = prep.prepare_tracks(first, second, "para")
    assert together.duration_s == pytest.approx(6, abs=0.01)  # the shorter one is padded
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
    # 4 steps: the README's figure for the lightx2v LoRA the catalogue ships (8 is FusionX's).
    assert (turbo.sampling_steps, turbo.text_guide_scale, turbo.audio_guide_scale, turbo.shift) == (
        4,
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
