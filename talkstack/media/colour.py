"""Colour in CIE Lab: statistics of an image region, ΔE76 between colours, and colour transfer.

Parallel avatar chunks are rendered apart, each drifting in its own direction (the most common
complaint of MultiTalk/InfiniteTalk users), so two neighbours can disagree in tint at the cut. The
fix is Reinhard-style statistics transfer: move each chunk's per-channel mean and spread in Lab onto
the reference's, one transform for every frame of the chunk (a per-frame fit would flicker and
would also undo real changes of light). Lab, because its channels are close to independent for
natural images, so correcting them one by one does not shift hue the way RGB gains do.

OpenCV's Lab (float input in 0…1, D65): L in 0…100, a and b roughly −127…127.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1) in pixels, x1/y1 exclusive."""

STATS_MAX_SIDE = 256
"""Statistics are taken on frames scaled down to this long side: means and spreads do not need
more pixels, and it keeps a chunk's measurement to a fraction of a millisecond a frame."""
MAX_GAIN = 2.0
"""Spread ratios are clamped to 1/MAX_GAIN…MAX_GAIN: a flat region (a blank frame, a fade) must not
have its noise amplified into a colour."""
NO_OP_DELTA_E = 0.5
"""A transfer moving the mean by less than this (ΔE76, far below the ≈2.3 that is just noticeable)
with spreads within 2 % is left out: the frames are written untouched."""


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (…, 3) → float32 Lab."""
    return cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2Lab)


def from_lab(lab: np.ndarray) -> np.ndarray:
    """float32 Lab → uint8 RGB, out-of-gamut colours clipped."""
    rgb = cv2.cvtColor(np.ascontiguousarray(lab, dtype=np.float32), cv2.COLOR_Lab2RGB)
    return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)


def delta_e76(a: np.ndarray, b: np.ndarray) -> float:
    """CIE 1976 colour difference: Euclidean distance in Lab (≈2.3 is just noticeable)."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


@dataclass(frozen=True)
class LabStats:
    mean: np.ndarray
    """(3,) mean L, a, b."""
    std: np.ndarray
    """(3,) standard deviation of L, a, b."""


def _small(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = STATS_MAX_SIDE / max(h, w)
    if scale >= 1:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def lab_pixels(rgb: np.ndarray, box: Box | None = None, mask: np.ndarray | None = None) -> np.ndarray:
    """(n, 3) Lab values of a region of an RGB image (the whole image by default; `mask`, bool, in the
    image's own size, selects pixels inside `box` or the image)."""
    if box is not None:
        x0, y0, x1, y1 = box
        rgb = rgb[y0:y1, x0:x1]
        mask = None if mask is None else mask[y0:y1, x0:x1]
    if mask is None:
        return to_lab(_small(rgb)).reshape(-1, 3)
    return to_lab(rgb)[mask]


def lab_stats(frames: Iterable[np.ndarray], box: Box | None = None) -> LabStats:
    """Mean and spread in Lab over the pixels of `box` (or whole frames) of all `frames` together."""
    pixels = [lab_pixels(frame, box) for frame in frames]
    if not pixels:
        raise ValueError("lab_stats: no frames")
    everything = np.concatenate(pixels).astype(np.float64)
    return LabStats(everything.mean(axis=0), everything.std(axis=0))


def fit_to_frame(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image` scaled to cover width×height and centre-cropped: how a reference photo appears in a
    video of another aspect ratio (the avatar engines resize and centre-crop the same way)."""
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    scaled = cv2.resize(
        image, (max(width, round(w * scale)), max(height, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    y0, x0 = (scaled.shape[0] - height) // 2, (scaled.shape[1] - width) // 2
    return scaled[y0 : y0 + height, x0 : x0 + width]


@dataclass(frozen=True)
class ColourTransfer:
    """lab' = (lab − source mean) · gain + target mean, per channel."""

    source_mean: np.ndarray
    target_mean: np.ndarray
    gain: np.ndarray

    @classmethod
    def between(cls, source: LabStats, target: LabStats, max_gain: float = MAX_GAIN) -> ColourTransfer:
        """The transfer that gives `source`'s pixels `target`'s mean and spread."""
        gain = np.clip(target.std / np.maximum(source.std, 1e-6), 1 / max_gain, max_gain)
        return cls(source.mean.astype(np.float32), target.mean.astype(np.float32), gain.astype(np.float32))

    @property
    def is_noop(self) -> bool:
        return delta_e76(self.source_mean, self.target_mean) < NO_OP_DELTA_E and bool(
            np.all(np.abs(self.gain - 1) < 0.02)
        )

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """The frame with the transfer applied (the frame itself when the transfer is a no-op)."""
        if self.is_noop:
            return rgb
        lab = to_lab(rgb)
        lab = (lab - self.source_mean) * self.gain + self.target_mean
        return from_lab(lab)


def match_colour(
    frames: Iterable[np.ndarray], reference: np.ndarray, box: Box | None = None, max_gain: float = MAX_GAIN
) -> ColourTransfer:
    """The transfer that brings the colour statistics of `frames` (over `box`, or whole frames) to
    those of `reference` over the same region; `reference` must have the frames' size."""
    return ColourTransfer.between(lab_stats(frames, box), lab_stats([reference], box), max_gain)
