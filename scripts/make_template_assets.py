"""Make the bundled templates' media: procedural backgrounds, a product picture, a news picture and
a short music loop, so every file is ours (Apache-2.0, like the code) and the recipe is reviewable.

    python scripts/make_template_assets.py [OUTDIR]   (default talkstack/assets/templates/media)

Everything is drawn with numpy + Pillow from fixed numbers (no randomness without a seed), and the
music is synthesised with numpy and encoded as AAC with the bundled ffmpeg. Re-running it gives
images with the same sizes and pixels (JPEG encoders of other libjpeg builds may differ by a grey
level) and a loop of the same length; tests/unit/test_template_assets.py checks that.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT / "talkstack" / "assets" / "templates" / "media"
MUSIC_SECONDS = 8.0
MUSIC_RATE = 44_100
JPEG_QUALITY = 86


def _grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return x / (width - 1), y / (height - 1)


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0, 1)[..., None]
    return np.asarray(a, np.float32) * (1 - t) + np.asarray(b, np.float32) * t


def _image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _glow(
    size: tuple[int, int], spots: list[tuple[float, float, float, tuple[int, int, int], int]]
) -> Image.Image:
    """Soft light spots (x, y, radius as fractions of the width, colour, alpha), blurred: bokeh."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    width = size[0]
    for x, y, r, colour, alpha in spots:
        cx, cy, rr = x * width, y * size[1], r * width
        draw.ellipse((cx - rr, cy - rr, cx + rr, cy + rr), fill=(*colour, alpha))
    return layer.filter(ImageFilter.GaussianBlur(width / 90))


def studio(width: int = 1280, height: int = 720) -> Image.Image:
    """A calm studio backdrop: navy to teal with soft light spots and a floor glow."""
    x, y = _grid(width, height)
    pixels = _mix((12, 22, 48), (18, 96, 110), 0.65 * x + 0.35 * (1 - y))
    floor = np.exp(-(((y - 1.0) / 0.25) ** 2))[..., None] * np.asarray([40, 70, 80], np.float32)
    image = _image(pixels + floor).convert("RGBA")
    spots = [
        (0.12, 0.22, 0.05, (120, 200, 220), 70),
        (0.3, 0.12, 0.03, (255, 220, 160), 60),
        (0.8, 0.18, 0.06, (120, 220, 200), 60),
        (0.9, 0.5, 0.035, (255, 255, 255), 40),
        (0.55, 0.3, 0.025, (160, 200, 255), 50),
    ]
    return Image.alpha_composite(image, _glow((width, height), spots)).convert("RGB")


def social(width: int = 720, height: int = 1280) -> Image.Image:
    """A bold portrait gradient for social feeds: magenta to orange with diagonal light bands."""
    x, y = _grid(width, height)
    pixels = _mix((112, 28, 160), (255, 120, 40), 0.75 * y + 0.25 * x)
    diagonal = x * width / height + y
    bands = (np.sin(diagonal * np.pi * 5) > 0.6).astype(np.float32) * 0.12
    pixels = pixels * (1 + bands[..., None])
    image = _image(pixels).convert("RGBA")
    spots = [(0.15, 0.1, 0.12, (255, 200, 255), 60), (0.85, 0.9, 0.16, (255, 230, 120), 60)]
    return Image.alpha_composite(image, _glow((width, height), spots)).convert("RGB")


def slide(width: int = 1280, height: int = 720) -> Image.Image:
    """A light presentation slide: an off-white board, a header band and a simple bar chart on the
    right (the template's bullets go on the left, the presenter in a circle bottom right)."""
    _x, y = _grid(width, height)
    image = _image(_mix((246, 247, 250), (226, 232, 240), y))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, int(height * 0.1)), fill=(32, 86, 170))
    base, left = int(height * 0.62), int(width * 0.58)
    bars = [0.35, 0.55, 0.45, 0.75, 0.9]
    step = int(width * 0.065)
    for index, level in enumerate(bars):
        x0 = left + index * step
        draw.rounded_rectangle(
            (x0, base - int(level * height * 0.4), x0 + int(step * 0.7), base),
            radius=6,
            fill=(60 + index * 25, 130 + index * 15, 220),
        )
    draw.line((left - 10, base, left + len(bars) * step, base), fill=(120, 130, 150), width=3)
    return image


