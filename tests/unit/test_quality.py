"""The avatar quality report (talkstack/engines/quality.py, talkstack/media/quality.py).

The arithmetic is checked against the libraries it stands on (librosa's RMS, scipy's Procrustes);
the report itself on the bundled sample rendered once by the lite engine, then spoilt the ways a
real render goes wrong: speech out of step, another speech, a warped or recoloured face, a colour
jump between chunks, a video cut short.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import ffmpeg
import numpy as np
import pytest
import scipy.spatial

from talkstack.engines.base import RenderResult
from talkstack.engines.lite.avatar import render_avatar
from talkstack.engines.quality import QualitySampling, assess_avatar, with_quality
from talkstack.media import quality as measures
from talkstack.media.audio import read_audio, write_wav
from talkstack.media.ffmpeg import ffmpeg_exe
from talkstack.media.segments import Chunk
from talkstack.media.stitch import stitch_chunks
from talkstack.media.video import Mp4Writer, iter_frames
from talkstack.settings.quality import QualityThresholds

FPS = 25
THRESHOLDS = QualityThresholds()
# Identity, colour and frame checks need no lip-sync window: one face a second is enough.
NO_LIPSYNC = QualitySampling(lipsync_s=0)


# --- the arithmetic -------------------------------------------------------------------------------


def test_envelope_is_librosa_rms_centred_on_each_frame() -> None:
    rate = 16_000
    t = np.arange(3 * rate) / rate
    burst = ((t >= 1.0) & (t < 2.0)) * 0.5 * np.sin(2 * np.pi * 220 * t)
    env = measures.speech_envelope(burst.astype(np.float32), rate, FPS, 75)
    assert env.shape == (75,)
    # Frames 25…49 show the second the tone sounds; each value is centred on its frame, so the edges
    # fall between frames 24/25 and 49/50 (to within the 3-frame smoothing).
    loud = np.flatnonzero(env > -measures.ENVELOPE_RANGE_DB / 2)
    assert loud[0] in (24, 25) and loud[-1] in (49, 50)
    assert env.max() == pytest.approx(0.0, abs=0.5)
    # librosa's own RMS of one frame of the steady tone: 0.5/√2.
    import librosa

    rms = librosa.feature.rms(y=burst[int(1.2 * rate) : int(1.2 * rate) + 1280].astype(np.float32),
                              frame_length=1280, hop_length=640, center=False)  # fmt: skip
    assert rms[0, 0] == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_envelope_resamples_other_rates_onto_the_frame_grid() -> None:
    for rate in (22_050, 44_100, 48_000):
        t = np.arange(2 * rate) / rate
        burst = ((t >= 1.0) * 0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
        env = measures.speech_envelope(burst, rate, FPS, 50)
        assert np.flatnonzero(env > -20)[0] in (24, 25), rate


def test_best_lag_finds_a_known_delay() -> None:
    rng = np.random.default_rng(0)
    sound = measures.smooth(rng.normal(size=300))
    mouth = np.concatenate([np.zeros(3), sound[:-3]])  # the mouth follows 3 frames late
    best = measures.best_lagged_correlation([mouth], [sound], max_lag=5)
    assert best is not None and best.lag == 3 and best.r == pytest.approx(1.0, abs=1e-6)
    ahead = measures.best_lagged_correlation([sound[2:]], [sound[:-2]], max_lag=5)  # mouth 2 early
    assert ahead is not None and ahead.lag == -2


def test_best_lag_skips_missing_faces_and_scores_a_still_mouth_zero() -> None:
    rng = np.random.default_rng(1)
    sound = measures.smooth(rng.normal(size=200))
    mouth = sound.copy()
    mouth[::7] = np.nan  # no face found in those frames
    best = measures.best_lagged_correlation([mouth], [sound], max_lag=2)
    assert best is not None and best.lag == 0 and best.r == pytest.approx(1.0)
    still = measures.best_lagged_correlation([np.full(200, 0.1)], [sound], max_lag=2)
    assert still is not None and still.r == 0.0
    assert measures.best_lagged_correlation([mouth[:20]], [sound[:20]], max_lag=2) is None


def test_procrustes_distance_agrees_with_scipy() -> None:
    rng = np.random.default_rng(2)
    shape = rng.normal(size=(13, 2))
    angle = 0.4
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = 3.0 * shape @ rotation + [40, -7]
    assert measures.procrustes_distance(moved, shape) == pytest.approx(0.0, abs=1e-9)
    other = shape + rng.normal(scale=0.2, size=shape.shape)
    # scipy's disparity d (both shapes at unit Frobenius norm, the second scaled to fit) relates to
    # this distance (both at unit RMS radius, rotation only) as D² = 2·(1 − √(1 − d)).
    _, _, disparity = scipy.spatial.procrustes(shape, other)
    expected = np.sqrt(2 * (1 - np.sqrt(1 - disparity)))
    assert measures.procrustes_distance(other, shape) == pytest.approx(expected, rel=1e-6)


def test_colour_drift_at_seams_and_from_the_opening() -> None:
    times = np.arange(0, 6, 0.25)
    lab = np.tile([60.0, 10.0, 20.0], (len(times), 1))
    lab[times >= 3.0] += [0.0, 3.0, 4.0]  # a 5 ΔE jump at 3 s
    assert measures.colour_drift(times, lab, boundaries_s=[3.0]) == pytest.approx(5.0)
    assert measures.colour_drift(times, lab, boundaries_s=[1.5]) == pytest.approx(0.0)
    faded = lab.copy()
    faded[np.abs(times - 3.0) < 0.2] = 0  # the crossfade around the cut: not the seam's colour
    assert measures.colour_drift(times, faded, boundaries_s=[3.0]) == pytest.approx(5.0)
    assert measures.colour_drift(times, lab, window_s=2.0) == pytest.approx(5.0)
    assert measures.colour_drift(times[:2], lab[:2], window_s=2.0) is None


def test_sampling_stays_flat_as_videos_grow() -> None:
    from talkstack.engines.quality import _lipsync_windows, _spread

    sampling = QualitySampling()
    assert _lipsync_windows(125, FPS, sampling) == [range(125)]  # a short clip: every frame
    windows = _lipsync_windows(FPS * 600, FPS, sampling)  # ten minutes
    assert len(windows) == 3 and sum(len(w) for w in windows) == 225
    assert windows[0].start > 0 and windows[-1].stop < FPS * 600  # spread over the video
    assert len(_spread(FPS * 600, FPS, (), sampling)) == sampling.max_spread
    cut = _spread(FPS * 20, FPS, [10.0], sampling) - _spread(FPS * 20, FPS, (), sampling)
    assert len(cut) == 2 * sampling.boundary_samples
    assert all(abs(i / FPS - 10.0) >= measures.SEAM_GAP_S - 1e-6 for i in cut)  # not in the crossfade


# --- the report on the bundled sample ---------------------------------------------------------------
# These render and re-encode real video: `slow`, like tests/integration/test_lite_avatar.py.


@pytest.fixture(scope="module")
def rendered(media, tmp_path_factory):
    """The lite engine's render of the bundled portrait speaking the first 5 s of the sample."""
    d = tmp_path_factory.mktemp("quality")
    return render_avatar(media["portrait"], media["speech_5s"], d / "avatar.mp4")


