from __future__ import annotations

import pytest

from talkstack.engines.lite.voice import LiteVoiceOptions, synthesize
from talkstack.engines.registry import get_model
from talkstack.media.audio import read_audio
from talkstack.settings import MediaLimits, get_settings

TEXT = "The quick brown fox jumps over the lazy dog."


def test_speaks_to_wav_and_mp3(tmp_path):
    wav = synthesize(TEXT, tmp_path / "a.wav")
    mp3 = synthesize(TEXT, tmp_path / "a.mp3")
    assert read_audio(wav.output).info.format == "wav" and wav.duration_s > 1.5
    assert read_audio(mp3.output).info.format == "mp3"
    assert mp3.duration_s == pytest.approx(wav.duration_s, abs=0.15)


def test_rate_and_pitch_options_change_the_speech(tmp_path):
    slow = synthesize(TEXT, tmp_path / "slow.wav", options=LiteVoiceOptions(speed=0.6))
    fast = synthesize(TEXT, tmp_path / "fast.wav", options=LiteVoiceOptions(speed=1.8))
    assert slow.duration_s > 2 * fast.duration_s
    low = synthesize(TEXT, tmp_path / "low.wav", options=LiteVoiceOptions(pitch=10))
    high = synthesize(TEXT, tmp_path / "high.wav", options=LiteVoiceOptions(pitch=90))
    assert low.output.read_bytes() != high.output.read_bytes()


def test_it_says_it_is_not_a_voice_clone(tmp_path, media):
    result = synthesize(TEXT, tmp_path / "a.wav", reference_voice=media["speech"])
    assert any("not a voice clone" in w for w in result.warnings)
    assert "NOT a voice clone" in get_model("lite-voice").description


@pytest.mark.parametrize(
    ("text", "options", "name", "code"),
    [
        ("   ", LiteVoiceOptions(), "a.wav", "INVALID_REQUEST"),
        ("x" * 51, LiteVoiceOptions(), "a.wav", "TEXT_TOO_LONG"),
        (TEXT, LiteVoiceOptions(speed=5), "a.wav", "INVALID_REQUEST"),
        (TEXT, LiteVoiceOptions(voice="xx-nonexistent"), "a.wav", "INVALID_REQUEST"),
        (TEXT, LiteVoiceOptions(), "a.ogg", "INVALID_REQUEST"),
    ],
)
def test_bad_requests(tmp_path, error_code, text, options, name, code):
    limits = MediaLimits(max_text_chars=50)
    assert error_code(synthesize, text, tmp_path / name, options=options, limits=limits) == code
    assert not (tmp_path / name).exists()


def test_missing_espeak_is_model_unavailable_with_an_install_hint(tmp_path, monkeypatch, error_code):
    monkeypatch.setenv("TALKSTACK_ESPEAK", "/nonexistent/espeak-ng")
    get_settings.cache_clear()
    try:
        with pytest.raises(Exception) as info:
            synthesize(TEXT, tmp_path / "a.wav")
        assert info.value.code == "MODEL_UNAVAILABLE" and "apt-get install espeak-ng" in info.value.message
        assert not get_model("lite-voice").available
    finally:
        get_settings.cache_clear()
