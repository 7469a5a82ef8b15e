"""Text on the frames: overlays (title, subtitle, lower third, bullets, free text), title cards,
the cards that stand in for generated clips in a preview, and the PREVIEW mark.

Everything is drawn once with Pillow into an RGBA sprite (cached; a bullet list has one sprite per
number of items shown) and blended onto each frame where it shows, fading in and out briefly. Text
is wrapped to the safe width and shrunk until it fits its lines. Sizes scale with the canvas's
short side, so a 9:16 and a 16:9 video of the same resolution get the same text size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from talkstack.compose.colours import rgba
from talkstack.compose.layout import Box, _position, blend_into, orientation, safe_area
from talkstack.contract.composition import FontId, TextOverlay

FONTS_DIR = Path(__file__).resolve().parents[1] / "assets" / "fonts"
FONT_FILES: dict[str, str] = {
    "sans": "DejaVuSans.ttf",
    "sans-bold": "DejaVuSans-Bold.ttf",
    "serif": "DejaVuSerif.ttf",
    "mono": "DejaVuSansMono.ttf",
}
FADE_S = 0.3
"""Overlays that start after their scene starts fade in over this long (and out, before their end)."""
PANEL = (0, 0, 0, 150)
"""The translucent dark panel behind lower thirds, bullet lists and free text."""
SIZES = {
    "title": 0.085,
    "subtitle": 0.05,
    "lower_third": 0.05,
    "secondary": 0.034,
    "bullets": 0.045,
    "text": 0.045,
}
"""Font sizes as fractions of the canvas's short side."""
MIN_SIZE = 0.022
"""Text shrinks to fit, down to this fraction of the short side (then it is cut with an ellipsis)."""
CAPTION_GAP = 0.02
"""Room left between overlays and the burnt-in captions below them, as a fraction of the short side."""


@lru_cache(maxsize=64)
def load_font(font: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONTS_DIR / FONT_FILES[font]), size=max(6, size))


def font_path(font: FontId) -> Path:
    return FONTS_DIR / FONT_FILES[font]


def _width(text: str, font: ImageFont.FreeTypeFont) -> float:
    return font.getlength(text)


def wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    """Greedy word wrap (explicit newlines kept); a word wider than the line is broken."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if _width(candidate, font) <= max_width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while _width(word, font) > max_width and len(word) > 1:
                cut = max(1, int(len(word) * max_width / _width(word, font)))
                while cut > 1 and _width(word[:cut], font) > max_width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def fit_text(
    text: str, font: str, size: int, max_width: float, max_lines: int, min_size: int
) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The largest size ≤ `size` at which `text` wraps into `max_lines`; at `min_size` the last
    line ends in an ellipsis instead."""
    while True:
        face = load_font(font, size)
        lines = wrap(text, face, max_width)
        if len(lines) <= max_lines:
            return face, lines
        if size <= min_size:
            kept = lines[:max_lines]
            last = kept[-1]
            while last and _width(last + "…", face) > max_width:
                last = last[:-1]
            kept[-1] = last.rstrip() + "…"
            return face, kept
        size = max(min_size, int(size * 0.9))


@dataclass(frozen=True)
class Sprite:
    """Drawn text: RGB and alpha, and where its top-left corner goes on the canvas."""

    x: int
    y: int
    rgb: np.ndarray
    alpha: np.ndarray

    @classmethod
    def from_image(cls, image: Image.Image, x: int, y: int) -> Sprite:
        data = np.asarray(image.convert("RGBA"))
        return cls(x, y, np.ascontiguousarray(data[..., :3]), data[..., 3].astype(np.float32) / 255.0)

    @property
    def box(self) -> Box:
        return Box(self.x, self.y, self.rgb.shape[1], self.rgb.shape[0])

    def draw(self, canvas: np.ndarray, opacity: float = 1.0) -> None:
        if opacity <= 0:
            return
        blend_into(canvas, self.rgb, self.alpha if opacity >= 1 else self.alpha * opacity, self.x, self.y)


def _line_height(face: ImageFont.FreeTypeFont) -> int:
    ascent, descent = face.getmetrics()
    return int((ascent + descent) * 1.15)