def product(width: int = 1280, height: int = 720) -> Image.Image:
    """A product shot: a rounded bottle-shaped gadget on a pedestal, lit from the left, on a warm
    gradient; the product sits low in the left half, so a presenter fits on the right and a few
    bullets above it."""
    x, y = _grid(width, height)
    image = _image(_mix((250, 236, 220), (214, 170, 140), 0.6 * y + 0.4 * x)).convert("RGBA")
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    cx, top, bottom = int(width * 0.25), int(height * 0.36), int(height * 0.8)
    half = int(width * 0.06)
    draw.ellipse((cx - 3 * half, bottom - 20, cx + 3 * half, bottom + 50), fill=(90, 60, 50, 90))  # shadow
    draw.rounded_rectangle(
        (cx - 2 * half, bottom, cx + 2 * half, int(height * 0.9)), radius=18, fill=(70, 70, 84, 255)
    )
    draw.rounded_rectangle((cx - half, top, cx + half, bottom), radius=half, fill=(30, 40, 64, 255))
    draw.rounded_rectangle(
        (cx - half + 14, top + 30, cx - half + 34, bottom - 40), radius=10, fill=(120, 150, 210, 200)
    )
    draw.ellipse((cx - 18, top + 60, cx + 18, top + 96), fill=(255, 190, 60, 255))  # the light ring
    for index in range(5):  # speaker grille
        yy = bottom - 120 + index * 18
        draw.line((cx - half + 50, yy, cx + half - 22, yy), fill=(80, 96, 130, 255), width=6)
    return Image.alpha_composite(image, layer.filter(ImageFilter.GaussianBlur(1.2))).convert("RGB")


def skyline(width: int = 1280, height: int = 720) -> Image.Image:
    """A news picture: a city skyline at dusk with lit windows and a sun low over the river."""
    _x, y = _grid(width, height)
    image = _image(_mix((40, 50, 110), (250, 150, 90), y * 1.4 - 0.1)).convert("RGBA")
    image = Image.alpha_composite(image, _glow((width, height), [(0.7, 0.58, 0.06, (255, 220, 140), 230)]))
    draw = ImageDraw.Draw(image)
    horizon = int(height * 0.68)
    state = np.random.default_rng(7)
    left = 0
    while left < width:
        building = int(state.integers(40, 110))
        top = horizon - int(state.integers(60, 330))
        draw.rectangle((left, top, left + building, horizon), fill=(22, 26, 44, 255))
        for wy in range(top + 12, horizon - 10, 22):
            for wx in range(left + 8, left + building - 10, 16):
                if state.random() < 0.35:
                    draw.rectangle((wx, wy, wx + 6, wy + 9), fill=(255, 210, 120, 255))
        left += building + int(state.integers(2, 14))
    water = _image(_mix((60, 50, 90), (20, 24, 50), (y - 0.68) / 0.32)).convert("RGBA")
    mask = Image.fromarray(((y >= 0.68) * 255).astype(np.uint8), "L")
    image.paste(water, (0, 0), mask)
    draw = ImageDraw.Draw(image)
    for index in range(12):  # the sun's reflection
        yy = horizon + 8 + index * 16
        half = 70 - index * 5
        draw.line(
            (int(width * 0.7) - half, yy, int(width * 0.7) + half, yy), fill=(250, 190, 120, 160), width=4
        )
    return image.convert("RGB")


def newsroom(width: int = 1280, height: int = 720) -> Image.Image:
    """A news studio backdrop: deep blue, a faint globe grid on the right, a red accent line."""
    x, y = _grid(width, height)
    pixels = _mix((8, 18, 48), (20, 50, 110), 1 - np.hypot(x - 0.75, y - 0.45))
    image = _image(pixels)
    draw = ImageDraw.Draw(image)
    cx, cy, r = int(width * 0.75), int(height * 0.45), int(height * 0.36)
    for k in range(-3, 4):
        rx = int(r * np.cos(k * np.pi / 8))
        draw.ellipse((cx - abs(rx), cy - r, cx + abs(rx), cy + r), outline=(60, 110, 190), width=2)
        yy = cy + int(r * np.sin(k * np.pi / 8))
        half = int(r * np.cos(k * np.pi / 8))
        draw.line((cx - half, yy, cx + half, yy), fill=(60, 110, 190), width=2)
    draw.rectangle((0, int(height * 0.93), width, int(height * 0.94)), fill=(200, 30, 40))
    return image.filter(ImageFilter.GaussianBlur(0.8))