@pytest.fixture(scope="module")
def speech(media) -> tuple[np.ndarray, int]:
    clip = read_audio(media["speech"])
    return clip.samples, clip.sample_rate


def remux(video: Path, audio: Path, out: Path, seconds: float) -> Path:
    """The same frames with another sound track, cut to `seconds`."""
    (
        ffmpeg.output(
            ffmpeg.input(str(video)).video,
            ffmpeg.input(str(audio)).audio,
            str(out),
            vcodec="copy",
            acodec="aac",
            t=seconds,
        )
        .global_args("-hide_banner", "-loglevel", "error")
        .run(cmd=ffmpeg_exe(), overwrite_output=True, quiet=True)
    )
    return out


def rewrite(video: Path, out: Path, audio: Path, change, keep: int | None = None) -> Path:
    frames = [change(i, frame) for i, frame in enumerate(list(iter_frames(video))[:keep])]
    h, w = frames[0].shape[:2]
    with Mp4Writer(out, w, h, FPS, audio=audio) as writer:
        for frame in frames:
            writer.write(frame)
    return out


@pytest.mark.slow
def test_the_bundled_sample_passes(rendered, portrait_rgb) -> None:
    report = rendered.quality
    assert report is not None, rendered.warnings
    assert report.passed, report
    assert report.lipsync >= 0.6 and abs(report.lipsync_lag_s) <= 2 / FPS
    assert report.frames == report.expected_frames == rendered.frames == 125
    assert abs(report.av_offset_s) <= 1 / FPS
    assert report.faces_found == 1.0 and report.sampled_frames == 125  # a 5 s clip: every frame
    assert report.identity_drift < 0.08 and report.colour_drift < 1.5
    assert {c.name for c in report.checks} == {"lipsync", "identity", "colour", "frames", "av_sync"}
    assert all(c.passed for c in report.checks)


