"""The arithmetic of the avatar quality report (docs/quality.md), on plain arrays.

What a face looks like in a frame comes from the face landmarker, which lives with the engines
(talkstack/engines/quality.py does the sampling and builds the report); here are the measures
themselves, so each can be tested on numbers whose answer is known:

- the speech energy envelope at the video frame rate (librosa RMS, in dB, lightly smoothed);
- the best lagged correlation of two per-frame signals (lip sync: envelope vs mouth opening);
- the Procrustes distance of two landmark shapes (identity: geometry);
- the colour drift of a face's mean Lab colour over time (between chunks, or from the opening).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from talkstack.media.audio import resample
from talkstack.media.colour import delta_e76

HOP = 640
"""Audio samples per video frame the envelope is computed with: speech is resampled to fps × HOP
(16 kHz at 25 fps) so that every envelope value covers exactly one frame."""
ENVELOPE_RANGE_DB = 45.0
"""The envelope is floored this far below its loudest frame: pauses all read as the same silence
instead of as room noise of varying depth."""
MIN_ENVELOPE_SPREAD_DB = 3.0
"""An envelope that varies less than this (standard deviation) is silence or a steady tone: there is
no speech rhythm for a mouth to follow, so lip sync is not measured."""
SMOOTHING = np.array([0.25, 0.5, 0.25])
"""A 3-frame kernel applied to both signals: landmark jitter and single loud frames are not rhythm."""
MIN_PAIRS = 25
"""Fewer (mouth, energy) pairs than this (one second at 25 fps) measure nothing."""


def smooth(values: np.ndarray) -> np.ndarray:
    """The 3-frame smoothing of a per-frame signal (NaN, a frame without a face, stays NaN)."""
    if len(values) < len(SMOOTHING):
        return values.astype(np.float64)
    padded = np.pad(values.astype(np.float64), 1, mode="edge")
    return np.convolve(padded, SMOOTHING, mode="valid")


def speech_envelope(samples: np.ndarray, rate: int, fps: float, n_frames: int) -> np.ndarray:
    """Loudness (dB, 0 at the loudest frame, floored at −ENVELOPE_RANGE_DB) of mono speech, one value
    per video frame, each centred on its frame ((i + ½) / fps), smoothed; frames past the audio's end
    are silence."""
    import librosa  # imports numba: only where the report is measured

    frame_rate = round(fps * HOP)
    speech = resample(np.asarray(samples, np.float32), rate, frame_rate) if rate != frame_rate else samples
    # librosa centres window i on sample i·HOP; dropping half a hop centres it on frame i's middle.
    speech = np.ascontiguousarray(speech[HOP // 2 :], dtype=np.float32)
    if len(speech) == 0:
        return np.full(n_frames, -ENVELOPE_RANGE_DB)
    rms = librosa.feature.rms(y=speech, frame_length=2 * HOP, hop_length=HOP, center=True)[0]
    if not np.any(rms > 0):
        return np.full(n_frames, -ENVELOPE_RANGE_DB)
    db = librosa.amplitude_to_db(rms, ref=np.max, top_db=ENVELOPE_RANGE_DB)
    db = np.pad(db[:n_frames], (0, max(0, n_frames - len(db))), constant_values=-ENVELOPE_RANGE_DB)
    return smooth(db)


def container_audio(video: Path) -> tuple[np.ndarray, int] | None:
    """The first audio track of a video, decoded to mono float32: what a viewer hears."""
    with av.open(str(video)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=stream.rate)
        chunks = [
            out.to_ndarray().reshape(-1)
            for frame in container.decode(stream)
            for out in resampler.resample(frame)
        ]
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    if not chunks:
        return None
    return np.concatenate(chunks).astype(np.float32), int(stream.rate)


@dataclass(frozen=True)
class LaggedCorrelation:
    r: float
    """Pearson correlation at the best lag."""
    lag: int
    """Frames the first signal trails the second by at that lag (positive: mouth after sound)."""
    pairs: int


def best_lagged_correlation(
    follower: Sequence[np.ndarray], leader: Sequence[np.ndarray], max_lag: int
) -> LaggedCorrelation | None:
    """The highest Pearson correlation of follower[t + lag] with leader[t] over lags −max_lag…max_lag.

    Each pair of arrays is one window of consecutive frames (lags never pair frames across windows);
    each window is centred on its own means before pooling, so windows from different parts of a
    video are compared on their rhythm, not on their levels. NaN (no face) pairs are left out. None
    when too few pairs remain; r = 0 when either signal is flat (a mouth that never moves does not
    follow the speech)."""
    best: LaggedCorrelation | None = None
    for lag in range(-max_lag, max_lag + 1):
        xs, ys = [], []
        for f, g in zip(follower, leader, strict=True):
            n = min(len(f), len(g))
            x, y = (f[lag:n], g[: n - lag]) if lag >= 0 else (f[: n + lag], g[-lag:n])
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.sum() >= 3:
                xs.append(x[ok] - x[ok].mean())
                ys.append(y[ok] - y[ok].mean())
        pairs = sum(len(x) for x in xs)
        if pairs < MIN_PAIRS:
            continue
        x, y = np.concatenate(xs), np.concatenate(ys)
        denominator = float(np.sqrt((x * x).sum() * (y * y).sum()))
        r = float((x * y).sum()) / denominator if denominator > 1e-12 else 0.0
        if best is None or r > best.r:
            best = LaggedCorrelation(r, lag, pairs)
    return best


def procrustes_distance(points: np.ndarray, reference: np.ndarray) -> float:
    """Full Procrustes distance of two 2-D landmark shapes: both centred and scaled to unit size
    (root mean square distance from the centroid), `points` rotated onto `reference`, then the root
    mean square distance between corresponding points. Invariant to where the face is, how large,
    and its in-plane roll; 0 for the same shape, √2 at most."""
    a = np.asarray(points, np.float64) - np.mean(points, axis=0)
    b = np.asarray(reference, np.float64) - np.mean(reference, axis=0)
    a /= np.sqrt((a * a).sum(axis=1).mean())
    b /= np.sqrt((b * b).sum(axis=1).mean())
    # Orthogonal Procrustes (rotation only, no reflection): R = U·diag(1, det)·Vᵀ of the SVD of aᵀb.
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, d]) @ vt
    return float(np.sqrt(((a @ rotation - b) ** 2).sum(axis=1).mean()))


SEAM_GAP_S = 0.2
"""Samples this close to a cut are left out of the seam's colour jump: the stitcher crossfades over
the chunks' overlap there (0.32 s by default, half on each side), so they are half of each."""


