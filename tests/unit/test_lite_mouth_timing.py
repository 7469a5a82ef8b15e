"""The lite avatar's mouth keeps time with its speech: it opens on the frame a sound starts and
closes on the frame it stops, in the driver's curves and in the rendered video.

The speech is synthetic: bursts of a voiced tone (a 140 Hz buzz with its harmonics, like a vowel)
separated by silence, starting and stopping at known frame times. Frame i of the video shows the
audio heard during it, [i/fps, (i+1)/fps): a burst starting on a frame boundary opens the mouth on
that very frame; one starting inside a frame may open it on the next (the frame is only partly
voiced), so those are allowed ±1 frame. A mouth lagging (or leading) by 2–4 frames is visible and
is what these tests exist to catch.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from talkstack.engines.lite import avatar as lite_avatar
from talkstack.engines.lite.avatar import LiteAvatarOptions, render_avatar
from talkstack.engines.lite.face import find_face
from talkstack.engines.lite.motion import motion_curves
from talkstack.engines.lite.rig import AvatarRig
from talkstack.media.audio import ENGINE_SAMPLE_RATE, write_wav
from talkstack.media.video import iter_frames

RATE, FPS = ENGINE_SAMPLE_RATE, 25
FRAMES = 100  # 4 s
ON_BOUNDARY = [(10, 22), (30, 33), (45, 70)]
"""(first voiced frame, first silent frame again) of bursts that start and stop on frame boundaries."""
INSIDE_FRAME = [(78.4, 86.6), (90.7, 96.3)]
"""Bursts that start and stop part-way through a frame (in frames)."""
OPEN, CLOSED = 0.5, 0.5
"""Half open: the mouth counts as open above it, as closed again below it."""


def _vowel(n: int) -> np.ndarray:
    t = np.arange(n) / RATE
    return sum(0.3 / k * np.sin(2 * np.pi * 140 * k * t) for k in range(1, 12))


def _speech() -> np.ndarray:
    samples = np.zeros(FRAMES * RATE // FPS)
    for a, b in [*ON_BOUNDARY, *INSIDE_FRAME]:
        start, stop = round(a * RATE / FPS), round(b * RATE / FPS)
        samples[start:stop] = _vowel(stop - start)
    # A breath of noise under everything, as in any recording (a digital zero is never the case).
    noise = 1e-4 * np.random.default_rng(0).standard_normal(len(samples))
    return (samples + noise).astype(np.float32)


def _episodes(opening: np.ndarray) -> list[tuple[int, int]]:
    """(first open frame, first closed frame after it) of each stretch the mouth is open."""
    found, start = [], None
    for i, value in enumerate(opening):
        if start is None and value > OPEN:
            start = i
        elif start is not None and value < CLOSED:
            found.append((start, i))
            start = None
    if start is not None:
        found.append((start, len(opening)))
    return found


def _assert_in_time(episodes: list[tuple[int, int]]) -> None:
    assert len(episodes) == len(ON_BOUNDARY) + len(INSIDE_FRAME), episodes
    for (opened, closed), (onset, offset) in zip(episodes[:3], ON_BOUNDARY, strict=True):
        assert (opened, closed) == (onset, offset), f"burst {onset}–{offset}: mouth open {opened}–{closed}"
    for (opened, closed), (onset, offset) in zip(episodes[3:], INSIDE_FRAME, strict=True):
        # Open on the first frame the burst is heard in (or the next); closed once it is over.
        assert int(onset) <= opened <= int(onset) + 1, f"burst from frame {onset}: opened at {opened}"
        assert int(offset) <= closed <= int(offset) + 1, f"burst to frame {offset}: closed at {closed}"


def test_the_mouth_curve_opens_and_closes_on_the_frames_the_sound_starts_and_stops():
    curves = motion_curves(_speech(), RATE, FPS, seed=0)
    assert len(curves) == len(curves.mouth) == FRAMES
    _assert_in_time(_episodes(curves.mouth))


@pytest.mark.parametrize("fps", [25, 24, 30])
def test_the_mouth_does_not_drift_from_the_sound_over_minutes(fps):
    # Three minutes of speech at a frame rate that does not divide the sample rate evenly (16000/24
    # and 16000/30 are fractional): a burst every 2 s, each starting on a frame boundary. A mapping
    # that rounds the samples per frame, or adds a sample, falls frames behind by the end.
    period, burst = 2 * fps, fps // 2
    frames = 180 * fps
    samples = np.zeros(round(frames * RATE / fps))
    for first in range(period, frames, period):
        start, stop = round(first * RATE / fps), round((first + burst) * RATE / fps)
        samples[start:stop] = _vowel(stop - start)
    samples += 1e-4 * np.random.default_rng(0).standard_normal(len(samples))
    mouth = motion_curves(samples.astype(np.float32), RATE, fps).mouth
    assert len(mouth) == frames
    assert _episodes(mouth) == [(first, first + burst) for first in range(period, frames, period)]


@pytest.mark.parametrize("seconds", [3.98, 4.0, 4.02])
def test_one_mouth_value_per_video_frame(seconds):
    # The video ends within half a frame of the audio: 99.5 frames' worth of audio → 100 frames.
    curves = motion_curves(np.zeros(round(seconds * RATE), np.float32), RATE, FPS)
    assert len(curves.mouth) == len(curves.blink) == len(curves.dx) == round(seconds * FPS)


@pytest.fixture
def photo(portrait_rgb: np.ndarray) -> np.ndarray:
    """The portrait at 320 px (its face about 56 px wide, over the 48 px minimum): quick to render."""
    return cv2.resize(portrait_rgb, (320, 320), interpolation=cv2.INTER_AREA)


READ_BACK_TOLERANCE = 0.15
"""How far the opening read back from a decoded frame may be from the curve's value for that frame.
The read-back is in steps of 0.025 and H.264 (crf 10) moves it a step or two; a lag of even one
frame misses by far more at each onset and stop, where the curve jumps between closed and open."""


@pytest.mark.slow
def test_each_rendered_frame_shows_the_mouth_the_curve_gives_that_frame(
    photo: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The quality report (a lip-sync and identity measure over the whole video) is beside the point
    # here and costs more than the render.
    monkeypatch.setattr(lite_avatar, "with_quality", lambda result, *_a, **_k: result)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    speech = write_wav(tmp_path / "speech.wav", _speech(), RATE)
    options = LiteAvatarOptions(head_motion=0.0, blinks=False, crf=10)
    result = render_avatar(tmp_path / "photo.png", speech, tmp_path / "avatar.mp4", options=options)
    assert result.frames == FRAMES and (result.width, result.height) == (320, 320)

    # Read back how open the mouth is in each decoded frame: the opening whose render of the photo
    # (by the same rig, head still, eyes open) the frame's head region is nearest to.
    rig = AvatarRig(photo, find_face(photo, 48).face)
    box = rig.box.slices
    scale = np.linspace(0.0, 1.0, 41)
    looks = np.stack([rig.render(m, 0, 0, 0, 0)[box] for m in scale]).astype(np.float32)
    opening = np.array(
        [
            scale[np.argmin(((looks - frame[box]) ** 2).mean(axis=(1, 2, 3)))]
            for frame in iter_frames(result.output)
        ]
    )
    # Frame for frame, not thresholded: the curve's own timing is held exactly by the numpy test
    # above; here each frame must show that frame's value (no lag, no lead, no frame dropped).
    mouth = motion_curves(_speech(), RATE, FPS, head_motion=0.0, blinks=False).mouth
    assert len(opening) == len(mouth) == FRAMES
    off = np.flatnonzero(np.abs(opening - mouth) > READ_BACK_TOLERANCE)
    assert off.size == 0, [(int(i), float(mouth[i]), float(opening[i])) for i in off]
