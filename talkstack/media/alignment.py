"""Align a known text to its speech: when each word is spoken (for captions).

No recogniser is involved: the words are known, only their times are not. The audio's voiced
stretches are found with librosa (`effects.split` on the RMS envelope); the pauses between them are
matched, in order, to the word boundaries where the text predicts them — sentence ends and commas
first — by a small dynamic programme; between two matched pauses the words share the voiced time in
proportion to their expected length (letters, numbers read out). Measured on
clear synthetic speech, word starts land within about a tenth of a second (docs/captions.md).
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np

from talkstack.contract.captions import SpeechTimings, WordTiming
from talkstack.media.audio import read_audio, resample

RATE = 16_000
HOP = 160  # 10 ms analysis frames
TOP_DB = 35.0  # quieter than the loudest frame by this much = not voiced
MIN_PAUSE_S = 0.07
"""Gaps shorter than this are stop closures inside or between words, not pauses."""

# Costs of the pause matching, in seconds of misplacement (tuned on espeak-ng speech, docs/captions.md).
SKIP_PAUSE = 0.05
SKIP_PAUSE_PER_S = 1.0
PUNCTUATION_BONUS = 0.8
UNMARKED_BOUNDARY = 0.1

_SENTENCE_END = re.compile(r"[.!?…。！？]+[\"'”’»)\]]*$")
_CLAUSE_END = re.compile(r"[,;:—–、，；：]+[\"'”’»)\]]*$")
_EN_WEAK = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "and",
        "or",
        "but",
        "is",
        "are",
        "was",
        "were",
        "be",
        "it",
        "its",
        "we",
        "you",
        "your",
        "they",
        "them",
        "their",
        "he",
        "she",
        "his",
        "her",
        "who",
        "that",
        "this",
        "with",
        "as",
        "by",
        "from",
        "can",
        "will",
    ]
)
_CJK_RANGES = (
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),  # CJK ideographs
    (0xAC00, 0xD7AF),  # hangul syllables
    (0xF900, 0xFAFF),
)


def is_cjk(char: str) -> bool:
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in _CJK_RANGES)


def split_words(text: str) -> list[str]:
    """The caption words of `text`: whitespace-separated, punctuation kept on its word. Scripts
    written without spaces (Chinese, Japanese) become one word per character, punctuation kept on
    the character before it."""
    words: list[str] = []
    for token in text.split():
        if not any(is_cjk(c) for c in token):
            words.append(token)
            continue
        for char in token:
            if is_cjk(char) or not words or not unicodedata.category(char).startswith("P"):
                words.append(char)
            else:
                words[-1] += char
    return words


def expected_length(word: str, language: str = "en") -> float:
    """A word's expected spoken length, in letters (only the ratios between words matter).

    Fitted on espeak-ng word timings: a word lasts about 58 ms a letter, its vowel count adding
    nothing measurable, and a digit about five letters (numbers are read out in words)."""
    chars = [c for c in word if c.isalnum()]
    if not chars:
        return 0.3
    if any(is_cjk(c) for c in chars):
        return 3.0 * len(chars)  # a syllable a character
    digits = sum(c.isdigit() for c in chars)
    length = 0.3 + (len(chars) - digits) + 5.3 * digits
    if language.split("-")[0] == "en" and "".join(chars).lower() in _EN_WEAK:
        length *= 0.7  # unstressed function words are said quickly
    return length


def boundary_kind(word: str) -> float:
    """How strongly the text predicts a pause after `word`: 1 sentence end, 0.6 clause, 0 none."""
    if _SENTENCE_END.search(word):
        return 1.0
    if _CLAUSE_END.search(word):
        return 0.6
    return 0.0


@dataclass(frozen=True)
class _Voiced:
    """Voiced stretches (seconds) and the mapping between real time and voiced time."""

    starts: np.ndarray
    ends: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return self.ends - self.starts

    def to_real(self, v: float, *, opening: bool) -> float:
        """Real time of voiced position v; at a stretch's junction, `opening` picks the next
        stretch's start (a word starting) over the previous one's end (a word ending)."""
        cum = np.concatenate([[0.0], np.cumsum(self.lengths)])
        v = float(np.clip(v, 0.0, cum[-1]))
        i = int(np.searchsorted(cum, v, side="right" if opening else "left")) - 1
        i = min(max(i, 0), len(self.starts) - 1)
        return float(self.starts[i] + (v - cum[i]))


def voiced_stretches(samples: np.ndarray, rate: int) -> _Voiced:
    """Where the speech is (librosa.effects.split), with gaps shorter than MIN_PAUSE_S closed."""
    if rate != RATE:
        samples = resample(samples, rate, RATE)
    intervals = librosa.effects.split(samples, top_db=TOP_DB, frame_length=4 * HOP, hop_length=HOP)
    merged: list[list[float]] = []
    for start, end in intervals / RATE:
        if merged and start - merged[-1][1] < MIN_PAUSE_S:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    merged = [m for m in merged if m[1] - m[0] >= 0.03] or merged  # clicks are not speech
    array = np.asarray(merged, dtype=np.float64).reshape(-1, 2)
    return _Voiced(starts=array[:, 0], ends=array[:, 1])


def align_words(audio: Path, text: str, language: str) -> SpeechTimings:
    """When each word of `text` is spoken in `audio` (source "aligned"). Audio that cannot be read
    or is silent is refused like any speech input (read_audio: CORRUPT_MEDIA, AUDIO_SILENT…)."""
    clip = read_audio(Path(audio))
    duration = len(clip.samples) / clip.sample_rate
    words = split_words(text)
    if not words:
        return SpeechTimings(language=language, source="aligned", duration_s=duration, words=[])
    voiced = voiced_stretches(clip.samples, clip.sample_rate)
    if len(voiced.starts) == 0:  # nothing stands out: spread the words over the whole track
        voiced = _Voiced(starts=np.array([0.0]), ends=np.array([duration]))
    spans = place_words(words, voiced, language)
    timings = [
        WordTiming(word=w[:200], start_s=round(s, 3), end_s=round(max(e, s), 3))
        for w, (s, e) in zip(words, spans, strict=True)
    ]
    return SpeechTimings(language=language, source="aligned", duration_s=duration, words=timings)


def place_words(words: list[str], voiced: _Voiced, language: str = "en") -> list[tuple[float, float]]:
    """(start, end) of each word: pauses anchored to word boundaries, the rest shared by length."""
    weights = np.array([expected_length(w, language) for w in words])
    lengths = voiced.lengths
    total_voiced = float(lengths.sum())
    # Expected voiced-time position of each boundary (after word b, b = 0..n-2) at a steady rate.
    cum_w = np.cumsum(weights)
    expected = cum_w[:-1] / cum_w[-1] * total_voiced
    # Each pause (between stretch p and p+1) sits at this voiced-time position.
    pause_at = np.cumsum(lengths)[:-1]
    pause_len = voiced.starts[1:] - voiced.ends[:-1]
    kinds = np.array([boundary_kind(w) for w in words[:-1]])
    anchors = _match_pauses(pause_at, pause_len, expected, kinds)

    spans: list[tuple[float, float]] = [(0.0, 0.0)] * len(words)
    # Groups of words between anchored boundaries share the voiced time between those pauses.
    edges = [(-1, -1), *sorted(anchors.items()), (len(words) - 1, len(lengths) - 1)]
    cum_len = np.concatenate([[0.0], np.cumsum(lengths)])
    for (b0, p0), (b1, p1) in itertools.pairwise(edges):
        first, last = b0 + 1, b1  # words first..last
        v0, v1 = cum_len[p0 + 1], cum_len[p1 + 1]
        share = np.concatenate([[0.0], np.cumsum(weights[first : last + 1])])
        share = v0 + (v1 - v0) * share / share[-1]
        for k, index in enumerate(range(first, last + 1)):
            start = voiced.to_real(share[k], opening=True)
            end = voiced.to_real(share[k + 1], opening=False)
            spans[index] = (start, max(start, end))
    return spans


def _match_pauses(
    pause_at: np.ndarray, pause_len: np.ndarray, expected: np.ndarray, kinds: np.ndarray
) -> dict[int, int]:
    """Monotone matching of pauses to word boundaries: {boundary: pause}.

    Costs are in seconds of misplacement: matching pause p to boundary b costs the distance between
    where the pause is and where the text puts b, less a bonus when b ends a sentence or clause (a
    little more when it has no punctuation: short gaps are often stop closures inside words); a
    pause left unmatched (a gap inside a word) costs more the longer it is; a punctuated boundary
    left without a pause costs a little (speakers do not always pause at commas).
    """
    n_p, n_b = len(pause_at), len(expected)
    if n_p == 0 or n_b == 0:
        return {}
    skip_pause = SKIP_PAUSE + SKIP_PAUSE_PER_S * np.minimum(pause_len, 1.0)
    skip_boundary = 0.08 * kinds
    strength = np.minimum(pause_len / 0.1, 1.0)
    inf = float("inf")
    dp = np.full((n_p + 1, n_b + 1), inf)
    move = np.zeros((n_p + 1, n_b + 1), dtype=np.int8)  # 1 skip pause, 2 skip boundary, 3 match
    dp[0, 0] = 0.0
    for b in range(1, n_b + 1):
        dp[0, b] = dp[0, b - 1] + skip_boundary[b - 1]
        move[0, b] = 2
    for p in range(1, n_p + 1):
        dp[p, 0] = dp[p - 1, 0] + skip_pause[p - 1]
        move[p, 0] = 1
        match = np.abs(pause_at[p - 1] - expected) - PUNCTUATION_BONUS * kinds * strength[p - 1]
        match += UNMARKED_BOUNDARY * (kinds == 0)
        for b in range(1, n_b + 1):
            best, how = dp[p - 1, b] + skip_pause[p - 1], 1
            if (cost := dp[p, b - 1] + skip_boundary[b - 1]) < best:
                best, how = cost, 2
            if (cost := dp[p - 1, b - 1] + match[b - 1]) < best:
                best, how = cost, 3
            dp[p, b], move[p, b] = best, how
    anchors: dict[int, int] = {}
    p, b = n_p, n_b
    while p > 0 or b > 0:
        step = move[p, b]
        if step == 3:
            anchors[b - 1] = p - 1
            p, b = p - 1, b - 1
        elif step == 1:
            p -= 1
        else:
            b -= 1
    return anchors