def _text_layer(
    lines: list[str], face: ImageFont.FreeTypeFont, fill: tuple[int, int, int, int], align: str = "left"
) -> Image.Image:
    height = _line_height(face)
    width = max(1, math.ceil(max(_width(line, face) for line in lines)))
    layer = Image.new("RGBA", (width, height * len(lines)), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for i, line in enumerate(lines):
        offset = {"left": 0, "center": (width - _width(line, face)) / 2}[align]
        draw.text((offset, i * height), line, font=face, fill=fill)
    return layer


def _with_shadow(layer: Image.Image, unit: int) -> Image.Image:
    """Text with a soft dark shadow, readable on any background without a panel."""
    pad, offset = max(2, unit // 90), max(1, unit // 250)
    out = Image.new("RGBA", (layer.width + 2 * pad, layer.height + 2 * pad), (0, 0, 0, 0))
    shadow = Image.new("RGBA", layer.size, (0, 0, 0, 0))
    shadow.putalpha(layer.getchannel("A").point(lambda a: a * 0.75))
    out.alpha_composite(shadow, (pad + offset, pad + offset))
    out = out.filter(ImageFilter.GaussianBlur(max(1, unit // 300)))
    out.alpha_composite(layer, (pad, pad))
    return out


def _panel(
    content: Image.Image, pad_x: int, pad_y: int, bar: tuple[int, int, int, int] | None, bar_w: int
) -> Image.Image:
    lead = bar_w if bar else 0
    panel = Image.new("RGBA", (content.width + 2 * pad_x + lead, content.height + 2 * pad_y), PANEL)
    if bar:
        ImageDraw.Draw(panel).rectangle((0, 0, bar_w - 1, panel.height - 1), fill=bar)
    panel.alpha_composite(content, (lead + pad_x, pad_y))
    return panel


def _place(image: Image.Image, position: str, safe: Box, width: int, height: int) -> tuple[int, int]:
    x, y = _position(position, safe, image.width, image.height)
    return min(max(0, x), width - image.width), min(max(0, y), height - image.height)


class OverlayPainter:
    """A scene's text overlays: `draw(canvas, t)` draws those showing `t` seconds into the scene."""

    def __init__(
        self,
        overlays: list[TextOverlay],
        width: int,
        height: int,
        scene_s: float,
        *,
        above: int | None = None,
    ) -> None:
        """`above`: a row the overlays stay above (the top of burnt-in captions), when it is
        higher than the safe area's bottom."""
        self.overlays, self.width, self.height, self.scene_s = overlays, width, height, scene_s
        self.unit = min(width, height)
        self.safe = safe_area(width, height)
        if above is not None:
            bottom = max(self.safe.y + self.safe.h // 2, above - round(self.unit * CAPTION_GAP))
            if bottom < self.safe.bottom:
                self.safe = Box(self.safe.x, self.safe.y, self.safe.w, bottom - self.safe.y)
        self._cache: dict[tuple[int, int], Sprite] = {}

    def showing(self, t: float) -> list[tuple[Sprite, float]]:
        """The sprites showing `t` seconds into the scene, with their opacity."""
        shown_now: list[tuple[Sprite, float]] = []
        for index, overlay in enumerate(self.overlays):
            # An end_s past the scene's end (a scene cut shorter than written) ends with the scene:
            # bullets are revealed within what shows.
            end = min(overlay.end_s, self.scene_s) if overlay.end_s is not None else self.scene_s
            if not overlay.start_s <= t < end:
                continue
            fade_in = (t - overlay.start_s) / FADE_S if overlay.start_s > 0 else 1.0
            fade_out = (end - t) / FADE_S if overlay.end_s is not None and end < self.scene_s else 1.0
            shown = 0
            if overlay.type == "bullets":
                count = len(overlay.items or [])
                step = (end - overlay.start_s) / count
                shown = min(count, 1 + int((t - overlay.start_s) / step))
            shown_now.append((self.sprite(index, shown), min(1.0, fade_in, fade_out)))
        return shown_now

    def draw(self, canvas: np.ndarray, t: float) -> None:
        for sprite, opacity in self.showing(t):
            sprite.draw(canvas, opacity)

    def draw_alpha(self, plane: np.ndarray, t: float) -> None:
        """Make the overlays' pixels opaque in an alpha plane (transparent output keeps them)."""
        for sprite, opacity in self.showing(t):
            box = sprite.box
            x0, y0 = max(0, box.x), max(0, box.y)
            x1, y1 = min(plane.shape[1], box.right), min(plane.shape[0], box.bottom)
            if x1 <= x0 or y1 <= y0:
                continue
            part = sprite.alpha[y0 - box.y : y1 - box.y, x0 - box.x : x1 - box.x] * opacity
            region = plane[y0:y1, x0:x1]
            np.maximum(region, part, out=region)

    def sprite(self, index: int, shown: int = 0) -> Sprite:
        key = (index, shown)
        if key not in self._cache:
            self._cache[key] = self._render(self.overlays[index], shown)
        return self._cache[key]

    def _size(self, kind: str) -> int:
        return round(self.unit * SIZES[kind])

    def _render(self, overlay: TextOverlay, shown: int) -> Sprite:
        font = overlay.font or ("sans-bold" if overlay.type in ("title", "lower_third") else "sans")
        fill = rgba(overlay.colour)
        safe, unit, min_size = self.safe, self.unit, round(self.unit * MIN_SIZE)
        portrait = orientation(self.width, self.height) == "portrait"
        if overlay.type in ("title", "subtitle"):
            face, lines = fit_text(
                overlay.text or "",
                font,
                self._size(overlay.type),
                safe.w,
                3,
                min_size,
            )
            image = _with_shadow(_text_layer(lines, face, fill, "center"), unit)
            if overlay.position is not None:
                return Sprite.from_image(
                    image, *_place(image, overlay.position, safe, self.width, self.height)
                )
            # Default: the title's centre on the upper third line, the subtitle's just below it.
            centre_y = self.height * (0.3 if overlay.type == "title" else 0.45)
            x = (self.width - image.width) // 2
            y = int(max(safe.y, min(centre_y - image.height / 2, safe.bottom - image.height)))
            return Sprite.from_image(image, x, y)
        pad_x, pad_y = round(unit * 0.025), round(unit * 0.015)
        max_w = safe.w * (1.0 if portrait else 0.65) - 2 * pad_x
        accent = rgba(overlay.accent) if overlay.accent else None
        if overlay.type == "lower_third":
            face, lines = fit_text(overlay.text or "", font, self._size("lower_third"), max_w, 2, min_size)
            content = _text_layer(lines, face, fill)
            if overlay.secondary:
                small, more = fit_text(overlay.secondary, "sans", self._size("secondary"), max_w, 2, min_size)
                second = _text_layer(more, small, (*fill[:3], round(fill[3] * 0.85)))
                both = Image.new("RGBA", (max(content.width, second.width), content.height + second.height))
                both.alpha_composite(content, (0, 0))
                both.alpha_composite(second, (0, content.height))
                content = both
            image = _panel(content, pad_x, pad_y, accent, max(3, round(unit * 0.012)))
            return Sprite.from_image(
                image, *_place(image, overlay.position or "bottom_left", safe, self.width, self.height)
            )
        if overlay.type == "bullets":
            items = overlay.items or []
            size = self._size("bullets")
            while True:  # shrink the whole list until it fits the safe height
                face = load_font(font, size)
                wrapped = [wrap(item, face, max_w - size) for item in items]
                total = sum(len(w) for w in wrapped) * _line_height(face) + (len(items) - 1) * size // 2
                if total <= safe.h - 2 * pad_y or size <= min_size:
                    break
                size = max(min_size, int(size * 0.9))
            layers = [_text_layer(w, face, fill) for w in wrapped]
            indent = size
            width = indent + max(layer.width for layer in layers)
            content = Image.new("RGBA", (width, total), (0, 0, 0, 0))
            draw = ImageDraw.Draw(content)
            dot = accent or fill
            y = 0
            for i, layer in enumerate(layers):
                if i < shown:
                    r = max(2, size // 7)
                    cy = y + _line_height(face) // 2
                    draw.ellipse((indent // 2 - r, cy - r, indent // 2 + r, cy + r), fill=dot)
                    content.alpha_composite(layer, (indent, y))
                y += layer.height + size // 2
            image = _panel(content, pad_x, pad_y, None, 0)
            return Sprite.from_image(
                image, *_place(image, overlay.position or "left", safe, self.width, self.height)
            )
        face, lines = fit_text(overlay.text or "", font, self._size("text"), max_w, 4, min_size)
        image = _panel(
            _text_layer(lines, face, fill, "center"), pad_x, pad_y, accent, max(3, round(unit * 0.012))
        )
        return Sprite.from_image(
            image, *_place(image, overlay.position or "bottom", safe, self.width, self.height)
        )


def title_card(title: str, subtitle: str | None, width: int, height: int, colour: str = "#FFFFFF") -> Sprite:
    """A title card's text: a large title and an optional subtitle, centred on the canvas."""
    unit, safe = min(width, height), safe_area(width, height)
    fill = rgba(colour)
    face, lines = fit_text(title, "sans-bold", round(unit * 0.1), safe.w, 3, round(unit * MIN_SIZE))
    layer = _text_layer(lines, face, fill, "center")
    if subtitle:
        small, more = fit_text(subtitle, "sans", round(unit * 0.05), safe.w, 3, round(unit * MIN_SIZE))
        second = _text_layer(more, small, (*fill[:3], round(fill[3] * 0.85)), "center")
        gap = round(unit * 0.03)
        both = Image.new("RGBA", (max(layer.width, second.width), layer.height + gap + second.height))
        both.alpha_composite(layer, ((both.width - layer.width) // 2, 0))
        both.alpha_composite(second, ((both.width - second.width) // 2, layer.height + gap))
        layer = both
    image = _with_shadow(layer, unit)
    return Sprite.from_image(image, (width - image.width) // 2, (height - image.height) // 2)


def clip_card(prompt: str, width: int, height: int) -> Sprite:
    """What a preview shows instead of a generated clip: its prompt, and that the full render
    will generate it."""
    unit, safe = min(width, height), safe_area(width, height)
    label_face = load_font("sans-bold", round(unit * 0.04))
    label = _text_layer(
        ["Generated clip (made in the full render)"], label_face, (255, 212, 0, 255), "center"
    )
    face, lines = fit_text(f"“{prompt}”", "serif", round(unit * 0.05), safe.w, 6, round(unit * MIN_SIZE))
    body = _text_layer(lines, face, (255, 255, 255, 255), "center")
    gap = round(unit * 0.04)
    both = Image.new("RGBA", (max(label.width, body.width), label.height + gap + body.height))
    both.alpha_composite(label, ((both.width - label.width) // 2, 0))
    both.alpha_composite(body, ((both.width - body.width) // 2, label.height + gap))
    image = _with_shadow(both, unit)
    return Sprite.from_image(image, (width - image.width) // 2, (height - image.height) // 2)


def preview_mark(width: int, height: int) -> Sprite:
    """A translucent "PREVIEW" across the frame's diagonal, on every frame of a preview."""
    unit = min(width, height)
    face = load_font("sans-bold", round(unit * 0.22))
    text = "PREVIEW"
    w, h = math.ceil(face.getlength(text)), _line_height(face)
    layer = Image.new("RGBA", (w + 8, h + 8), (0, 0, 0, 0))
    ImageDraw.Draw(layer).text(
        (4, 4),
        text,
        font=face,
        fill=(255, 255, 255, 90),
        stroke_width=max(1, unit // 180),
        stroke_fill=(0, 0, 0, 70),
    )
    angle = math.degrees(math.atan2(height, width))
    rotated = layer.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    scale = min(1.0, 0.95 * width / rotated.width, 0.95 * height / rotated.height)
    if scale < 1.0:
        rotated = rotated.resize(
            (max(1, int(rotated.width * scale)), max(1, int(rotated.height * scale))),
            Image.Resampling.LANCZOS,
        )
    return Sprite.from_image(rotated, (width - rotated.width) // 2, (height - rotated.height) // 2)
