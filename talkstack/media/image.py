"""Images: validate a photo and return it as an upright 8-bit RGB array.

The pixel limit is checked from the header, before any pixel is decoded, so a
decompression bomb costs nothing. EXIF orientation is applied; CMYK, palette, 16-bit and
alpha images are converted (alpha is flattened onto white and reported).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.files import check_input_file, sniff_mime
from talkstack.settings import MediaLimits, get_limits

IMAGE_FORMATS = {"PNG", "JPEG", "WEBP"}


@dataclass(frozen=True)
class ImageInfo:
    format: str
    mode: str  # the file's colour mode before conversion (e.g. "CMYK", "RGBA")
    width: int  # after EXIF orientation
    height: int
    bytes: int
    notes: list[str] = field(default_factory=list)  # conversions applied, worth telling the user


def read_image(path: Path, limits: MediaLimits | None = None) -> tuple[np.ndarray, ImageInfo]:
    """Decode and validate a photo; returns (H×W×3 uint8 RGB, info)."""
    limits = limits or get_limits()
    size = check_input_file(
        path, what="image", max_bytes=limits.max_image_bytes, too_large=ErrorCode.IMAGE_TOO_LARGE
    )
    try:
        with warnings.catch_warnings():
            # Our own limit (below) replaces Pillow's bomb warning; errors still raise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except UnidentifiedImageError as exc:
        mime = sniff_mime(path)
        if mime in {"image/png", "image/jpeg", "image/webp"}:
            raise TalkstackError(
                ErrorCode.CORRUPT_MEDIA, f"{path.name} looks like {mime} but cannot be decoded"
            ) from exc
        raise TalkstackError(
            ErrorCode.UNSUPPORTED_MEDIA,
            f"{path.name} is not an image file (PNG, JPEG, WebP)" + (f"; it is {mime}" if mime else ""),
            mime=mime,
        ) from exc
    except Image.DecompressionBombError as exc:
        raise TalkstackError(ErrorCode.IMAGE_TOO_LARGE, f"{path.name}: {exc}") from exc
    with img:
        if img.format not in IMAGE_FORMATS:
            raise TalkstackError(
                ErrorCode.UNSUPPORTED_MEDIA,
                f"{path.name} is {img.format}; supported images are PNG, JPEG and WebP",
                format=img.format,
            )
        w, h = img.size
        if w * h > limits.max_image_pixels:
            raise TalkstackError(
                ErrorCode.IMAGE_TOO_LARGE,
                f"image is {w}×{h} = {w * h / 1e6:.0f} megapixels; the limit is "
                f"{limits.max_image_pixels / 1e6:.0f} megapixels",
                width=w,
                height=h,
            )
        if min(w, h) < limits.min_image_side:
            raise TalkstackError(
                ErrorCode.IMAGE_TOO_SMALL,
                f"image is {w}×{h}; each side must be at least {limits.min_image_side} px",
                width=w,
                height=h,
            )
        fmt, mode = img.format, img.mode
        try:
            img.load()
            upright = ImageOps.exif_transpose(img)
            rgb, notes = _to_rgb(upright)
        except (OSError, SyntaxError, ValueError) as exc:
            raise TalkstackError(ErrorCode.CORRUPT_MEDIA, f"{path.name} is damaged: {exc}") from exc
    if upright.size != img.size or _exif_orientation(img) not in (None, 1):
        notes.insert(0, f"rotated upright from EXIF orientation {_exif_orientation(img)}")
    array = np.asarray(rgb, dtype=np.uint8)
    return array, ImageInfo(fmt, mode, array.shape[1], array.shape[0], size, notes)


def _exif_orientation(img: Image.Image) -> int | None:
    return img.getexif().get(0x0112)


def _to_rgb(img: Image.Image) -> tuple[Image.Image, list[str]]:
    notes: list[str] = []
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in {"I;16", "I;16B", "I;16L", "I"}:
        # 16-bit greyscale: scale to 8 bits rather than clip.
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr / max(arr.max(), 1) * 255, 0, 255).astype(np.uint8), "L")
        notes.append("16-bit image reduced to 8 bits")
    if img.mode in {"RGBA", "LA", "RGBa", "La"}:
        alpha = np.asarray(img.getchannel("A"))
        if alpha.min() < 255:
            notes.append("transparent areas flattened onto white")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    if img.mode == "CMYK":
        notes.append("CMYK converted to RGB")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img, notes