IMAGES: dict[str, Callable[[], Image.Image]] = {
    "studio.jpg": studio,
    "social-gradient.jpg": social,
    "slide.jpg": slide,
    "product.jpg": product,
    "news-picture.jpg": skyline,
    "newsroom.jpg": newsroom,
}


def music_samples(seconds: float = MUSIC_SECONDS, rate: int = MUSIC_RATE) -> np.ndarray:
    """A loop of four bars at 120 BPM (C – Am – F – G): a soft pad, a plucked arpeggio, a light kick;
    stereo float32 in -1..1, seamless (each bar's notes decay before the loop point)."""
    t = np.arange(int(seconds * rate)) / rate
    beat = 0.5
    chords = [
        (261.63, 329.63, 392.0),
        (220.0, 261.63, 329.63),
        (174.61, 220.0, 261.63),
        (196.0, 246.94, 293.66),
    ]
    left = np.zeros_like(t)
    right = np.zeros_like(t)
    for bar, chord in enumerate(chords):
        start, end = bar * 4 * beat, (bar + 1) * 4 * beat
        span = (t >= start) & (t < end)
        local = t[span] - start
        envelope = np.minimum(1, local / 0.3) * np.minimum(1, (end - start - local) / 0.3)
        for index, frequency in enumerate(chord):
            pad = 0.06 * envelope * np.sin(2 * np.pi * frequency / 2 * local + index)
            left[span] += pad * (1.0 if index != 2 else 0.6)
            right[span] += pad * (1.0 if index != 0 else 0.6)
        for step in range(8):  # eighth-note arpeggio, up the chord and an octave
            note_start = start + step * beat / 2
            frequency = chord[step % 3] * (2 if step >= 4 else 1)
            notes = (t >= note_start) & (t < note_start + beat / 2)
            local = t[notes] - note_start
            pluck = 0.09 * np.exp(-local * 9) * np.sin(2 * np.pi * frequency * local)
            pan = 0.3 + 0.4 * (step % 2)
            left[notes] += pluck * (1 - pan)
            right[notes] += pluck * pan
    for beat_index in range(int(seconds / beat)):
        kick_start = beat_index * beat
        hits = (t >= kick_start) & (t < kick_start + 0.25)
        local = t[hits] - kick_start
        kick = 0.25 * np.exp(-local * 18) * np.sin(2 * np.pi * (50 + 60 * np.exp(-local * 30)) * local)
        left[hits] += kick
        right[hits] += kick
    stereo = np.stack([left, right], axis=1)
    return (0.9 * stereo / np.abs(stereo).max()).astype(np.float32)


def write_music(path: Path) -> Path:
    from imageio_ffmpeg import get_ffmpeg_exe

    with tempfile.TemporaryDirectory() as scratch:
        wav = Path(scratch) / "loop.wav"
        sf.write(wav, music_samples(), MUSIC_RATE, subtype="PCM_16")
        subprocess.run(
            [get_ffmpeg_exe(), "-y", "-v", "error", "-i", str(wav), "-c:a", "aac", "-b:a", "96k",
             "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact", str(path)],
            check=True,
        )  # fmt: skip
    return path


def make_assets(outdir: Path = MEDIA) -> dict[str, Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, draw in IMAGES.items():
        path = outdir / name
        draw().save(path, quality=JPEG_QUALITY, optimize=True, progressive=False)
        written[name] = path
    written["music-loop.m4a"] = write_music(outdir / "music-loop.m4a")
    return written


def main() -> None:
    outdir = Path(sys.argv[1]) if len(sys.argv) > 1 else MEDIA
    total = 0
    for name, path in make_assets(outdir).items():
        size = path.stat().st_size
        total += size
        print(f"{name:24} {size / 1e3:7.1f} kB")
    print(f"{'total':24} {total / 1e3:7.1f} kB → {outdir}")


if __name__ == "__main__":
    main()
