"""Transitions on the encoded video: a crossfade's midpoint blends both scenes, a fade goes
through its colour, a cut switches from one frame to the next."""

from __future__ import annotations

import numpy as np
import pytest

from talkstack.compose.render import compose_video
from tests.unit.compose.compose_media import FPS, frame_at, ignore_progress, media, options, solid_image


def _two_colours(tmp_path, transition):
    inputs = {
        "scene_0_media": solid_image(tmp_path / "red.png", (200, 0, 0)),
        "scene_1_media": solid_image(tmp_path / "blue.png", (0, 0, 200)),
    }
    opts = options([media("red.png", duration_s=2, transition=transition), media("blue.png", duration_s=2)])
    return compose_video(opts, inputs, tmp_path / "out", ignore_progress, watermark=False).outputs["video"]


def _mean(frame: np.ndarray) -> np.ndarray:
    return frame.reshape(-1, 3).mean(axis=0)


def test_the_crossfade_midpoint_blends_both_scenes(tmp_path):
    video = _two_colours(tmp_path, {"type": "crossfade", "duration_s": 1.0})
    # Scene 2 starts at 1.0 s; the crossfade runs 1.0–2.0 s; its midpoint is 1.5 s.
    middle = _mean(frame_at(video, round(1.5 * FPS)))
    assert middle[0] == pytest.approx(100, abs=15) and middle[2] == pytest.approx(100, abs=15)
    assert _mean(frame_at(video, 10))[0] > 180 and _mean(frame_at(video, round(2.5 * FPS)))[2] > 180


def test_a_fade_goes_through_its_colour(tmp_path):
    video = _two_colours(tmp_path, {"type": "fade", "duration_s": 1.0, "colour": "#FFFFFF"})
    middle = _mean(frame_at(video, round(1.5 * FPS)))
    assert middle.min() > 225  # white at the middle of the fade
    quarter = _mean(frame_at(video, round(1.25 * FPS)))
    assert quarter[0] > quarter[2] + 60  # the red scene fading out, no blue yet


def test_a_cut_switches_between_two_frames(tmp_path):
    video = _two_colours(tmp_path, {"type": "cut"})
    before, after = _mean(frame_at(video, 2 * FPS - 1)), _mean(frame_at(video, 2 * FPS))
    assert before[0] > 180 and after[2] > 180


@pytest.mark.parametrize(
    ("transition", "progress"),
    [
        ({"type": "crossfade", "duration_s": 1.0}, 0.3),
        ({"type": "fade", "duration_s": 1.0, "colour": "#FF8000"}, 0.2),
        ({"type": "fade", "duration_s": 1.0, "colour": "#FF8000"}, 0.5),
        ({"type": "fade", "duration_s": 1.0, "colour": "#FF8000"}, 0.9),
    ],
)
def test_mix_is_the_weighted_sum_of_the_frames_and_the_colour(transition, progress):
    from talkstack.compose.transitions import mix, weights
    from talkstack.contract.composition import Transition

    rng = np.random.default_rng(1)
    one, two = rng.integers(0, 256, (2, 36, 64, 3), dtype=np.uint8)
    t = Transition.model_validate(transition)
    a, b, c = weights(t, progress)
    colour = np.array([255, 128, 0], np.float64)
    expected = np.clip(np.round(a * one + b * two + c * colour), 0, 255)
    got = mix(t, one, two, progress)
    assert got.dtype == np.uint8 and got.shape == one.shape
    assert np.abs(got.astype(int) - expected).max() <= 1
