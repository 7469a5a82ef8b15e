"""Tiny real media for the compositor tests (ffmpeg lavfi sources, numpy images) and a helper
that builds compose options the way the pipeline hands them to the compose step."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from talkstack.contract.composition import ComposeOptions
from talkstack.media.ffmpeg import ffmpeg_exe
from talkstack.media.video import iter_frames

WIDTH, HEIGHT, FPS = 320, 180, 25


def colour_video(
    path: Path,
    seconds: float,
    colour: str = "red",
    *,
    tone_hz: float | None = 440.0,
    tone_s: float | None = None,
    size: str = "160x120",
) -> Path:
    """A solid-colour H.264 video, with a sine tone (AAC) unless tone_hz is None; the tone lasts
    `tone_s` (default the whole video) and silence follows."""
    command = [
        ffmpeg_exe(),
        "-y",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        f"color=c={colour}:s={size}:r={FPS}:d={seconds}",
    ]
    if tone_hz is not None:
        tone = f"sine=frequency={tone_hz}:sample_rate=48000:duration={tone_s or seconds}"
        command += ["-f", "lavfi", "-i", tone, "-af", f"apad=whole_dur={seconds}"]
        command += ["-c:a", "aac", "-b:a", "128k"]
    command += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-t", str(seconds), str(path)]
    subprocess.run(command, check=True)
    return path


def solid_image(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (200, 150)) -> Path:
    Image.new("RGB", size, rgb).save(path)
    return path


def options(scenes: list[dict[str, Any]], **extra: Any) -> ComposeOptions:
    """ComposeOptions for a 320×180, 25 fps composition with captions off (the caption files come
    from the captions side)."""
    composition = {"aspect": "16:9", "fps": FPS, "captions": {"sidecar": False}, **extra.pop("options", {})}
    return ComposeOptions.model_validate(
        {"width": WIDTH, "height": HEIGHT, "options": composition, "scenes": scenes, **extra}
    )


def scene(source: dict[str, Any], *, rendered: bool = False, **fields: Any) -> dict[str, Any]:
    return {"rendered": rendered, "scene": {"source": source, **fields}}


def title(text: str = "Hello", **fields: Any) -> dict[str, Any]:
    return scene({"type": "title", "title": text}, **fields)


def media(name: str = "upload.png", **fields: Any) -> dict[str, Any]:
    return scene({"type": "media", "media": name}, **fields)


def frame_at(video: Path, index: int) -> np.ndarray:
    for i, frame in enumerate(iter_frames(video)):
        if i == index:
            return frame
    raise IndexError(index)


def ignore_progress(fraction: float, message: str) -> None:
    pass


def sine_wav(path: Path, hz: float, seconds: float, amplitude: float = 0.5, rate: int = 48_000) -> Path:
    from talkstack.media.audio import write_wav

    t = np.arange(int(seconds * rate)) / rate
    return write_wav(path, (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate)


def avatar(**fields: Any) -> dict[str, Any]:
    """An avatar scene whose engine render arrives as input scene_<i>_video."""
    source = {"type": "avatar", "inputs": {"image": "photo.png", "audio": "speech.wav"}}
    return scene(source, rendered=True, **fields)
