"""What the video and audio watermarks share: patterns derived from the key, and the score.

Every pattern (the video's spatial pattern and per-frame signs, the audio's spectral pattern and
per-block signs) is drawn from a NumPy generator seeded by SHA-256 of the key and a label naming
the pattern, so one key gives independent patterns and nothing but the key is needed to detect.

The default key (settings.provenance.PUBLIC_WATERMARK_KEY) is published in the docs: anyone can
embed or detect a mark made with it, so with that key a detection shows only that talkstack (or
someone imitating it) made the file.
An operator who sets their own secret key makes detection mean "made by this deployment".
"""

from __future__ import annotations

import hashlib

import numpy as np


def keyed_rng(key: str, label: str) -> np.random.Generator:
    """A generator seeded from the key and a label (one label per pattern)."""
    digest = hashlib.sha256(f"talkstack.watermark/{label}\x00{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


def keyed_signs(key: str, label: str, count: int) -> np.ndarray:
    """`count` keyed ±1 values (float32), balanced in pairs: each even position is followed by its
    negation, so any even-length run sums to zero and a static background cancels exactly."""
    half = (count + 1) // 2
    signs = keyed_rng(key, label).choice(np.array([-1.0, 1.0], np.float32), size=half)
    return np.stack([signs, -signs], axis=1).reshape(-1)[:count]


SIGN_PERIOD = 1 << 16
"""Keyed signs repeat after this many runs."""


def spread_score(stats: np.ndarray, signs: np.ndarray, run: int, offset: int) -> float:
    """The detection score of per-step statistics (steps × (1 + decoys); column 0 is the key's
    pattern, the others unrelated decoy patterns), as if the media started `offset` steps late.

    Step t (a video frame, an audio block) carried the sign of run (t + offset) // run. Each run is
    averaged (partial runs at the ends are dropped), runs are differenced in their balanced pairs
    (2k, 2k+1) so a steady background cancels, and the differences are correlated with the keyed
    signs. The same sum for the decoys measures what the content alone gives: the score is the key's
    sum in units of the decoys' spread (a Student t with decoys − 1 degrees of freedom without the
    mark, whatever the content, because the signs are independent of it)."""
    first = (-offset) % (2 * run)  # the first step that starts an even run
    pairs = (len(stats) - first) // (2 * run)
    if pairs < 1:
        return 0.0
    runs = stats[first : first + pairs * 2 * run].reshape(pairs, 2, run, -1).mean(axis=2)
    diffs = (runs[:, 0] - runs[:, 1]) / 2
    index = ((first + offset) // run + 2 * np.arange(pairs)) % len(signs)
    sums = signs[index].astype(np.float64) @ diffs
    spread = float(np.std(sums[1:], ddof=1))
    return float((sums[0] - np.mean(sums[1:])) / spread) if spread > 0 else 0.0


def keyed_patterns(key: str, label: str, decoys: int, shape: tuple[int, ...]) -> np.ndarray:
    """The key's ±1 pattern (row 0) and `decoys` unrelated ones, (1 + decoys) × shape, float32."""
    values = np.array([-1.0, 1.0], np.float32)
    own = keyed_rng(key, label).choice(values, size=(1, *shape))
    others = keyed_rng(key, f"{label}-decoys").choice(values, size=(decoys, *shape))
    return np.concatenate([own, others])
