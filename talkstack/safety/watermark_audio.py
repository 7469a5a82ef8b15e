"""An inaudible, keyed spread-spectrum watermark in speech audio.

The same design as the video mark (talkstack/safety/watermark_video.py), in the short-time spectrum:

- **The pattern**: a keyed ±1 value for each STFT bin of a mid band (BAND_HZ, where speech has
  energy and AAC and MP3 at common bitrates keep it), fixed in Hz: the audio is marked and read at
  RATE whatever its own sample rate, so resampling does not move it.
- **Embedding**: each bin's magnitude is scaled by (1 + DEPTH · pattern · sign), the sign keyed per
  run of RUN frames and balanced in pairs (+s, −s). Scaling follows the signal: silence gets no mark
  and loud speech a mark well below it (about ±1 dB within the band; the SNR is in docs/safety.md).
  Only the difference from the original is computed at RATE and added back at the file's rate, so
  frequencies outside the band are untouched.
- **Detection**: each frame's log-magnitude in the band, minus its local mean over neighbouring bins
  (the spectral envelope), is correlated with the pattern and with DECOYS unrelated ones; runs are
  differenced in pairs and correlated with the signs (watermark_core.spread_score). A few sub-run
  time offsets are tried (codecs add a delay).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import soxr
from scipy import signal

from talkstack.safety.watermark_core import SIGN_PERIOD, keyed_patterns, keyed_signs, spread_score

RATE = 16_000
"""The rate at which the mark is made and read."""
NFFT = 512
HOP = 256
BAND_HZ = (500.0, 3500.0)
DEPTH = 0.2
"""Relative change of each band bin's magnitude (±1.6 dB at the peak)."""
RUN = 4
"""STFT frames that share a sign (64 ms)."""
DECOYS = 48
THRESHOLD = 6.0
"""As the video's: a Student t with DECOYS − 1 degrees of freedom without the mark."""
OFFSET_STEP = HOP // 4
"""Sample offsets the detector tries: every OFFSET_STEP over two runs."""
MIN_SECONDS = 1.0
SIGNS_LABEL = "audio-signs"
PATTERN_LABEL = "audio-pattern"


def _band() -> slice:
    freqs = np.fft.rfftfreq(NFFT, 1 / RATE)
    low, high = np.searchsorted(freqs, BAND_HZ)
    return slice(int(low), int(high))


@lru_cache(maxsize=8)
def _patterns(key: str) -> np.ndarray:
    band = _band()
    return keyed_patterns(key, PATTERN_LABEL, DECOYS, (band.stop - band.start,))


@lru_cache(maxsize=8)
def _signs(key: str) -> np.ndarray:
    return keyed_signs(key, SIGNS_LABEL, SIGN_PERIOD)


def _whiten(rows: np.ndarray) -> np.ndarray:
    """Each row minus its moving mean over 9 bins: removes the spectral envelope of the speech."""
    kernel = np.ones(9) / 9
    padded = np.pad(rows, ((0, 0), (4, 4)), mode="reflect")
    smooth = np.stack([np.convolve(row, kernel, mode="valid") for row in padded]) if len(rows) else rows
    return rows - smooth


@lru_cache(maxsize=8)
def _references(key: str) -> np.ndarray:
    refs = _whiten(_patterns(key).astype(np.float64))
    refs -= refs.mean(axis=1, keepdims=True)
    return refs / np.linalg.norm(refs, axis=1, keepdims=True)


def _stft(samples: np.ndarray) -> np.ndarray:
    return signal.stft(samples, RATE, window="hann", nperseg=NFFT, noverlap=NFFT - HOP, boundary=None)[2]


def _to_rate(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, rate_in, rate_out, quality="HQ").astype(np.float32)


def embed_audio(samples: np.ndarray, rate: int, key: str, depth: float = DEPTH) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at `rate`, with the key's mark added (same length)."""
    samples = np.asarray(samples, np.float32)
    if len(samples) < NFFT:
        return samples
    low = _to_rate(samples, rate, RATE)
    spec = signal.stft(low, RATE, window="hann", nperseg=NFFT, noverlap=NFFT - HOP, boundary="zeros")[2]
    frames = spec.shape[1]
    # boundary="zeros" centres frame t at sample t·HOP, where the detector (boundary=None) has its
    # frame t - 1: the detector's frame offset search absorbs that one-frame shift.
    signs = _signs(key)[(np.arange(frames) // RUN) % SIGN_PERIOD]
    band = _band()
    gain = depth * _patterns(key)[0][:, None] * signs[None, :]
    delta = np.zeros_like(spec)
    delta[band] = spec[band] * gain
    mark = signal.istft(delta, RATE, window="hann", nperseg=NFFT, noverlap=NFFT - HOP, boundary=True)[1]
    mark = mark[: len(low)]
    if len(mark) < len(low):
        mark = np.pad(mark, (0, len(low) - len(mark)))
    mark = _to_rate(mark.astype(np.float32), RATE, rate)
    out = samples + np.pad(mark, (0, max(0, len(samples) - len(mark))))[: len(samples)]
    return np.clip(out, -1.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class AudioDetection:
    score: float
    threshold: float
    seconds: float

    @property
    def detected(self) -> bool:
        return self.score >= self.threshold


def detect_audio(samples: np.ndarray, rate: int, key: str, threshold: float = THRESHOLD) -> AudioDetection:
    """Score mono samples for the key's mark."""
    low = _to_rate(np.asarray(samples, np.float32), rate, RATE)
    seconds = len(low) / RATE
    if seconds < MIN_SECONDS:
        return AudioDetection(0.0, threshold, seconds)
    refs, signs, band = _references(key), _signs(key), _band()
    best = -np.inf
    for shift in range(0, HOP, OFFSET_STEP):
        spec = np.abs(_stft(low[shift:]))[band].T  # frames × bins
        stats = _whiten(np.log(spec + 1e-6)) @ refs.T
        for offset in range(-2 * RUN, 2 * RUN):
            best = max(best, spread_score(stats, signs, RUN, offset))
    return AudioDetection(float(best), threshold, seconds)