def colour_drift(
    times_s: np.ndarray,
    lab: np.ndarray,
    boundaries_s: Sequence[float] = (),
    window_s: float = 1.0,
    gap_s: float = SEAM_GAP_S,
) -> float | None:
    """Largest ΔE76 of the mean face colour (`lab`, one row per sample at `times_s`):

    - with chunk boundaries: at each cut, the mean over the `window_s` before it vs the one after,
      leaving out `gap_s` either side of the cut (what a viewer sees jump at the seam); cuts
      without samples on both sides are skipped;
    - without: each `window_s`-long window's mean vs the first window's (slow drift from the
      opening, where every avatar model starts from the reference photo).

    None when fewer than two windows have samples."""
    times_s, lab = np.asarray(times_s, np.float64), np.asarray(lab, np.float64)
    if len(times_s) == 0:
        return None
    if boundaries_s:
        jumps = []
        for cut in boundaries_s:
            away = np.abs(times_s - cut) >= gap_s - 1e-6  # a frame exactly gap_s away counts
            before = lab[(times_s >= cut - window_s) & (times_s < cut) & away]
            after = lab[(times_s >= cut) & (times_s < cut + window_s) & away]
            if len(before) and len(after):
                jumps.append(delta_e76(before.mean(axis=0), after.mean(axis=0)))
        return max(jumps) if jumps else None
    windows = np.floor((times_s - times_s.min()) / window_s).astype(int)
    means = [lab[windows == w].mean(axis=0) for w in np.unique(windows)]
    if len(means) < 2:
        return None
    return max(delta_e76(mean, means[0]) for mean in means[1:])
