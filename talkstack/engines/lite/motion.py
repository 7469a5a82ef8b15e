"""Per-frame animation curves for the lite avatar: mouth opening, blinks, head motion.

All curves are computed up front (a few floats per frame), deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPEECH_BAND_HZ = (250.0, 2500.0)  # where the jaw-driven formant energy is
DYNAMIC_RANGE_DB = 28.0  # levels this far below the loud speech peaks count as a closed mouth


@dataclass(frozen=True)
class MotionCurves:
    mouth: np.ndarray  # 0 (closed) … 1 (fully open)
    blink: np.ndarray  # 0 (open) … 1 (closed)
    roll_deg: np.ndarray
    dx: np.ndarray  # in units of face width
    dy: np.ndarray

    def __len__(self) -> int:
        return len(self.mouth)


def frame_count(duration_s: float, fps: int) -> int:
    """Frames covering the audio; the video ends within half a frame of it."""
    return max(1, round(duration_s * fps))


def band_levels_db(samples: np.ndarray, rate: int, fps: int, n_frames: int) -> np.ndarray:
    """Speech-band level of each video frame's 1/fps slice of audio, in dB (relative)."""
    hop = rate / fps
    win = round(hop)
    samples = samples if len(samples) >= win else np.pad(samples, (0, win - len(samples)))
    starts = np.minimum((np.arange(n_frames) * hop).astype(np.int64), len(samples) - win)
    window = np.hanning(win).astype(np.float32)
    freqs = np.fft.rfftfreq(win, 1 / rate)
    band = (freqs >= SPEECH_BAND_HZ[0]) & (freqs <= SPEECH_BAND_HZ[1])
    power = np.empty(n_frames)
    # One FFT per video frame, in blocks: temporary memory stays flat however long the speech is.
    for i in range(0, n_frames, 256):
        block = samples[starts[i : i + 256, None] + np.arange(win)[None, :]] * window
        power[i : i + 256] = (np.abs(np.fft.rfft(block, axis=1)[:, band]) ** 2).sum(axis=1) / win
    return 10 * np.log10(power + 1e-10)


def mouth_curve(levels_db: np.ndarray, attack: float = 0.8, release: float = 0.55) -> np.ndarray:
    """Map band levels to mouth opening: gate, normalise to the loud peaks, smooth."""
    peak = float(np.percentile(levels_db, 95))
    gate = peak - DYNAMIC_RANGE_DB
    target = np.clip((levels_db - gate) / DYNAMIC_RANGE_DB, 0.0, 1.0) ** 1.3
    out = np.empty_like(target)
    level = 0.0
    # Opening fast and closing a little slower reads as speech rather than flicker.
    for i, t in enumerate(target):
        level += (attack if t > level else release) * (t - level)
        out[i] = level
    return out.astype(np.float32)


def blink_curve(n_frames: int, fps: int, rng: np.random.Generator) -> np.ndarray:
    """Blinks every 2–5.5 s, each ~0.2 s: shut quickly, open more slowly."""
    shape = np.interp(np.linspace(0, 1, max(3, round(0.2 * fps))), [0, 0.3, 0.5, 1], [0.35, 1.0, 0.8, 0.0])
    curve = np.zeros(n_frames, np.float32)
    t = rng.uniform(0.8, 2.5)
    while (start := int(t * fps)) < n_frames:
        end = min(n_frames, start + len(shape))
        curve[start:end] = shape[: end - start]
        t += rng.uniform(2.0, 5.5)
    return curve


def _wander(n_frames: int, fps: int, rng: np.random.Generator, amplitudes: tuple[float, ...]) -> np.ndarray:
    """Slow quasi-random motion: a few incommensurate sinusoids with random phases."""
    t = np.arange(n_frames) / fps
    freqs = (0.11, 0.23, 0.41)
    phases = rng.uniform(0, 2 * np.pi, len(freqs))
    return sum(a * np.sin(2 * np.pi * f * t + p) for a, f, p in zip(amplitudes, freqs, phases, strict=True))


def motion_curves(
    samples: np.ndarray,
    rate: int,
    fps: int,
    *,
    seed: int = 0,
    head_motion: float = 1.0,
    blinks: bool = True,
) -> MotionCurves:
    n = frame_count(len(samples) / rate, fps)
    rng = np.random.default_rng(seed)
    mouth = mouth_curve(band_levels_db(samples, rate, fps, n))
    # Nod a little with speech: the mouth curve low-passed over ~0.4 s.
    k = max(1, round(0.4 * fps))
    energy = np.convolve(mouth, np.ones(k) / k, mode="same")
    roll = _wander(n, fps, rng, (0.9, 0.45, 0.25)) * head_motion
    dx = _wander(n, fps, rng, (0.012, 0.006, 0.003)) * head_motion
    dy = (_wander(n, fps, rng, (0.006, 0.003, 0.002)) + 0.012 * energy) * head_motion
    blink = blink_curve(n, fps, rng) if blinks else np.zeros(n, np.float32)
    return MotionCurves(mouth, blink, roll.astype(np.float32), dx.astype(np.float32), dy.astype(np.float32))
