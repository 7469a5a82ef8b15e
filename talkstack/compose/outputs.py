"""What is published beside the video: JPEG thumbnails (the video's and one per scene) and the
animated preview (a short looping WebP sampled across the whole video)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np

from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.ffmpeg import ffmpeg_exe

PREVIEW_FRAMES = 30
PREVIEW_FPS = 10
"""The animated preview: 30 frames at 10 fps, a 3 s loop sampled evenly across the video."""
PREVIEW_MAX_WIDTH = 480


def preview_frame_indices(frames: int, count: int = PREVIEW_FRAMES) -> list[int]:
    if frames <= count:
        return list(range(frames))
    return sorted({int(i) for i in np.linspace(0, frames - 1, count).round()})


def preview_size(width: int, height: int, max_width: int = PREVIEW_MAX_WIDTH) -> tuple[int, int]:
    scale = min(1.0, max_width / width)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def shrink_for_preview(frame: np.ndarray) -> np.ndarray:
    w, h = preview_size(frame.shape[1], frame.shape[0])
    if (w, h) == (frame.shape[1], frame.shape[0]):
        return frame.copy()
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)


def write_animated_webp(frames: list[np.ndarray], path: Path, fps: int = PREVIEW_FPS) -> Path:
    """An animated, looping WebP (ffmpeg's libwebp_anim encoder) from same-sized RGB frames."""
    if not frames:
        raise ValueError("no frames for the animated preview")
    h, w = frames[0].shape[:2]
    command = [
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:",
        "-c:v", "libwebp_anim", "-loop", "0", "-quality", "70", "-lossless", "0", "-f", "webp", str(path),
    ]  # fmt: skip
    data = b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    done = subprocess.run(command, input=data, capture_output=True, check=False)
    if done.returncode != 0:
        raise TalkstackError(
            ErrorCode.GENERATION_FAILED,
            "animated preview encoding failed",
            ffmpeg=done.stderr.decode(errors="replace")[-600:],
        )
    return path