@pytest.mark.slow
@pytest.mark.parametrize("shift_s", [0.5, -0.5])
def test_lipsync_drops_when_the_audio_is_shifted_half_a_second(
    rendered, speech, portrait_rgb, tmp_path, shift_s
):
    samples, rate = speech
    pad = np.zeros(int(abs(shift_s) * rate), np.float32)
    # Delayed: silence first, the sound half a second late. Advanced: the first half second cut.
    moved = np.concatenate([pad, samples]) if shift_s > 0 else samples[len(pad) :]
    audio = write_wav(tmp_path / "moved.wav", moved[: 5 * rate], rate)
    report = assess_avatar(remux(rendered.output, audio, tmp_path / "moved.mp4", 5.0), portrait_rgb)
    assert report.lipsync < THRESHOLDS.min_lipsync < rendered.quality.lipsync
    assert report.lipsync < rendered.quality.lipsync - 0.4
    lipsync = next(c for c in report.checks if c.name == "lipsync")
    assert lipsync.passed is False and not report.passed


@pytest.mark.slow
def test_lipsync_drops_when_the_audio_is_another_speech(rendered, portrait_rgb, tmp_path):
    from talkstack.engines.lite.voice import synthesize

    other = tmp_path / "other.wav"
    synthesize("A different sentence entirely, spoken by a different voice, with its own rhythm.", other)
    report = assess_avatar(remux(rendered.output, other, tmp_path / "other.mp4", 5.0), portrait_rgb)
    assert report.lipsync < THRESHOLDS.min_lipsync < rendered.quality.lipsync
    assert report.lipsync < rendered.quality.lipsync - 0.4


def _stretch(frame: np.ndarray, sx: float, sy: float) -> np.ndarray:
    h, w = frame.shape[:2]
    big = cv2.resize(frame, (round(w * sx), round(h * sy)))
    y0, x0 = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    return np.ascontiguousarray(big[y0 : y0 + h, x0 : x0 + w])


def _warm(frame: np.ndarray) -> np.ndarray:
    return np.clip(frame.astype(np.float32) * (1.15, 1.0, 0.8), 0, 255).astype(np.uint8)


def _oversaturated(frame: np.ndarray) -> np.ndarray:
    """The drift long video diffusion tends to: colours more saturated and brighter."""
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV).astype(np.float32) * (1.0, 1.35, 1.1)
    return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)


@pytest.mark.slow
def test_identity_drift_rises_when_the_face_is_warped_or_recoloured(rendered, media, portrait_rgb, tmp_path):
    def identity(change) -> float:
        video = rewrite(rendered.output, tmp_path / "changed.mp4", media["speech_5s"], change)
        report = assess_avatar(video, portrait_rgb, sampling=NO_LIPSYNC)
        assert report.faces_found == 1.0
        return report.identity_drift

    same = identity(lambda _i, f: f)
    taller = identity(lambda _i, f: _stretch(f, 1.0, 1.25))  # a face a quarter longer
    warm = identity(lambda _i, f: _warm(f))  # another skin tone
    assert same < 0.06
    assert taller > same + 0.04
    assert warm > THRESHOLDS.max_identity_drift > same


@pytest.mark.slow
def test_colour_jump_between_chunks_is_measured_and_matching_removes_it(
    rendered, media, portrait_rgb, tmp_path
):
    # The sample rendered as two chunks cut at 2.5 s (0.32 s overlap), the second drifted.
    frames = list(iter_frames(rendered.output))
    chunks = [Chunk(0, 0.0, 2.5, 0.0, 2.66, True), Chunk(1, 2.5, 5.0, 2.34, 5.0, True)]
    videos = []
    for chunk, change in zip(chunks, [lambda f: f, _oversaturated], strict=True):
        path = tmp_path / f"chunk{chunk.index}.mp4"
        with Mp4Writer(path, 512, 512, FPS) as out:
            for frame in frames[round(chunk.render_start_s * FPS) : round(chunk.render_end_s * FPS)]:
                out.write(change(frame))
        videos.append(path)

    def seam(reference) -> float:
        out = tmp_path / f"joined-{reference is None}.mp4"
        stitch_chunks(chunks, videos, media["speech_5s"], out, reference=reference)
        report = assess_avatar(out, portrait_rgb, boundaries_s=[2.5], sampling=NO_LIPSYNC)
        return report.colour_drift

    unmatched, matched = seam(None), seam(portrait_rgb)
    assert unmatched > THRESHOLDS.max_colour_drift
    assert matched < 2.3 and matched < unmatched / 5  # below what an eye notices


