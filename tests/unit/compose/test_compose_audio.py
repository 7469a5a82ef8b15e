"""The soundtrack, measured on the encoded video's AAC track: each scene's sound where it plays,
no silent gap across scene boundaries, music ducked under speech by about duck_db."""

from __future__ import annotations

import subprocess

import librosa
import numpy as np
import pytest

from talkstack.compose.render import compose_video
from talkstack.compose.sources import SAMPLE_RATE, read_sound
from talkstack.media.ffmpeg import ffmpeg_exe
from tests.unit.compose.compose_media import avatar, colour_video, ignore_progress, media, options, sine_wav


def _levels_db(samples: np.ndarray, window_s: float = 0.02) -> np.ndarray:
    hop = int(window_s * SAMPLE_RATE)
    rms = librosa.feature.rms(y=samples, frame_length=hop, hop_length=hop, center=False)[0]
    return 20 * np.log10(np.maximum(rms, 1e-9))


@pytest.mark.parametrize("transition", [{"type": "cut"}, {"type": "crossfade", "duration_s": 0.5}])
def test_sound_runs_on_across_scene_boundaries_with_no_silent_gap(tmp_path, transition):
    # Whole frames (40 at 25 fps), so each video's sound lasts as long as its frames.
    one = colour_video(tmp_path / "one.mp4", 1.6, "red", tone_hz=440)
    two = colour_video(tmp_path / "two.mp4", 1.6, "blue", tone_hz=660)
    opts = options([media("one.mp4", transition=transition), media("two.mp4")])
    composed = compose_video(
        opts, {"scene_0_media": one, "scene_1_media": two}, tmp_path / "out", ignore_progress, watermark=False
    )
    sound = read_sound(composed.outputs["video"])
    assert sound is not None
    assert abs(len(sound) / SAMPLE_RATE - composed.duration_s) < 0.05
    levels = _levels_db(sound[int(0.1 * SAMPLE_RATE) : -int(0.1 * SAMPLE_RATE)])
    assert levels.min() > -30, f"a gap in the sound: {levels.min():.1f} dBFS"
    # Each scene's own tone plays in its own time.
    boundary = 1.6 - (0.5 if transition["type"] == "crossfade" else 0.0)
    spectrum = np.abs(np.fft.rfft(sound[int(0.2 * SAMPLE_RATE) : int(0.7 * SAMPLE_RATE)]))
    late = np.abs(
        np.fft.rfft(sound[int((boundary + 0.6) * SAMPLE_RATE) : int((boundary + 1.1) * SAMPLE_RATE)])
    )
    hz = np.fft.rfftfreq(int(0.5 * SAMPLE_RATE), 1 / SAMPLE_RATE)
    assert hz[spectrum.argmax()] == pytest.approx(440, abs=5)
    assert hz[late.argmax()] == pytest.approx(660, abs=5)


def _band_db(sound: np.ndarray, start_s: float, end_s: float, hz: float) -> float:
    """Level of the `hz` component between two times (librosa STFT, a few bins around it)."""
    part = sound[int(start_s * SAMPLE_RATE) : int(end_s * SAMPLE_RATE)]
    spec = np.abs(librosa.stft(part, n_fft=4096, hop_length=1024)) ** 2
    freqs = librosa.fft_frequencies(sr=SAMPLE_RATE, n_fft=4096)
    band = (freqs > hz - 60) & (freqs < hz + 60)
    return float(10 * np.log10(spec[band].sum(axis=0).mean()))


def test_music_ducks_under_speech_by_about_duck_db(tmp_path):
    # The avatar "speaks" (a 440 Hz tone) for its first 1.5 s of 5; the music is a 2 kHz tone.
    render = colour_video(tmp_path / "render.mp4", 5.0, "gray", tone_hz=440, tone_s=1.5)
    music = sine_wav(tmp_path / "music.wav", 2000, 1.0)  # looped to the video's length
    opts = options([avatar()], options={"music": {"media": "music.wav", "volume_db": -12, "duck_db": 12}})
    composed = compose_video(
        opts, {"scene_0_video": render, "music": music}, tmp_path / "out", ignore_progress, watermark=False
    )
    sound = read_sound(composed.outputs["video"])
    assert sound is not None
    under_speech = _band_db(sound, 0.5, 1.3, 2000)
    alone = _band_db(sound, 3.3, 3.9, 2000)
    assert alone - under_speech == pytest.approx(12, abs=1.5)
    # Where nobody speaks the music plays at volume_db: the file's 0.5 sine 12 dB down.
    reference = read_sound(sine_wav(tmp_path / "ref.wav", 2000, 1.0, amplitude=0.5 * 10 ** (-12 / 20)))
    assert reference is not None
    assert alone == pytest.approx(_band_db(reference, 0.1, 0.7, 2000), abs=1.5)


def test_a_video_uploads_sound_is_dropped_when_keep_audio_is_off(tmp_path):
    clip = colour_video(tmp_path / "clip.mp4", 1.0, tone_hz=440)
    opts = options(
        [{"rendered": False, "scene": {"source": {"type": "media", "media": "c.mp4", "keep_audio": False}}}]
    )
    composed = compose_video(
        opts, {"scene_0_media": clip}, tmp_path / "out", ignore_progress, watermark=False
    )
    sound = read_sound(composed.outputs["video"])
    assert sound is None or np.abs(sound).max() < 1e-3


def test_aac_music_loops_with_no_gap_of_padding_at_its_seams(tmp_path):
    """AAC pads its last frame; ffmpeg cuts the padding at the MP4's stated duration, and so must
    the compositor, or a looped music bed drops out for a few milliseconds at every seam."""
    from talkstack.compose.audio import music_bed

    music = tmp_path / "loop.m4a"
    tone = "sine=frequency=440:sample_rate=44100:duration=1"
    subprocess.run(
        [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", tone, "-c:a", "aac", str(music)],
        check=True,
    )
    assert len(read_sound(music)) == SAMPLE_RATE  # type: ignore[arg-type]
    bed = music_bed(music, 3 * SAMPLE_RATE, 0.0, 0.0, 0.0)
    quiet = np.abs(bed[SAMPLE_RATE // 2 : -SAMPLE_RATE // 2]) < 0.01
    longest, run = 0, 0
    for q in quiet:
        run = run + 1 if q else 0
        longest = max(longest, run)
    assert longest < SAMPLE_RATE // 1000  # no silent millisecond across the seams at 1 s and 2 s
