from __future__ import annotations

import numpy as np

from talkstack.engines.lite.motion import band_levels_db, blink_curve, frame_count, motion_curves, mouth_curve

RATE, FPS = 16_000, 25


def _bursts() -> np.ndarray:
    """1 s silence, 1 s of a 600 Hz tone, 1 s silence, 1 s of 3 kHz (outside the speech band)."""
    t = np.arange(RATE) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 600 * t)
    high = 0.3 * np.sin(2 * np.pi * 3000 * t)
    quiet = np.zeros(RATE)
    return np.concatenate([quiet, tone, quiet, high]).astype(np.float32) + 1e-4 * np.random.default_rng(
        0
    ).standard_normal(4 * RATE).astype(np.float32)


def test_mouth_opens_for_speech_band_energy_and_closes_in_silence():
    audio = _bursts()
    mouth = mouth_curve(band_levels_db(audio, RATE, FPS, frame_count(4, FPS)))
    assert len(mouth) == 100
    assert mouth[5:20].max() < 0.05  # silence
    assert mouth[30:45].min() > 0.8  # 600 Hz: in the band
    assert mouth[55:70].max() < 0.05  # silence again: it closed
    assert mouth[80:95].max() < 0.3  # 3 kHz is outside the jaw-driving band


def test_mouth_responds_within_a_frame():
    audio = _bursts()
    mouth = mouth_curve(band_levels_db(audio, RATE, FPS, 100))
    onset = int(np.argmax(mouth > 0.5))
    assert onset in (25, 26)


def test_blinks_are_spaced_and_brief():
    curve = blink_curve(25 * 60, 25, np.random.default_rng(1))
    starts = np.flatnonzero((curve[1:] > 0) & (curve[:-1] == 0)) + 1
    gaps = np.diff(starts) / 25
    assert 10 <= len(starts) <= 30  # 2–5.5 s apart over a minute
    assert gaps.min() >= 2.0 - 1e-9
    assert (curve > 0.9).sum() <= len(starts) * 3  # fully shut only briefly


def test_curves_are_deterministic_per_seed_and_motion_can_be_switched_off():
    audio = _bursts()
    a = motion_curves(audio, RATE, FPS, seed=3)
    b = motion_curves(audio, RATE, FPS, seed=3)
    c = motion_curves(audio, RATE, FPS, seed=4)
    assert np.array_equal(a.roll_deg, b.roll_deg) and not np.array_equal(a.roll_deg, c.roll_deg)
    assert np.abs(a.roll_deg).max() < 2.0 and np.abs(a.dx).max() < 0.03
    still = motion_curves(audio, RATE, FPS, head_motion=0, blinks=False)
    assert not still.roll_deg.any() and not still.dx.any() and not still.blink.any()
