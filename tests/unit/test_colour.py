"""Lab colour statistics and their transfer (talkstack/media/colour.py), on real pixels."""

from __future__ import annotations

import numpy as np
import pytest

from talkstack.media.colour import (
    ColourTransfer,
    LabStats,
    delta_e76,
    fit_to_frame,
    from_lab,
    lab_stats,
    match_colour,
    to_lab,
)


def cast(rgb: np.ndarray, gains: tuple[float, float, float] = (1.15, 1.0, 0.8)) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * gains, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("rgb", "lab"),
    [
        # CIE L*a*b* (D65) of sRGB primaries and white, the published reference values.
        ((255, 255, 255), (100.0, 0.0, 0.0)),
        ((255, 0, 0), (53.24, 80.09, 67.20)),
        ((0, 0, 255), (32.30, 79.19, -107.86)),
        ((0, 255, 0), (87.73, -86.18, 83.18)),
    ],
)
def test_lab_is_cie_lab_of_srgb(rgb, lab) -> None:
    assert to_lab(np.array([[rgb]], np.uint8))[0, 0] == pytest.approx(lab, abs=0.05)


def test_lab_round_trip_is_within_one_level(portrait_rgb) -> None:
    back = from_lab(to_lab(portrait_rgb))
    assert np.abs(back.astype(int) - portrait_rgb).max() <= 1


def test_delta_e76_is_euclidean_in_lab() -> None:
    assert delta_e76(np.array([50, 0, 0]), np.array([53, 4, 0])) == pytest.approx(5.0)


def test_match_colour_removes_a_cast_from_the_portrait(portrait_rgb) -> None:
    frames = [cast(portrait_rgb), cast(np.roll(portrait_rgb, 3, axis=1))]
    reference = lab_stats([portrait_rgb])
    before = lab_stats(frames)
    assert delta_e76(before.mean, reference.mean) > 8  # a clearly visible warm cast

    transfer = match_colour(frames, portrait_rgb)
    after = lab_stats([transfer.apply(f) for f in frames])
    assert delta_e76(after.mean, reference.mean) < 1.0
    assert after.std == pytest.approx(reference.std, rel=0.05)


def test_a_matched_chunk_is_left_untouched(portrait_rgb) -> None:
    transfer = match_colour([portrait_rgb], portrait_rgb)
    assert transfer.is_noop
    assert transfer.apply(portrait_rgb) is portrait_rgb  # no re-quantisation of frames already right


def test_gain_is_clamped_for_a_flat_chunk() -> None:
    flat = LabStats(np.array([50.0, 0, 0]), np.array([0.01, 0.01, 0.01]))
    busy = LabStats(np.array([50.0, 0, 0]), np.array([20.0, 10, 10]))
    assert ColourTransfer.between(flat, busy).gain == pytest.approx([2.0, 2.0, 2.0])


def test_fit_to_frame_scales_to_cover_and_centre_crops() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, 50:150] = 255  # the middle half is white
    fitted = fit_to_frame(image, 50, 50)
    assert fitted.shape == (50, 50, 3)
    assert fitted.mean() == pytest.approx(255, abs=3)  # only the middle survives the crop
