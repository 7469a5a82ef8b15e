"""An invisible, keyed spread-spectrum watermark in video frames.

Why a scheme of our own: the packaged image watermarks do not fit. `invisible-watermark`'s dwtDct
(MIT) is known not to survive resizing, its RivaGAN variant and TrustMark/AudioSeal/WavMark need
model weights downloaded at run time (not allowed here), and `blind-watermark` (MIT) embeds per
image in DWT blocks tied to the pixel grid, so a resize moves every block. This one is built to
survive what happens to a published video: re-encoding at a lower bitrate and resizing.

How it works:

- **The pattern**: a keyed grid of ±1 cells (GRID × GRID, in frame-normalised coordinates, so any
  resolution or aspect ratio maps to the same cells), smoothly upsampled to the frame. Smooth and
  coarse: codecs keep low spatial frequencies and a resize leaves them unchanged.
- **Embedding**: the pattern times AMPLITUDE (in 8-bit levels) times a keyed sign for the frame
  times the frame's activity mask is added to every channel, i.e. to the luma. The mask (0..1,
  from the luma's local spread, computed per frame on a subsampled copy) keeps the mark off flat
  colour, where even a few levels of smooth change show as blocky mottling once a codec has
  quantised them (title cards, colour backgrounds), and puts it where texture and edges hide it.
  The sign changes from run to run and is balanced in pairs (+s, −s), so a static picture's own
  resemblance to the pattern cancels when the detector sums over frames, while the mark adds up.
  The detector is unchanged: the mask is never negative, so the marked picture still correlates
  with the pattern wherever it is textured.
- **Detection**: each frame's luma is area-averaged down to the grid, its mean removed, and
  correlated with the pattern (c_f). Consecutive frames are differenced in pairs (the background
  cancels) and correlated with the keyed signs. The score is Σ r_k e_k / sqrt(Σ e_k²): with the
  signs independent of the content it is close to a standard normal for any unmarked video, so
  the threshold is a false-alarm rate, checked on unmarked renders and photos (bench/bench_watermark.py).
  The detector tries the first few frame offsets (a trimmed start) and keeps the best.

It identifies the key that made it (no payload beyond "made with this key"); it does not survive
cropping, heavy rescaling below about a quarter, frame-rate conversion or deliberate removal, and a
video that is flat colour throughout (only title cards) carries only the faint one-level mark.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

try:  # the lite and GPU video workers have OpenCV; the voice workers (audio only) do not
    import cv2
except ImportError:  # pragma: no cover - exercised by the voice worker images
    cv2 = None

from talkstack.safety.watermark_core import SIGN_PERIOD, keyed_patterns, keyed_signs, spread_score

GRID = 32
"""Pattern cells along each side of the frame (in normalised coordinates)."""
AMPLITUDE = 3.2
"""Scale of the added pattern in 8-bit levels where the picture is textured (its ±1 cells upsample
bicubically to a peak of about 1.5 and an RMS of about 0.8); scaled down by the activity mask
elsewhere, to FLAT_FLOOR of it on flat colour. Bounded on both sides by what is measured: at 3.3
the codec's flicker in a still, textured region of a lite render passed 3 levels
(tests/integration/test_lite_avatar.py); at 3.0, with TEXTURED_STD at 4, a 4 s, 256 px render at
half its bitrate fell below the threshold (tests/unit/test_provenance.py)."""
MASK_ROWS = 192
"""The activity mask is computed on the frame point-sampled to about this many rows (or columns)."""
MASK_WINDOW = 3
"""Samples along each side of the windows the activity mask is measured and smoothed over."""
FLAT_STD = 0.5
"""A luma standard deviation (8-bit levels) at or below which the picture counts as flat (FLAT_FLOOR)."""
TEXTURED_STD = 2.5
"""A luma standard deviation at or above which the picture carries the full AMPLITUDE."""
FLAT_FLOOR = 0.2
"""The mask's least value: flat colour keeps a faint mark, AMPLITUDE × the pattern's peak (about
1.56) × this ≈ 1 level, which rounds to at most one level (where 2–4 levels showed as mottling), so
a composition of title cards and smooth backgrounds keeps a mark through a re-encode (measured in
docs/safety.md)."""
THRESHOLD = 6.0
"""Detection threshold on the score, a Student t with DECOYS − 1 degrees of freedom without the mark:
6 with MAX_OFFSET + 1 offsets tried is a false-alarm rate near 1e-6 per video in theory; the
measured scores of unmarked videos are in docs/safety.md."""
RUN = 12
"""Frames that share a sign (about half a second). A codec carries a mark that holds still for a
while (P-frames copy it) and drops one that flickers every frame; and each flip costs bits, which a
still photo's talking head otherwise barely spends: on a 512 × 512 lite render at the default CRF the
marked file was 4.1× the unmarked one with runs of 4 frames, 2.3× with 12, 1.7× with 25. Runs of 25
lost 2 s clips whose start was trimmed; 12 detected them at half the bitrate with a score of 19."""
MAX_OFFSET = 2 * RUN - 1
"""Frame offsets the detector tries (a start trimmed by up to a full pair of runs)."""
MIN_FRAMES = 8
"""Fewer frames than this cannot give a meaningful score: the detector reports no mark."""
DECOYS = 48
"""Unrelated patterns the detector also correlates with: their spread is the noise the score is
measured against."""
SIGNS_LABEL = "video-signs"
PATTERN_LABEL = "video-pattern"


@lru_cache(maxsize=8)
def _all_cells(key: str) -> np.ndarray:
    return keyed_patterns(key, PATTERN_LABEL, DECOYS, (GRID, GRID))


def _cells(key: str) -> np.ndarray:
    return _all_cells(key)[0]


@lru_cache(maxsize=8)
def _signs(key: str) -> np.ndarray:
    return keyed_signs(key, SIGNS_LABEL, SIGN_PERIOD)


@lru_cache(maxsize=16)
def _pattern(key: str, height: int, width: int) -> np.ndarray:
    """The smooth pattern at a frame size (float32, ±1 peak), cached per size."""
    # Upsample with bicubic interpolation: Pillow maps cell centres to pixel centres, so the same
    # cell lands on the same part of the picture at every resolution. (Pillow, not OpenCV: every
    # worker image has it, and the voice workers have no OpenCV.)
    return _resize(_cells(key), width, height, Image.Resampling.BICUBIC)


def _resize(grid: np.ndarray, width: int, height: int, method: Image.Resampling) -> np.ndarray:
    return np.asarray(Image.fromarray(grid.astype(np.float32), mode="F").resize((width, height), method))


def _whiten(grid: np.ndarray) -> np.ndarray:
    """Remove each cell's neighbourhood mean: natural pictures are smooth, the pattern is not, so
    this keeps most of the mark and little of the picture (a spread-spectrum detector's prefilter)."""
    padded = np.pad(grid, 1, mode="reflect")
    h, w = grid.shape
    blur = sum(padded[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9
    return grid - blur


@lru_cache(maxsize=8)
def _references(key: str) -> np.ndarray:
    """The key's pattern and the decoys as the detector sees them: at grid resolution, whitened,
    unit norm; (1 + DECOYS) × GRID² (row 0 is the key's)."""
    refs = np.stack([_whiten(grid) for grid in _all_cells(key)]).reshape(1 + DECOYS, -1)
    refs -= refs.mean(axis=1, keepdims=True)
    return refs / np.linalg.norm(refs, axis=1, keepdims=True)


class VideoWatermarker:
    """Adds the mark to frames in order: ``frame = marker.apply(frame)`` for each frame written."""

    def __init__(self, key: str, amplitude: float = AMPLITUDE, start_frame: int = 0) -> None:
        self.key, self.amplitude, self.index = key, amplitude, start_frame

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """The frame (H×W×3 uint8) with the mark of its position added; frames must come in order."""
        height, width = frame.shape[:2]
        sign = int(_signs(self.key)[(self.index // RUN) % SIGN_PERIOD])
        self.index += 1
        sampled = _sample(frame)
        # The mark at the sampled resolution: the pattern times the activity mask, in half levels
        # offset by 128 to fit a uint8 (upsampled at that precision, rounded once when added).
        delta = _pattern(self.key, *sampled.shape[:2]) * activity_mask(sampled)
        halves = np.rint(delta * np.float32(2 * self.amplitude * sign))
        biased = np.clip(halves + 128, 0, 255).astype(np.uint8)
        if cv2 is None:
            up = _resize_levels(biased, width, height)[:, :, None].astype(np.float32) - 128
            return np.clip(np.rint(frame + up * np.float32(0.5)), 0, 255).astype(np.uint8)
        # Upsampled (bilinear) and added, saturating, in one pass each: this runs on every frame
        # of every render.
        biased = np.repeat(biased[:, :, None], 3, axis=2)
        up = cv2.resize(biased, (width, height), interpolation=cv2.INTER_LINEAR)
        return cv2.addWeighted(frame, 1, up, 0.5, -64)


def _sample(frame: np.ndarray) -> np.ndarray:
    """The frame point-sampled (every step-th pixel, no averaging) to about MASK_ROWS samples along
    its shorter side: what the activity mask and the mark before upsampling are computed on."""
    height, width = frame.shape[:2]
    step = max(1, round(min(height, width) / MASK_ROWS))
    if cv2 is None:
        return frame[::step, ::step]
    size = (-(-width // step), -(-height // step))
    return cv2.resize(frame, size, interpolation=cv2.INTER_NEAREST)


def activity_mask(sampled: np.ndarray) -> np.ndarray:
    """How much of the mark each point of a (subsampled) RGB frame can hide, FLAT_FLOOR..1 (float32).

    The luma's standard deviation over a MASK_WINDOW-sample window, its minimum over the same
    window (so that flat colour right beside an edge, such as the background between a title's
    letters, counts as flat: no halo of mark around sharp edges), mapped linearly from FLAT_STD
    (FLAT_FLOOR: flat colour, where a smooth change of a few levels shows as mottling, after a
    codec too) to TEXTURED_STD (1: texture hides it), then smoothed so the mark fades in and out
    instead of ending at a step. Meant for a frame subsampled by point sampling (no averaging: fine
    texture aliases into the samples and still counts as activity), about MASK_ROWS² samples."""
    rgb = sampled.astype(np.int32)  # BT.601 luma in 1/1024 levels: exact and the same with or without OpenCV
    luma = (rgb[..., 0] * 306 + rgb[..., 1] * 601 + rgb[..., 2] * 117).astype(np.float32) / np.float32(1024)
    mean, mean_sq = _window(luma, "mean"), _window(luma * luma, "mean")
    std = _window(np.sqrt(np.maximum(mean_sq - mean * mean, 0)), "min")
    return _window(np.clip((std - FLAT_STD) / (TEXTURED_STD - FLAT_STD), FLAT_FLOOR, 1), "mean")


def _window(values: np.ndarray, how: str) -> np.ndarray:
    """The mean or the minimum over a MASK_WINDOW × MASK_WINDOW window (edges reflected, as
    OpenCV's default border)."""
    size = (MASK_WINDOW, MASK_WINDOW)
    if cv2 is not None:
        return cv2.blur(values, size) if how == "mean" else cv2.erode(values, np.ones(size, np.uint8))
    pad = MASK_WINDOW // 2
    padded = np.pad(values, pad, mode="reflect" if min(values.shape) > pad else "edge")
    h, w = values.shape
    shifted = [padded[i : i + h, j : j + w] for i in range(MASK_WINDOW) for j in range(MASK_WINDOW)]
    return sum(shifted) / np.float32(MASK_WINDOW**2) if how == "mean" else np.minimum.reduce(shifted)


def _resize_levels(levels: np.ndarray, width: int, height: int) -> np.ndarray:
    """A uint8 map upsampled bilinearly with Pillow (the workers without OpenCV)."""
    return np.asarray(Image.fromarray(levels, mode="L").resize((width, height), Image.Resampling.BILINEAR))


def frame_statistics(frame: np.ndarray, key: str) -> np.ndarray:
    """A frame's whitened luma at grid resolution correlated with the key's pattern and the decoys."""
    rgb = frame.astype(np.float32)
    luma = 0.299 * rgb[:, :, 0] + 0.587 * rgb[:, :, 1] + 0.114 * rgb[:, :, 2]
    small = _whiten(_resize(luma, GRID, GRID, Image.Resampling.BOX))  # area average
    return _references(key) @ small.reshape(-1)


@dataclass(frozen=True)
class VideoDetection:
    score: float
    """The best score over the offsets tried (~N(0, 1) for a video without the mark)."""
    threshold: float
    frames: int
    offset: int
    """The frame offset at which the best score was found."""

    @property
    def detected(self) -> bool:
        return self.score >= self.threshold


def detect_frames(
    frames: Iterable[np.ndarray], key: str, threshold: float = THRESHOLD, max_offset: int = MAX_OFFSET
) -> VideoDetection:
    """Score a sequence of RGB frames for the key's mark."""
    stats = np.array([frame_statistics(frame, key) for frame in frames], np.float64)
    if len(stats) < MIN_FRAMES:
        return VideoDetection(0.0, threshold, len(stats), 0)
    signs = _signs(key)
    scores = [spread_score(stats, signs, RUN, offset) for offset in range(max_offset + 1)]
    best = int(np.argmax(scores))
    return VideoDetection(scores[best], threshold, len(stats), best)
