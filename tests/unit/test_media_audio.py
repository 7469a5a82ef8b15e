from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from talkstack.media.audio import ENGINE_SAMPLE_RATE, TARGET_LUFS, prepare_speech, read_audio
from talkstack.settings import MediaLimits

SPEECH_S = 13.54


@pytest.mark.parametrize("name", ["speech", "speech_mp3", "speech_m4a", "speech_flac", "speech_ogg"])
def test_every_supported_format_decodes_to_the_same_duration(media, name):
    clip = read_audio(media[name])
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert clip.info.duration_s == pytest.approx(SPEECH_S, abs=0.06)
    assert clip.info.sample_rate == 22050 and clip.info.channels == 1
    assert clip.info.voiced_s > 5  # the clip is mostly speech


def test_format_and_codec_are_reported(media):
    assert (read_audio(media["speech_m4a"]).info.format, read_audio(media["speech_m4a"]).info.codec) == (
        "m4a",
        "aac",
    )
    assert read_audio(media["speech_ogg"]).info.codec == "vorbis"


def test_prepare_speech_resamples_to_16k_and_normalises_to_minus_23_lufs(media):
    clip = read_audio(media["speech"])
    quiet = type(clip)(clip.samples * 0.05, clip.sample_rate, clip.info)  # ~26 dB quieter input
    for source in (clip, quiet):
        out = prepare_speech(source)
        assert len(out) == pytest.approx(len(source.samples) * ENGINE_SAMPLE_RATE / 22050, abs=2)
        loudness = pyloudnorm.Meter(ENGINE_SAMPLE_RATE).integrated_loudness(out.astype(np.float64))
        assert loudness == pytest.approx(TARGET_LUFS, abs=0.5)
        assert np.max(np.abs(out)) < 1.0


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("empty", "EMPTY_INPUT"),
        ("text_wav", "UNSUPPORTED_MEDIA"),
        ("portrait", "UNSUPPORTED_MEDIA"),  # an image given as audio
        ("corrupt_flac", "CORRUPT_MEDIA"),
        ("corrupt_m4a", "CORRUPT_MEDIA"),
        ("silent", "AUDIO_SILENT"),
        ("short", "AUDIO_TOO_SHORT"),
    ],
)
def test_bad_audio_gets_a_specific_code(media, error_code, name, code):
    assert error_code(read_audio, media[name]) == code


def test_missing_audio_file(tmp_path, error_code):
    assert error_code(read_audio, tmp_path / "nope.wav") == "INPUT_NOT_FOUND"


def test_audio_over_the_configured_limit(media, error_code):
    assert error_code(read_audio, media["long"], MediaLimits(max_audio_seconds=10)) == "AUDIO_TOO_LONG"
    assert read_audio(media["long"], MediaLimits(max_audio_seconds=20)).info.duration_s > 10


def test_long_audio_is_refused_from_its_header_before_decoding(media, error_code, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded audio that the header already showed to be too long")

    monkeypatch.setattr("talkstack.media.audio.av.AudioResampler", no_decoding)
    assert error_code(read_audio, media["speech_mp3"], MediaLimits(max_audio_seconds=5)) == "AUDIO_TOO_LONG"
