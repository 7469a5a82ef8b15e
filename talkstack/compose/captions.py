"""Captions of a composition: cues cut from word timings, sidecar SRT/WebVTT, burned-in overlays.

Cues are cut at sentence ends and pauses first, then where the lines would overflow; a cue shows at
most `max_lines` lines of `max_line_chars` and lasts 0.8–7 s. SRT is written with `srt` and WebVTT
with `webvtt-py` (both MIT), which refuse what they could not read back.

`CaptionOverlay.frame(t)` gives the caption layer of the frame at t (RGBA, the canvas size), or None
when nothing is shown. Each distinct picture (a cue in `classic`; a cue's word group with one word
highlighted in `highlight`) is drawn once with Pillow and kept, so the compositor pays a dictionary
lookup per frame; only the last few full-canvas pictures are held, since frames come in time order.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import srt
import webvtt
from PIL import Image, ImageDraw, ImageFont

from talkstack.compose.colours import rgba
from talkstack.compose.text import load_font
from talkstack.contract.captions import SpeechTimings, WordTiming
from talkstack.contract.composition import Captions
from talkstack.media.alignment import boundary_kind, is_cjk

MIN_CUE_S = 0.8
MAX_CUE_S = 7.0
PAUSE_CUT_S = 0.45
"""A silence at least this long between two words ends a cue (the speaker has stopped)."""
HOLD_S = 0.3
"""A burned-in cue stays up across a gap this short before the next one, so captions do not blink."""


@dataclass(frozen=True)
class Cue:
    """One caption: shown from start_s to end_s (composition time); `text` has its lines joined by
    newlines; `words` are the cue's words in composition time."""

    start_s: float
    end_s: float
    text: str
    words: list[WordTiming] = field(default_factory=list)


# --- cutting ----------------------------------------------------------------------------------


