"""Captions of a composition: cue cutting, SRT/WebVTT that parse back, and the burned-in overlays'
pixels (talkstack/compose/captions.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import srt
import webvtt

from talkstack.compose.captions import (
    MAX_CUE_S,
    MIN_CUE_S,
    CaptionOverlay,
    bottom_margin,
    build_cues,
    text_width,
    write_srt,
    write_vtt,
)
from talkstack.contract.captions import SpeechTimings, WordTiming
from talkstack.contract.composition import Captions

SCRIPT = (
    "Welcome to talkstack. Today we will show you how to turn a single photo into a talking video, "
    "with captions, music and a background of your choice. It takes about a minute. Ready? Let's go!"
)


def timed(text: str, *, rate_s: float = 0.32, pause_s: float = 0.5, start_s: float = 0.2) -> SpeechTimings:
    """Steady speech: each word `rate_s` long, with a pause after sentences."""
    words, at = [], start_s
    for word in text.split():
        words.append(WordTiming(word=word, start_s=round(at, 3), end_s=round(at + rate_s - 0.04, 3)))
        at += rate_s + (pause_s if word[-1] in ".!?" else 0.0)
    return SpeechTimings(language="en", source="tts", duration_s=at + 0.3, words=words)


def check_cues(cues, timings: SpeechTimings, offset: float, max_chars: int, max_lines: int) -> None:
    placed = [w for c in cues for w in c.words]
    assert [w.word for w in placed] == [w.word for w in timings.words]  # each word once, in order
    for word, original in zip(placed, timings.words, strict=True):
        assert word.start_s == pytest.approx(original.start_s + offset)
    for cue in cues:
        lines = cue.text.split("\n")
        assert len(lines) <= max_lines
        assert all(text_width(line) <= max_chars for line in lines if " " in line)
        assert cue.text.replace("\n", " ") == " ".join(w.word for w in cue.words)
        assert cue.start_s == cue.words[0].start_s
        assert cue.end_s >= cue.words[-1].end_s or cue.end_s - cue.start_s == pytest.approx(MAX_CUE_S)
        assert cue.end_s - cue.start_s <= MAX_CUE_S + 1e-9
    for cue, following in itertools.pairwise(cues):
        assert cue.end_s <= following.start_s  # no overlaps
        gap = following.start_s - cue.words[-1].end_s
        assert cue.end_s - cue.start_s >= MIN_CUE_S - 1e-9 or cue.end_s == following.start_s or gap < 0.45


@pytest.mark.parametrize(("max_chars", "max_lines"), [(42, 2), (20, 2), (16, 1)])
def test_cues_keep_every_word_once_within_the_line_limits_and_never_overlap(max_chars, max_lines):
    timings = timed(SCRIPT)
    cues = build_cues(timings, offset_s=3.0, max_line_chars=max_chars, max_lines=max_lines)
    check_cues(cues, timings, 3.0, max_chars, max_lines)


def test_cues_are_cut_at_sentence_ends_and_pauses_first():
    cues = build_cues(timed(SCRIPT), offset_s=0.0, max_line_chars=42)
    for cue in cues[:-1]:  # every cue ends a sentence or stops at a comma when one is too long
        assert cue.words[-1].word[-1] in ".!?,", cue.text
    assert cues[0].text == "Welcome to talkstack."
    # A long silence inside a sentence ends the cue too.
    words = [
        WordTiming(word=w, start_s=s, end_s=s + 0.3) for w, s in [("and", 0), ("then", 0.4), ("nothing", 2.5)]
    ]
    cues = build_cues(
        SpeechTimings(source="aligned", duration_s=3, words=words), offset_s=0, max_line_chars=42
    )
    assert [c.text for c in cues] == ["and then", "nothing"]
    assert cues[0].end_s == pytest.approx(0.8)  # held up to the minimum length


def test_a_long_run_without_punctuation_is_cut_into_cues_of_at_most_seven_seconds():
    text = " ".join(["word"] * 60)
    timings = timed(text, rate_s=0.45)
    cues = build_cues(timings, offset_s=0.0, max_line_chars=80, max_lines=3)
    assert len(cues) > 1
    check_cues(cues, timings, 0.0, 80, 3)


def test_cjk_text_is_joined_without_spaces_and_wrapped_by_display_width():
    words = [
        WordTiming(word=c, start_s=i * 0.25, end_s=i * 0.25 + 0.2)
        for i, c in enumerate("今天我们来做一个会说话的视频。")
    ]
    cues = build_cues(
        SpeechTimings(language="zh", source="aligned", duration_s=4, words=words),
        offset_s=0,
        max_line_chars=10,
    )
    assert "".join(c.text.replace("\n", "") for c in cues) == "今天我们来做一个会说话的视频。"
    assert all(text_width(line) <= 10 for c in cues for line in c.text.split("\n"))


def test_srt_and_vtt_parse_back_to_the_cues(tmp_path):
    cues = build_cues(timed(SCRIPT + " Q&A <soon> --> here."), offset_s=1.5, max_line_chars=32)

    parsed = list(srt.parse(write_srt(cues, tmp_path / "c.srt").read_text(encoding="utf-8")))
    assert [s.index for s in parsed] == list(range(1, len(cues) + 1))
    for sub, cue in zip(parsed, cues, strict=True):
        assert sub.start.total_seconds() == pytest.approx(cue.start_s, abs=0.001)
        assert sub.end.total_seconds() == pytest.approx(cue.end_s, abs=0.001)
        assert sub.content == cue.text

    vtt_path = write_vtt(cues, tmp_path / "c.vtt", "en")
    assert vtt_path.read_text(encoding="utf-8").startswith("WEBVTT\nKind: captions\nLanguage: en\n\n")
    document = webvtt.from_string(vtt_path.read_text(encoding="utf-8"), strict=True)
    assert len(document.captions) == len(cues)
    for caption, cue in zip(document.captions, cues, strict=True):
        assert seconds(caption.start) == pytest.approx(cue.start_s, abs=0.001)
        assert seconds(caption.end) == pytest.approx(cue.end_s, abs=0.001)
        expected = cue.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert caption.text == expected.replace("--&gt;", "→")


def seconds(stamp: str) -> float:
    hours, minutes, secs = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(secs)


# --- overlays ---------------------------------------------------------------------------------


def overlay(style: str, width: int, height: int, cues, **options) -> CaptionOverlay:
    return CaptionOverlay(Captions(burn_in=style, **options), width, height, cues)


@pytest.mark.parametrize(("width", "height"), [(640, 360), (360, 640), (400, 500)])
def test_classic_captions_are_centred_lines_in_the_bottom_safe_area(width, height):
    cues = build_cues(timed(SCRIPT), offset_s=0.0, max_line_chars=42)
    layer = overlay("classic", width, height, cues)
    assert layer.frame(0.0) is None  # before the first word
    assert layer.frame(cues[-1].end_s + 1.0) is None  # after the last cue
    two_lines = next(c for c in cues if "\n" in c.text)
    frame = layer.frame((two_lines.start_s + two_lines.end_s) / 2)
    assert frame.shape == (height, width, 4) and frame.dtype == np.uint8
    rows = np.flatnonzero(frame[..., 3].max(axis=1))
    cols = np.flatnonzero(frame[..., 3].max(axis=0))
    assert rows.max() <= height - bottom_margin(width, height) + 2  # above the bottom safe margin
    assert rows.min() >= height * 0.55  # at the bottom
    assert abs((cols.min() + cols.max()) / 2 - width / 2) <= 2  # centred
    white = (frame[..., :3] > 230).all(axis=2) & (frame[..., 3] == 255)
    text_rows = np.flatnonzero(white.any(axis=1))
    assert np.diff(text_rows).max() > 3  # two separate lines of text
    box = frame[..., 3][(frame[..., 3] > 0) & ~white]
    assert 100 <= np.median(box) <= 200  # on a translucent box


def test_portrait_canvases_keep_a_larger_bottom_margin():
    assert bottom_margin(720, 1280) / 1280 > bottom_margin(1024, 1280) / 1280 > bottom_margin(1280, 720) / 720


def test_a_frame_is_a_lookup_once_drawn():
    cues = build_cues(timed(SCRIPT), offset_s=0.0, max_line_chars=42)
    layer = overlay("classic", 320, 180, cues)
    t = cues[1].start_s + 0.05
    first = layer.frame(t)
    assert layer.frame(t + 0.04) is first  # same cue: the same picture, not redrawn
    assert not first.flags.writeable
    assert layer.frame(cues[2].start_s + 0.05) is not first


def test_highlight_shows_a_few_words_and_colours_only_the_one_being_spoken():
    yellow = np.array([0xFF, 0xD4, 0x00])
    cues = build_cues(timed("Turn one photo into a video."), offset_s=0.0, max_line_chars=42)
    layer = overlay("highlight", 640, 360, cues)
    words = cues[0].words
    frames = [layer.frame(w.start_s + 0.05) for w in words[:3]]  # "Turn one photo": one group

    def highlighted(frame):
        return (np.abs(frame[..., :3].astype(int) - yellow).max(axis=2) < 40) & (frame[..., 3] == 255)

    def changed(a, b):
        return np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 0

    boxes = []
    for k, frame in enumerate(frames):
        mask = highlighted(frame)
        assert mask.sum() > 50, f"word {k} is not highlighted"
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        assert rows.min() >= 360 * 0.6  # the lower part of the frame
        boxes.append((cols.min(), cols.max()))
    # Left to right, one word at a time: the highlighted boxes follow each other without overlap.
    assert boxes[0][1] < boxes[1][0] and boxes[1][1] < boxes[2][0]
    # Moving to the next word changes only the two words' boxes; the rest of the group is unchanged.
    difference = changed(frames[0], frames[1])
    cols = np.flatnonzero(difference.any(axis=0))
    assert cols.min() >= boxes[0][0] - 8 and cols.max() <= boxes[1][1] + 8
    assert not highlighted(frames[0])[:, boxes[1][0] : boxes[1][1]].any()
    # Outlined: dark pixels ring the letters.
    assert ((frames[0][..., :3].max(axis=2) < 40) & (frames[0][..., 3] == 255)).sum() > 100


def test_right_to_left_and_cjk_captions_render_without_error():
    hebrew = [
        WordTiming(word=w, start_s=i * 0.4, end_s=i * 0.4 + 0.35)
        for i, w in enumerate(["שלום", "לכולם", "היום."])
    ]
    chinese = [WordTiming(word=c, start_s=i * 0.3, end_s=i * 0.3 + 0.25) for i, c in enumerate("你好世界。")]
    for words, language in [(hebrew, "he"), (chinese, "zh")]:
        cues = build_cues(
            SpeechTimings(language=language, source="aligned", duration_s=2, words=words),
            offset_s=0,
            max_line_chars=20,
        )
        for style in ("classic", "highlight"):
            frame = overlay(style, 360, 640, cues).frame(0.1)
            assert frame is not None and frame[..., 3].any()
