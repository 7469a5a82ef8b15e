from __future__ import annotations

import av
import numpy as np
import pyloudnorm
import pytest
import soundfile

from talkstack.media.audio import ENGINE_SAMPLE_RATE, TARGET_LUFS, prepare_speech, read_audio
from talkstack.settings import MediaLimits
from tests.support import hostile_audio

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


# --- headers that hide the length (issue 15, finding 5) ------------------------------------------
# Each file is refused with AUDIO_TOO_LONG by a decode that stops at the limit, measured in a fresh
# process: ru_maxrss counts PyAV's buffers too (tracemalloc sees only numpy's).
PEAK_MB = 300


def test_a_flac_whose_streaminfo_says_length_unknown_stops_at_the_limit(tmp_path):
    flac = hostile_audio.flac_of_unknown_length(tmp_path / "unknown.flac", seconds=30)
    assert av.open(str(flac)).duration is None  # libav has no length to check before decoding

    outcome = hostile_audio.decode_in_fresh_process(flac, max_audio_seconds=10)

    assert outcome["code"] == "AUDIO_TOO_LONG", outcome
    assert "decoding stopped at the limit" in outcome["message"]
    assert outcome["peak_mb"] < PEAK_MB


@pytest.mark.parametrize("size_word", [0xFFFFFFFF, 0])
def test_a_streaming_wav_with_bogus_sizes_is_refused(tmp_path, size_word):
    wav = hostile_audio.streaming_wav(tmp_path / "stream.wav", seconds=30, size_word=size_word)

    outcome = hostile_audio.decode_in_fresh_process(wav, max_audio_seconds=10)

    assert outcome["code"] == "AUDIO_TOO_LONG", outcome
    assert outcome["peak_mb"] < PEAK_MB


def test_an_mp3_without_a_xing_header_is_timed_by_decoding_not_by_its_first_frame(tmp_path):
    mp3 = hostile_audio.mp3_without_xing(tmp_path / "vbr.mp3", loud_s=1, long_s=150)
    with av.open(str(mp3)) as container:  # the demuxer's estimate: a fraction of the real 151 s
        assert container.duration / av.time_base < 21

    outcome = hostile_audio.decode_in_fresh_process(mp3, max_audio_seconds=20)

    assert outcome["code"] == "AUDIO_TOO_LONG", outcome
    assert "decoding stopped at the limit" in outcome["message"]
    assert outcome["peak_mb"] < PEAK_MB


def test_a_few_mb_flac_bomb_that_decodes_to_over_a_gigabyte_stays_under_300_mb(tmp_path):
    # 94 minutes of 48 kHz stereo in ~2.4 MB; as float32 it is 1.08 GB (the decoder holds mono float32).
    bomb = hostile_audio.flac_bomb(tmp_path / "bomb.flac", seconds=5640)
    assert bomb.stat().st_size < 5 * 2**20
    assert 5640 * 48_000 * 4 > 2**30

    outcome = hostile_audio.decode_in_fresh_process(bomb)  # the default limit: 600 s

    assert outcome["code"] == "AUDIO_TOO_LONG", outcome
    assert outcome["peak_mb"] < PEAK_MB


def test_audio_just_under_the_limit_still_decodes_whole(tmp_path):
    flac = hostile_audio.flac_of_unknown_length(tmp_path / "fits.flac", seconds=9.9)

    clip = read_audio(flac, MediaLimits(max_audio_seconds=10))

    assert clip.info.duration_s == pytest.approx(9.9, abs=0.01)


def test_a_header_claiming_a_huge_rate_does_not_size_the_buffer(tmp_path):
    # 192 kHz is decoded at 48 kHz (the engines want 16 kHz); the file's own rate is still reported.
    path = tmp_path / "hi.flac"
    soundfile.write(str(path), hostile_audio.tone(3, 192_000), 192_000, format="FLAC")

    clip = read_audio(path)

    assert (clip.sample_rate, clip.info.sample_rate) == (48_000, 192_000)
    assert clip.info.duration_s == pytest.approx(3, abs=0.01)