def text_width(text: str) -> int:
    """Display width in columns: wide (CJK) characters count two, combining marks none."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def join_words(words: list[str]) -> str:
    """Words joined as written: with spaces, except between characters of CJK text."""
    out = ""
    for word in words:
        if out and not (_tight(out[-1]) or _tight(word[0])):
            out += " "
        out += word
    return out


def _tight(char: str) -> bool:
    """Written without spaces around it: CJK characters and their full-width punctuation."""
    return is_cjk(char) or unicodedata.east_asian_width(char) in ("W", "F")


def wrap(words: list[str], max_chars: int, max_lines: int) -> list[str] | None:
    """The words in at most `max_lines` balanced lines of at most `max_chars` columns; None when
    they do not fit. A single word longer than a line gets a line of its own."""
    if len(words) == 1:
        return [words[0]]
    best: list[str] | None = None
    best_widest = 1 << 30
    for lines in range(1, max_lines + 1):
        if lines > len(words):
            break
        split = _balanced(words, lines)
        texts = [join_words(words[a:b]) for a, b in split]
        widest = max(text_width(t) for t in texts)
        if widest <= max_chars:
            if lines == 1:
                return texts
            if widest < best_widest:
                best, best_widest = texts, widest
    return best


def _balanced(words: list[str], lines: int) -> list[tuple[int, int]]:
    """Split points giving `lines` lines whose widest is as narrow as possible (lines ≤ 3, so an
    exhaustive look over the break positions is cheap)."""
    n = len(words)
    if lines == 1:
        return [(0, n)]
    best, best_width = [(0, n)], 1 << 30
    if lines == 2:
        for k in range(1, n):
            width = max(text_width(join_words(words[:k])), text_width(join_words(words[k:])))
            if width < best_width:
                best, best_width = [(0, k), (k, n)], width
        return best
    for k in range(1, n - 1):
        for m in range(k + 1, n):
            parts = [(0, k), (k, m), (m, n)]
            width = max(text_width(join_words(words[a:b])) for a, b in parts)
            if width < best_width:
                best, best_width = parts, width
    return best


def build_cues(
    timings: SpeechTimings, *, offset_s: float, max_line_chars: int, max_lines: int = 2
) -> list[Cue]:
    """Cut a speech track's words into cues, shifted by `offset_s` (where the track starts in the
    composition). Every word is in exactly one cue, in order; cues never overlap."""
    words = [
        WordTiming(word=w.word, start_s=w.start_s + offset_s, end_s=w.end_s + offset_s) for w in timings.words
    ]
    if not words:
        return []
    groups: list[list[WordTiming]] = []
    for phrase in _phrases(words):
        groups.extend(_fit(phrase, max_line_chars, max_lines))
    groups = _merge_short(groups, max_line_chars, max_lines)
    cues: list[Cue] = []
    for i, group in enumerate(groups):
        start = group[0].start_s
        end = max(group[-1].end_s, start + MIN_CUE_S)
        end = min(end, start + MAX_CUE_S)
        if i + 1 < len(groups):
            end = min(end, groups[i + 1][0].start_s)
        lines = wrap([w.word for w in group], max_line_chars, max_lines) or [
            join_words([w.word for w in group])
        ]
        cues.append(Cue(start_s=start, end_s=max(end, start), text="\n".join(lines), words=group))
    return cues


def _phrases(words: list[WordTiming]) -> list[list[WordTiming]]:
    """Split at sentence ends and at real pauses: a cue never runs across them."""
    phrases: list[list[WordTiming]] = [[words[0]]]
    for previous, word in itertools.pairwise(words):
        if boundary_kind(previous.word) >= 1.0 or word.start_s - previous.end_s >= PAUSE_CUT_S:
            phrases.append([word])
        else:
            phrases[-1].append(word)
    return phrases


def _fits(group: list[WordTiming], max_chars: int, max_lines: int) -> bool:
    if group[-1].end_s - group[0].start_s > MAX_CUE_S and len(group) > 1:
        return False
    if len(group) > 1 and text_width(join_words([w.word for w in group])) > max_chars * max_lines:
        return False  # cannot fit however it is wrapped: skip the search
    return wrap([w.word for w in group], max_chars, max_lines) is not None


def _fit(phrase: list[WordTiming], max_chars: int, max_lines: int) -> list[list[WordTiming]]:
    """A phrase too long for one cue is cut where a break reads best: after a comma, at the
    longest gap, late rather than early (so cues are full)."""
    groups: list[list[WordTiming]] = []
    rest = phrase
    while rest:
        count = 1
        while count < len(rest) and _fits(rest[: count + 1], max_chars, max_lines):
            count += 1
        if count == len(rest):
            groups.append(rest)
            break
        best, best_score = count, -1.0
        for k in range(max(1, count // 2), count + 1):  # cut after word k-1
            gap = rest[k].start_s - rest[k - 1].end_s
            score = boundary_kind(rest[k - 1].word) + min(gap, 0.5) + 0.3 * k / count
            if score > best_score:
                best, best_score = k, score
        groups.append(rest[:best])
        rest = rest[best:]
    return groups


def _span(group: list[WordTiming]) -> float:
    return group[-1].end_s - group[0].start_s


def _merge_short(groups: list[list[WordTiming]], max_chars: int, max_lines: int) -> list[list[WordTiming]]:
    """A cue shorter than MIN_CUE_S joins its neighbour when they fit together and no long pause
    separates them ("Hi." said quickly before the next sentence)."""
    merged: list[list[WordTiming]] = []
    for group in groups:
        if merged:
            last = merged[-1]
            short = (
                last[-1].end_s - last[0].start_s < MIN_CUE_S or group[-1].end_s - group[0].start_s < MIN_CUE_S
            )
            close = group[0].start_s - last[-1].end_s < PAUSE_CUT_S
            if short and close and _fits(last + group, max_chars, max_lines):
                merged[-1] = last + group
                continue
        merged.append(group)
    return merged


# --- sidecar files ----------------------------------------------------------------------------


def write_srt(cues: list[Cue], path: Path) -> Path:
    """SubRip: numbered cues, comma milliseconds (srt.compose; it refuses empty content)."""
    subtitles = [
        srt.Subtitle(
            index=i,
            start=timedelta(seconds=round(cue.start_s, 3)),
            end=timedelta(seconds=round(cue.end_s, 3)),
            content=cue.text,
        )
        for i, cue in enumerate(cues, start=1)
    ]
    Path(path).write_text(srt.compose(subtitles, reindex=False), encoding="utf-8")
    return Path(path)


def _vtt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def _vtt_text(text: str) -> str:
    # Cue text is markup: escape it, and "-->" would read as a timing line.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("--&gt;", "→")


def write_vtt(cues: list[Cue], path: Path, language: str) -> Path:
    """WebVTT with a `Language:` header line (players and YouTube read it)."""
    document = webvtt.WebVTT(
        captions=[
            webvtt.Caption(start=_vtt_time(c.start_s), end=_vtt_time(c.end_s), text=_vtt_text(c.text))
            for c in cues
        ],
        metadata=["Kind: captions", f"Language: {language}"],
    )
    document.save(str(path))
    return Path(path)


# --- burned-in overlays -----------------------------------------------------------------------


def is_rtl(text: str) -> bool:
    """Mostly right-to-left letters (Arabic, Hebrew…)."""
    strong = [unicodedata.bidirectional(c) for c in text if unicodedata.bidirectional(c) in ("L", "R", "AL")]
    return bool(strong) and sum(b != "L" for b in strong) > len(strong) / 2


def bottom_margin(width: int, height: int) -> int:
    """The bottom safe margin: portrait canvases leave room for the app's own buttons and text."""
    if height >= 1.6 * width:  # 9:16
        return round(0.2 * height)
    if height > width:  # 4:5
        return round(0.13 * height)
    return round(0.08 * height)


