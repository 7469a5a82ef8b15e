"""align_words on real speech from the lite voice (espeak-ng), checked against timings known
independently of the aligner: pieces synthesised one at a time and joined with silences of known
length, so where each piece starts is known exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from talkstack.engines.lite.voice import synthesize
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.alignment import align_words, expected_length, split_words
from talkstack.media.audio import read_audio, write_wav

TOLERANCE_S = 0.2


def _onset_and_end(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """First and last sample louder than -40 dBFS: where a lone clip's speech starts and ends."""
    loud = np.flatnonzero(np.abs(samples) > 10 ** (-40 / 20))
    return loud[0] / rate, (loud[-1] + 1) / rate


def _joined(pieces: list[str], gap_s: float, tmp: Path) -> tuple[Path, list[tuple[float, float]]]:
    """Each piece spoken on its own, joined with `gap_s` of silence; (start, end) of each."""
    chunks, spans, at, rate = [], [], 0.25, 0
    for n, piece in enumerate(pieces):
        synthesize(piece, tmp / f"piece{n}.wav")
        clip = read_audio(tmp / f"piece{n}.wav")
        rate = clip.sample_rate
        onset, end = _onset_and_end(clip.samples, rate)
        spans.append((at + onset, at + end))
        chunks.append(clip.samples)
        at += len(clip.samples) / rate + gap_s
    silence = np.zeros(int(gap_s * rate), dtype=np.float32)
    joined = [np.zeros(int(0.25 * rate), dtype=np.float32)]
    for chunk in chunks:
        joined += [chunk, silence]
    return write_wav(tmp / "joined.wav", np.concatenate(joined), rate), spans


def test_words_said_apart_are_placed_at_their_own_onsets(tmp_path):
    words = ["Captions", "follow", "every", "single", "spoken", "word."]
    audio, spans = _joined(words, 0.4, tmp_path)

    timings = align_words(audio, " ".join(words), "en")

    assert timings.source == "aligned" and [w.word for w in timings.words] == words
    for placed, (start, end) in zip(timings.words, spans, strict=True):
        assert placed.start_s == pytest.approx(start, abs=TOLERANCE_S), placed
        assert placed.end_s == pytest.approx(end, abs=TOLERANCE_S), placed


def test_sentences_land_on_their_own_speech_and_their_words_stay_inside_it(tmp_path):
    sentences = [
        "Welcome to the show, everyone.",
        "Today we build a talking video from one photo.",
        "Thanks for watching!",
    ]
    audio, spans = _joined(sentences, 0.5, tmp_path)

    timings = align_words(audio, " ".join(sentences), "en")

    assert timings.duration_s == pytest.approx(read_audio(audio).info.duration_s, abs=0.01)
    words = iter(timings.words)
    for sentence, (start, end) in zip(sentences, spans, strict=True):
        placed = [next(words) for _ in sentence.split()]
        assert placed[0].start_s == pytest.approx(start, abs=TOLERANCE_S)
        assert placed[-1].end_s == pytest.approx(end, abs=TOLERANCE_S)
        for word in placed:  # in order, and within this sentence's sound
            assert start - TOLERANCE_S <= word.start_s <= word.end_s <= end + TOLERANCE_S
        starts = [w.start_s for w in placed]
        assert starts == sorted(starts)


def test_a_silent_track_is_refused_with_its_code(tmp_path):
    audio = write_wav(tmp_path / "quiet.wav", np.zeros(16_000, dtype=np.float32), 16_000)
    with pytest.raises(TalkstackError) as refused:
        align_words(audio, "nothing to hear", "en")
    assert refused.value.code == ErrorCode.AUDIO_SILENT


def test_text_is_split_into_words_with_their_punctuation_and_cjk_per_character():
    assert split_words("Hello,  world! It's 2027.") == ["Hello,", "world!", "It's", "2027."]
    assert split_words("你好，世界。") == ["你", "好，", "世", "界。"]
    assert split_words("مرحبا بالعالم") == ["مرحبا", "بالعالم"]


def test_longer_words_and_numbers_are_expected_to_last_longer():
    assert expected_length("photography") > expected_length("photo") > expected_length("a")
    assert expected_length("2027") > expected_length("year")
    assert expected_length("the") < expected_length("the", "fr")  # an English weak form only
