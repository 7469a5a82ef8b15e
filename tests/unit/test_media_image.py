from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from talkstack.media.image import read_image


def test_png_jpeg_webp_load_as_upright_rgb(media, portrait_rgb):
    for name in ("portrait", "webp", "cmyk_jpg"):
        rgb, _ = read_image(media[name])
        assert rgb.shape == (512, 512, 3) and rgb.dtype == np.uint8
        # Lossy formats differ a little; the picture must be the same picture.
        assert np.abs(rgb.astype(int) - portrait_rgb).mean() < 6, name


def test_exif_orientation_is_applied(media, portrait_rgb):
    rgb, info = read_image(media["rotated_jpg"])
    assert rgb.shape == portrait_rgb.shape
    assert np.abs(rgb.astype(int) - portrait_rgb).mean() < 6
    assert any("EXIF" in note for note in info.notes)


def test_cmyk_is_converted_and_reported(media):
    _, info = read_image(media["cmyk_jpg"])
    assert info.mode == "CMYK" and any("CMYK" in n for n in info.notes)


def test_alpha_is_flattened_onto_white_and_reported(media, portrait_rgb):
    rgb, info = read_image(media["alpha_png"])
    assert info.mode == "RGBA" and any("transparent" in n for n in info.notes)
    assert (rgb[:, :40] == 255).all()
    assert (rgb[:, 40:] == portrait_rgb[:, 40:]).all()


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("empty", "EMPTY_INPUT"),
        ("text_png", "UNSUPPORTED_MEDIA"),
        ("speech", "UNSUPPORTED_MEDIA"),  # audio given as an image
        ("corrupt_png", "CORRUPT_MEDIA"),
        ("bomb_png", "IMAGE_TOO_LARGE"),
        ("tiny_png", "IMAGE_TOO_SMALL"),
    ],
)
def test_bad_images_get_a_specific_code(media, error_code, name, code):
    assert error_code(read_image, media[name]) == code


def test_bomb_is_refused_before_decoding(media, error_code, monkeypatch):
    # If the pixels were decoded, Image.load would run; the header check must stop it first.
    def boom(self):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(Image.Image, "load", boom)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", boom)
    assert error_code(read_image, media["bomb_png"]) == "IMAGE_TOO_LARGE"


def test_gif_is_unsupported(tmp_path, error_code):
    path = tmp_path / "face.gif"
    Image.new("RGB", (128, 128)).save(path)
    assert error_code(read_image, path) == "UNSUPPORTED_MEDIA"


def test_image_over_the_byte_limit(media, error_code):
    from talkstack.settings import MediaLimits

    assert (
        error_code(read_image, media["portrait"], MediaLimits(max_image_bytes=100_000)) == "IMAGE_TOO_LARGE"
    )
