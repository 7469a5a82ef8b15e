from __future__ import annotations

import hashlib

import pytest

from talkstack.engines.lite.face import detect_faces, find_face, model_path
from talkstack.media.image import read_image

MODEL_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
"""The published Face Landmarker file (NOTICE names it with this digest)."""


def test_shipped_landmarker_model_is_the_published_file():
    assert model_path().stat().st_size == 3_758_596
    assert hashlib.sha256(model_path().read_bytes()).hexdigest() == MODEL_SHA256


def test_finds_the_sample_face_where_it_is(portrait_rgb):
    search = find_face(portrait_rgb, min_face_pixels=48)
    x0, y0, x1, y1 = search.face.box
    assert search.count == 1
    # The astronaut's face occupies roughly x 180–270, y 72–178 of the 512×512 photo.
    assert 170 < x0 < 195 and 255 < x1 < 285 and 60 < y0 < 85 and 165 < y1 < 190
    assert abs(search.face.roll) < 0.15


def test_several_faces_are_all_found_and_the_largest_is_chosen(media):
    rgb, _ = read_image(media["two_faces"])
    faces = detect_faces(rgb)
    assert len(faces) == 2
    chosen = find_face(rgb, 48)
    assert chosen.count == 2 and chosen.face.box[2] < 512  # the big face is in the left half


@pytest.mark.parametrize(("name", "code"), [("no_face", "NO_FACE_DETECTED"), ("tiny_face", "FACE_TOO_SMALL")])
def test_unusable_photos(media, error_code, name, code):
    rgb, _ = read_image(media[name])
    assert error_code(find_face, rgb, 48) == code
