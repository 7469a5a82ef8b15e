"""Video: stream frames into an MP4 (h264 yuv420p + AAC, faststart), probe it, make a poster.

Frames are piped to the ffmpeg binary that imageio-ffmpeg ships, so memory stays flat however
long the clip is, and no system ffmpeg is needed. The file appears under its final name only
when encoding succeeded: a failed or interrupted render never leaves a playable-looking output.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import ffmpeg
import numpy as np
from PIL import Image

from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.ffmpeg import ffmpeg_exe


class Mp4Writer:
    """Context manager: ``with Mp4Writer(path, w, h, 25, audio) as out: out.write(frame)``."""

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: int = 25,
        audio: Path | None = None,
        *,
        crf: int = 20,
        preset: str = "veryfast",
    ) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"yuv420p needs even dimensions, got {width}×{height}")
        self.path, self.width, self.height, self.fps = Path(path), width, height, fps
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        video = ffmpeg.input(
            "pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=fps
        )
        inputs = [video] if audio is None else [video, ffmpeg.input(str(audio)).audio]
        audio_args = {} if audio is None else {"acodec": "aac", "audio_bitrate": "128k"}
        self._args = (
            ffmpeg.output(
                *inputs,
                str(self.partial),
                vcodec="libx264",
                pix_fmt="yuv420p",
                preset=preset,
                crf=crf,
                movflags="+faststart",
                f="mp4",
                **audio_args,
            )
            .global_args("-hide_banner", "-loglevel", "error")
            .overwrite_output()
            .compile(cmd=ffmpeg_exe())
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__
        self.frames = 0

    def __enter__(self) -> Mp4Writer:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(self._args, stdin=subprocess.PIPE, stderr=self._stderr)
        return self

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"frame must be {self.height}×{self.width}×3 uint8, got {frame.shape} {frame.dtype}"
            )
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except BrokenPipeError as exc:
            raise self._failure("ffmpeg stopped reading frames") from exc
        self.frames += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._proc is not None
        try:
            if exc_type is not None:
                self._proc.kill()
                self._proc.wait()
                return
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()  # type: ignore[union-attr]
            if self._proc.wait() != 0:
                raise self._failure(f"ffmpeg exited with status {self._proc.returncode}")
            self.partial.replace(self.path)
        finally:
            self._stderr.close()
            self.partial.unlink(missing_ok=True)

    def _failure(self, what: str) -> TalkstackError:
        self._stderr.seek(0)
        tail = self._stderr.read()[-600:].decode(errors="replace").strip()
        return TalkstackError(ErrorCode.GENERATION_FAILED, f"video encoding failed: {what}", ffmpeg=tail)


@dataclass(frozen=True)
class StreamInfo:
    codec: str
    start_s: float
    duration_s: float


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int
    duration_s: float
    video: StreamInfo
    audio: StreamInfo | None
    video_streams: int
    audio_streams: int
    pix_fmt: str


def probe_video(path: Path) -> VideoInfo:
    """Stream-level facts about an MP4, read with libav (no ffprobe binary needed)."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise TalkstackError(ErrorCode.CORRUPT_MEDIA, f"{Path(path).name} is not a readable video") from exc
    with container:
        if not container.streams.video:
            raise TalkstackError(ErrorCode.UNSUPPORTED_MEDIA, f"{Path(path).name} has no video stream")
        vs = container.streams.video[0]
        aus = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            width=vs.codec_context.width,
            height=vs.codec_context.height,
            fps=float(vs.average_rate or 0),
            frames=vs.frames,
            duration_s=float(container.duration or 0) / av.time_base,
            video=_stream_info(vs),
            audio=_stream_info(aus) if aus else None,
            video_streams=len(container.streams.video),
            audio_streams=len(container.streams.audio),
            pix_fmt=vs.codec_context.pix_fmt or "",
        )


def _stream_info(stream: av.stream.Stream) -> StreamInfo:
    tb = stream.time_base or Fraction(1, 1)
    start = float((stream.start_time or 0) * tb)
    duration = float((stream.duration or 0) * tb)
    return StreamInfo(stream.codec_context.name, start, duration)


def iter_frames(path: Path) -> Iterator[np.ndarray]:
    """Decoded RGB frames of a video, one at a time."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def write_poster(frame: np.ndarray, path: Path, max_side: int = 640, quality: int = 85) -> Path:
    """A JPEG poster/thumbnail from an RGB frame, long side at most `max_side`."""
    img = Image.fromarray(frame)
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=quality, optimize=True, progressive=True)
    return path
