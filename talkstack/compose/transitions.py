"""How one scene hands over to the next inside their overlap: `crossfade` blends the two frames,
`fade` goes through a colour (the first half fades the outgoing scene to it, the second half fades
the incoming one in from it); `cut` has no overlap and never gets here."""

from __future__ import annotations

import cv2
import numpy as np

from talkstack.compose.colours import rgb
from talkstack.contract.composition import Transition


def weights(transition: Transition, progress: float) -> tuple[float, float, float]:
    """(outgoing, incoming, colour) weights at `progress` (0..1) through the transition; they sum
    to 1. The alpha planes of transparent output are mixed with the same weights."""
    p = min(1.0, max(0.0, progress))
    if transition.type == "crossfade":
        return 1.0 - p, p, 0.0
    if transition.type == "fade":
        if p < 0.5:
            return 1.0 - 2 * p, 0.0, 2 * p
        return 0.0, 2 * p - 1.0, 2.0 - 2 * p
    return (1.0, 0.0, 0.0) if p < 1.0 else (0.0, 1.0, 0.0)


def mix(
    transition: Transition, outgoing: np.ndarray | None, incoming: np.ndarray | None, progress: float
) -> np.ndarray:
    """The frame `progress` of the way through the transition (a None frame is not needed at this
    progress: its weight is 0)."""
    a, b, c = weights(transition, progress)
    first = outgoing if outgoing is not None else incoming
    assert first is not None
    frames = [(f, w) for f, w in ((outgoing, a), (incoming, b)) if w and f is not None]
    if c:
        colour = np.empty_like(first)
        colour[:] = rgb(transition.colour)
        frames.append((colour, c))
    if not frames:
        return np.zeros_like(first)
    if len(frames) == 1:
        frame, w = frames[0]
        return cv2.addWeighted(frame, w, frame, 0.0, 0.0)
    # Weighted sums in OpenCV (uint8 in and out, rounded and saturated): ~15× numpy's float32 at
    # 1080p. Inside a transition at most two terms are weighted (crossfade: the two scenes; fade:
    # one scene and the colour).
    (one, w1), (two, w2) = frames
    return cv2.addWeighted(one, w1, two, w2, 0.0)


def mix_alpha(
    transition: Transition, outgoing: np.ndarray | None, incoming: np.ndarray | None, progress: float
) -> np.ndarray:
    """The alpha plane with the same weights (the colour of a fade is transparent)."""
    a, b, _ = weights(transition, progress)
    base = outgoing if outgoing is not None else incoming
    assert base is not None
    out = np.zeros_like(base, dtype=np.float32)
    if a and outgoing is not None:
        out += a * outgoing
    if b and incoming is not None:
        out += b * incoming
    return out
