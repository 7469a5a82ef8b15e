from __future__ import annotations

import numpy as np
import pytest

from talkstack.engines.lite.face import LOWER_INNER_LIP, RIGHT_EYE, UPPER_INNER_LIP, find_face
from talkstack.engines.lite.rig import AvatarRig

POSES = [(0, 0, 0, 0, 0), (1, 0, 0, 0, 0), (0.5, 1, 1.5, 0.02, -0.02), (0.8, 0.5, -1.5, -0.02, 0.02)]


@pytest.fixture(scope="module")
def rig(portrait_rgb):
    return AvatarRig(portrait_rgb, find_face(portrait_rgb, 48).face)


def test_rest_pose_is_the_photo(rig, portrait_rgb):
    assert np.array_equal(rig.render(0, 0, 0, 0, 0), portrait_rgb)


@pytest.mark.parametrize("pose", POSES)
def test_nothing_outside_the_head_region_changes(rig, portrait_rgb, pose):
    frame = rig.render(*pose)
    outside = np.ones(portrait_rgb.shape[:2], bool)
    outside[rig.box.slices] = False
    assert np.array_equal(frame[outside], portrait_rgb[outside])
    # The head region is the head, not the frame: well under half of a head-and-shoulders photo.
    assert rig.box.area < 0.25 * portrait_rgb.shape[0] * portrait_rgb.shape[1]


def test_open_mouth_shows_a_dark_cavity_between_the_lips(rig, portrait_rgb):
    pts = find_face(portrait_rgb, 48).face.points
    x = int(pts[[13, 14], 0].mean())
    y0 = int(pts[UPPER_INNER_LIP, 1].max()) + 1
    closed, opened = rig.render(0, 0, 0, 0, 0), rig.render(1, 0, 0, 0, 0)
    band = slice(y0, y0 + int(rig.max_drop * 0.6))
    assert opened[band, x - 3 : x + 3].mean() < closed[band, x - 3 : x + 3].mean() - 40
    # The chin moved down: the lower lip's row in the opened frame matches a row further down.
    lower_y = int(pts[LOWER_INNER_LIP, 1].max())
    assert not np.array_equal(opened[lower_y], closed[lower_y])


def test_blink_covers_the_eye(rig, portrait_rgb):
    pts = find_face(portrait_rgb, 48).face.points
    eye = pts[[RIGHT_EYE["outer"], RIGHT_EYE["inner"]]].mean(axis=0).astype(int)
    patch = (slice(eye[1] - 2, eye[1] + 2), slice(eye[0] - 3, eye[0] + 3))
    open_eye, shut = rig.render(0, 0, 0, 0, 0)[patch], rig.render(0, 1, 0, 0, 0)[patch]
    # The dark iris gives way to lighter eyelid skin.
    assert shut.mean() > open_eye.mean() + 25