class CaptionOverlay:
    """The burned-in caption layer of a composition (captions.burn_in `classic` or `highlight`)."""

    KEEP = 4  # full-canvas pictures held (frames come in time order)

    def __init__(
        self,
        captions: Captions,
        width: int,
        height: int,
        cues: list[Cue],
    ) -> None:
        self.captions, self.width, self.height = captions, width, height
        self.cues = sorted(cues, key=lambda c: c.start_s)
        self.style = captions.burn_in
        self.margin_x = round(0.06 * width)
        self.bottom = bottom_margin(width, height)
        short = min(width, height)
        if self.style == "highlight":
            self.size = max(12, round(0.085 * short))
        else:
            # As large as 4.5 % of the short side, but a full line must fit the safe width.
            fit = (width - 2 * self.margin_x) / (0.62 * captions.max_line_chars)
            self.size = max(10, round(min(0.05 * short, fit)))
        self._starts = [c.start_s for c in self.cues]
        self._groups = {i: _word_groups(c.words) for i, c in enumerate(self.cues)}
        self._pictures: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()

    @property
    def top(self) -> int:
        """The highest row a caption reaches (two lines, or two rows of highlighted words): text
        overlays of captioned scenes stay above it."""
        if self.style == "highlight":
            line_h, stroke = round(1.2 * self.size), max(2, round(0.09 * self.size))
            centre_y = min(self.height - self.bottom - line_h, round(0.78 * self.height))
            return round(centre_y - line_h - stroke)
        line_h, pad_y = round(1.25 * self.size), round(0.18 * self.size)
        return self.height - self.bottom - 2 * line_h - pad_y

    # Which picture shows at t: (cue, word group, highlighted word), or None.
    def _key(self, t: float) -> tuple[int, int, int] | None:
        if self.style == "none" or not self.cues:
            return None
        i = int(np.searchsorted(self._starts, t, side="right")) - 1
        if i < 0:
            return None
        cue = self.cues[i]
        following = self.cues[i + 1].start_s if i + 1 < len(self.cues) else None
        hold = min(HOLD_S, following - cue.end_s) if following is not None else 0.0
        if t >= cue.end_s + max(hold, 0.0):
            return None
        if self.style == "classic":
            return (i, 0, 0)
        groups = self._groups[i]
        if not groups:
            return (i, 0, -1)
        g = 0
        for k, group in enumerate(groups):
            if cue.words[group[0]].start_s <= t:
                g = k
        w = groups[g][0]
        for index in groups[g]:
            if cue.words[index].start_s <= t:
                w = index
        return (i, g, w)

    def frame(self, t: float) -> np.ndarray | None:
        """The caption layer at t seconds (RGBA uint8, height × width × 4, read-only), or None."""
        key = self._key(t)
        if key is None:
            return None
        picture = self._pictures.get(key)
        if picture is None:
            picture = self._draw(*key)
            picture.flags.writeable = False
            self._pictures[key] = picture
            while len(self._pictures) > self.KEEP:
                self._pictures.popitem(last=False)
        else:
            self._pictures.move_to_end(key)
        return picture

    def _draw(self, cue_index: int, group: int, word: int) -> np.ndarray:
        image = Image.new("RGBA", (self.width, self.height), (0, 0, 0, 0))
        cue = self.cues[cue_index]
        if self.style == "classic":
            self._draw_classic(image, cue.text.split("\n"))
        else:
            indices = self._groups[cue_index][group] if self._groups[cue_index] else []
            self._draw_highlight(
                image, [cue.words[k].word for k in indices], indices.index(word) if word in indices else -1
            )
        return np.asarray(image)

    def _font(self, size: int) -> ImageFont.FreeTypeFont:
        return load_font(self.captions.font, size)

    def _draw_classic(self, image: Image.Image, lines: list[str]) -> None:
        """Centred lines at the bottom safe area, each on a translucent dark box."""
        draw = ImageDraw.Draw(image)
        safe = self.width - 2 * self.margin_x
        size = self.size
        font = self._font(size)
        widest = max(draw.textlength(line, font=font) for line in lines)
        if widest > safe:  # a long word, or wide glyphs: shrink this cue rather than clip it
            size = max(8, int(size * safe / widest))
            font = self._font(size)
        pad_x, pad_y = round(0.4 * size), round(0.18 * size)
        line_h = round(1.25 * size)
        bottom = self.height - self.bottom
        top = bottom - len(lines) * line_h
        colour = rgba(self.captions.colour)
        for n, line in enumerate(lines):
            length = draw.textlength(line, font=font)
            x = (self.width - length) / 2
            y = top + n * line_h
            draw.rounded_rectangle(
                (x - pad_x, y - pad_y, x + length + pad_x, y + line_h - pad_y),
                radius=round(0.2 * size),
                fill=(0, 0, 0, 150),
            )
        # Text after all boxes, so a box never covers the line above's descenders.
        for n, line in enumerate(lines):
            length = draw.textlength(line, font=font)
            draw.text(
                ((self.width - length) / 2, top + n * line_h + line_h / 2 - pad_y),
                line,
                font=font,
                fill=colour,
                anchor="lm",
            )

    def _draw_highlight(self, image: Image.Image, words: list[str], current: int) -> None:
        """A few large words centred in the lower third, outlined; the spoken one in the
        highlight colour. Words run right to left for right-to-left text."""
        if not words:
            return
        draw = ImageDraw.Draw(image)
        safe = self.width - 2 * self.margin_x
        size = self.size
        rows = _rows(words, lambda text, s: draw.textlength(text, font=self._font(s)), size, safe)
        widest = max(
            draw.textlength(join_words([words[k] for k in row]), font=self._font(size)) for row in rows
        )
        if widest > safe:
            size = max(8, int(size * safe / widest))
        font = self._font(size)
        stroke = max(2, round(0.09 * size))
        line_h = round(1.2 * size)
        centre_y = min(self.height - self.bottom - line_h * len(rows) / 2, round(0.78 * self.height))
        top = centre_y - line_h * len(rows) / 2
        rtl = is_rtl(" ".join(words))
        space = draw.textlength(" ", font=font)
        base, accent = rgba(self.captions.colour), rgba(self.captions.highlight_colour)
        for r, row in enumerate(rows):
            widths = [draw.textlength(words[k], font=font) for k in row]
            total = sum(widths) + space * (len(row) - 1)
            x = (self.width - total) / 2
            order = list(zip(row, widths, strict=True))
            if rtl:
                order.reverse()
            y = top + r * line_h + line_h / 2
            for k, w in order:
                fill = accent if k == current else base
                draw.text(
                    (x, y),
                    words[k],
                    font=font,
                    fill=fill,
                    anchor="lm",
                    stroke_width=stroke,
                    stroke_fill=(0, 0, 0, 255),
                )
                x += w + space


def _word_groups(words: list[WordTiming], max_words: int = 4, max_chars: int = 18) -> list[list[int]]:
    """A cue's words in groups of 2–4 for `highlight` (indices), cut after punctuation and before
    a group gets long; a lone last word joins the group before it."""
    groups: list[list[int]] = []
    current: list[int] = []
    for k, word in enumerate(words):
        text = join_words([words[i].word for i in [*current, k]])
        if current and (len(current) >= max_words or text_width(text) > max_chars):
            groups.append(current)
            current = []
        current.append(k)
        if boundary_kind(word.word) > 0 and len(current) >= 2:
            groups.append(current)
            current = []
    if current:
        if len(current) == 1 and groups and len(groups[-1]) < max_words:
            groups[-1].append(current[0])
        else:
            groups.append(current)
    return groups


def _rows(words: list[str], measure, size: int, safe: float) -> list[list[int]]:
    """One row, or two when one would be wider than the safe width."""
    indices = list(range(len(words)))
    if len(words) < 2 or measure(join_words(words), size) <= safe:
        return [indices]
    half = max(1, len(words) // 2)
    return [indices[:half], indices[half:]]