@pytest.mark.slow
def test_a_truncated_video_fails_the_frame_and_av_checks(rendered, media, portrait_rgb, tmp_path):
    # A render that stopped a second early, muxed with the whole speech.
    video = rewrite(rendered.output, tmp_path / "short.mp4", media["speech_5s"], lambda _i, f: f, keep=100)
    report = assess_avatar(video, portrait_rgb, speech_s=5.0, sampling=NO_LIPSYNC)
    checks = {c.name: c for c in report.checks}
    assert (report.frames, report.expected_frames) == (100, 125)
    assert checks["frames"].value == -25 and checks["frames"].passed is False
    assert report.av_offset_s == pytest.approx(-1.0, abs=0.05)
    assert checks["av_sync"].passed is False
    assert checks["lipsync"].passed is None  # not sampled: never fails a job
    assert not report.passed


def test_a_video_without_a_face_is_not_measured_and_does_not_fail(media, tmp_path, portrait_rgb):
    grey = np.full((128, 128, 3), 120, np.uint8)
    video = tmp_path / "noface.mp4"
    with Mp4Writer(video, 128, 128, FPS, audio=media["speech_5s"]) as out:
        for _ in range(125):
            out.write(grey)
    report = assess_avatar(video, portrait_rgb, sampling=QualitySampling(lipsync_s=2))
    checks = {c.name: c for c in report.checks}
    assert report.faces_found == 0.0 and report.lipsync is None and report.identity_drift is None
    assert checks["lipsync"].passed is None and checks["identity"].passed is None
    assert report.passed  # frames and A/V line up; nothing measured failed


def test_measuring_never_fails_a_render(tmp_path):
    broken = tmp_path / "not-a-video.mp4"
    broken.write_bytes(b"nothing here")
    result = with_quality(
        RenderResult(output=broken, bytes=12, duration_s=0.0), np.zeros((8, 8, 3), np.uint8)
    )
    assert result.quality is None
    assert any("quality report not measured" in w for w in result.warnings)


@pytest.mark.slow
def test_the_gpu_avatar_engine_reports_the_same_measures(monkeypatch, tmp_path):
    # The official code faked as in test_avatar_engine: the photo at the model's bucket size,
    # brightening with the speech but with a mouth that never moves.
    from talkstack.engines.gpu.avatar import AvatarEngine
    from tests.conftest import PORTRAIT
    from tests.unit.test_avatar_engine import FakeOfficialCode, _task, tiny_wav2vec2
    from tests.unit.test_avatar_prep import _cut

    fake = FakeOfficialCode()
    engine = AvatarEngine("multitalk", weights_dir=tmp_path / "weights", audio_encoder=tiny_wav2vec2())
    engine.pipeline = object()
    monkeypatch.setattr(AvatarEngine, "_generate", lambda self, *args: fake(self, *args))
    engine.load()
    seen: list[str] = []
    _, result = engine.render(
        _task(), {"image": PORTRAIT, "audio": _cut(tmp_path, 4.0)}, tmp_path, lambda _f, m: seen.append(m)
    )
    report = result.quality
    assert report is not None, result.warnings
    assert report.frames == report.expected_frames == result.frames == 100
    assert report.faces_found == 1.0 and report.identity_drift is not None
    lipsync = next(c for c in report.checks if c.name == "lipsync")
    assert (report.lipsync, lipsync.detail, lipsync.passed) == (0.0, "the mouth does not move", False)
    assert not report.passed
    assert "measuring quality" in seen


@pytest.mark.slow
def test_a_face_in_a_wide_frame_is_found_in_every_sampled_frame(rendered, media, portrait_rgb, tmp_path):
    # The render scaled to 480 px and padded into 832×480 (a 480p landscape bucket): MediaPipe's
    # whole-frame detector finds this face only now and then; the report looks where it last was.
    def landscape(_i: int, frame: np.ndarray) -> np.ndarray:
        wide = np.zeros((480, 832, 3), np.uint8)
        wide[:, 176:656] = cv2.resize(frame, (480, 480), interpolation=cv2.INTER_AREA)
        return wide

    video = rewrite(rendered.output, tmp_path / "wide.mp4", media["speech_5s"], landscape)
    report = assess_avatar(video, portrait_rgb, sampling=NO_LIPSYNC)
    assert report.faces_found == 1.0 and report.sampled_frames >= 5
    assert report.identity_drift < THRESHOLDS.max_identity_drift
