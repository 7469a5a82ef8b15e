"""Where things go on the canvas: safe margins per aspect ratio, and the rectangle (and outline)
a scene's source takes in each layout.

Safe margins keep text and placed sources away from the edges, where TVs overscan and social apps
draw their buttons: 5 % of each side in landscape, more at the bottom of portrait canvases (9:16
apps put captions, names and buttons over the lowest fifth).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from talkstack.contract.composition import Layout

MARGINS: dict[str, tuple[float, float, float, float]] = {
    # left, top, right, bottom, as fractions of the width (left, right) and height (top, bottom)
    "landscape": (0.05, 0.06, 0.05, 0.06),
    "square": (0.06, 0.06, 0.06, 0.08),
    "portrait": (0.07, 0.08, 0.07, 0.18),
}
ROUNDED_RADIUS = 0.08
"""Corner radius of a `rounded` picture-in-picture, as a fraction of its short side."""


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        return self.x + self.w

    @property
    def bottom(self) -> int:
        return self.y + self.h


def orientation(width: int, height: int) -> str:
    if width > height * 1.1:
        return "landscape"
    if height > width * 1.1:
        return "portrait"
    return "square"


def safe_area(width: int, height: int) -> Box:
    """The part of the canvas text and placed sources stay inside."""
    left, top, right, bottom = MARGINS[orientation(width, height)]
    x, y = round(width * left), round(height * top)
    return Box(x, y, width - x - round(width * right), height - y - round(height * bottom))


@dataclass(frozen=True)
class Placement:
    """A source's place on the canvas: `box` (inside the canvas), the part of the source frame it
    shows (`crop`: x0, y0, x1, y1) and its outline as an alpha mask (None: the whole box)."""

    box: Box
    crop: tuple[int, int, int, int]
    shape: np.ndarray | None


def place(
    layout: Layout, width: int, height: int, source_w: int, source_h: int, *, cutout: bool = False
) -> Placement:
    """Where the source goes for this layout.

    full: covers the canvas. split: covers its half (left/right; top/bottom on portrait canvases).
    background: `scale` of the canvas height, the source's whole frame (its aspect kept), at
    `position` inside the safe area; a cut-out person stands on the canvas's bottom edge unless
    placed at the top. pip: the same size, cropped to its outline (a circle crops a square)."""
    if layout.type == "full":
        box = Box(0, 0, width, height)
        return Placement(box, cover_crop(source_w, source_h, box.w, box.h), None)
    if layout.type == "split":
        first = layout.side == "left"
        if orientation(width, height) == "portrait":
            half = height // 2
            box = Box(0, 0 if first else height - half, width, half)
        else:
            half = width // 2
            box = Box(0 if first else width - half, 0, half, height)
        return Placement(box, cover_crop(source_w, source_h, box.w, box.h), None)

    safe = safe_area(width, height)
    h = max(2, round(height * layout.scale))
    w = h if layout.type == "pip" and layout.shape == "circle" else max(2, round(h * source_w / source_h))
    limit_w = width if layout.type == "background" else safe.w
    limit_h = height if layout.type == "background" else safe.h
    shrink = min(1.0, limit_w / w, limit_h / h)
    w, h = max(2, int(w * shrink)), max(2, int(h * shrink))
    x, y = _position(layout.position, safe, w, h)
    standing = layout.type == "background" and cutout and not layout.position.startswith("top")
    if standing:
        y = height - h
    x, y = min(max(0, x), width - w), min(max(0, y), height - h)
    box = Box(x, y, w, h)
    crop = (0, 0, source_w, source_h) if layout.type == "background" else cover_crop(source_w, source_h, w, h)
    shape = None
    if layout.type == "pip" and layout.shape == "circle":
        shape = circle_mask(w, h)
    elif layout.type == "pip" and layout.shape == "rounded":
        shape = rounded_mask(w, h, ROUNDED_RADIUS * min(w, h))
    return Placement(box, crop, shape)


def _position(position: str, safe: Box, w: int, h: int) -> tuple[int, int]:
    horizontal = "left" if "left" in position else "right" if "right" in position else "center"
    vertical = "top" if "top" in position else "bottom" if "bottom" in position else "center"
    x = {"left": safe.x, "center": safe.x + (safe.w - w) // 2, "right": safe.right - w}[horizontal]
    y = {"top": safe.y, "center": safe.y + (safe.h - h) // 2, "bottom": safe.bottom - h}[vertical]
    return x, y


def cover_crop(source_w: int, source_h: int, w: int, h: int) -> tuple[int, int, int, int]:
    """The centred part of the source with the box's aspect ratio (scale to cover, then crop)."""
    if source_w * h > w * source_h:  # the source is wider: crop its sides
        keep = max(1, round(source_h * w / h))
        x0 = (source_w - keep) // 2
        return x0, 0, x0 + keep, source_h
    keep = max(1, round(source_w * h / w))
    y0 = (source_h - keep) // 2
    return 0, y0, source_w, y0 + keep


def fit(frame: np.ndarray, crop: tuple[int, int, int, int], w: int, h: int) -> np.ndarray:
    """The crop of a frame (or mask) resized to w×h (area filter when shrinking)."""
    x0, y0, x1, y1 = crop
    part = frame[y0:y1, x0:x1]
    if part.shape[1] == w and part.shape[0] == h:
        return part
    shrinking = part.shape[1] > w
    return cv2.resize(part, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def circle_mask(w: int, h: int) -> np.ndarray:
    """A disc filling the box, its edge anti-aliased over one pixel."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy, r = (w - 1) / 2, (h - 1) / 2, min(w, h) / 2
    distance = np.hypot(xx - cx, yy - cy)
    return np.clip(r - distance + 0.5, 0.0, 1.0).astype(np.float32)


def rounded_mask(w: int, h: int, radius: float) -> np.ndarray:
    """The box with rounded corners, their edges anti-aliased over one pixel."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Distance outside the inner rectangle (the box shrunk by the radius), minus the radius.
    dx = np.maximum(np.maximum(radius - xx - 0.5, xx + 0.5 - (w - radius)), 0)
    dy = np.maximum(np.maximum(radius - yy - 0.5, yy + 0.5 - (h - radius)), 0)
    return np.clip(radius - np.hypot(dx, dy) + 0.5, 0.0, 1.0).astype(np.float32)


def blend_into(canvas: np.ndarray, patch: np.ndarray, alpha: np.ndarray | None, x: int, y: int) -> None:
    """Draw an RGB patch onto the canvas at (x, y), through an alpha (h×w float 0..1) or opaque;
    the parts outside the canvas are dropped."""
    h, w = patch.shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(canvas.shape[1], x + w), min(canvas.shape[0], y + h)
    if x1 <= x0 or y1 <= y0:
        return
    part = patch[y0 - y : y1 - y, x0 - x : x1 - x]
    if alpha is None:
        canvas[y0:y1, x0:x1] = part
        return
    a = np.asarray(alpha[y0 - y : y1 - y, x0 - x : x1 - x], np.float32)
    under = canvas[y0:y1, x0:x1]
    # part·a + under·(1 − a), rounded, in one pass in OpenCV (a third of numpy's float32 time).
    under[:] = cv2.blendLinear(np.ascontiguousarray(part), np.ascontiguousarray(under), a, 1.0 - a)
