"""Video with transparency, and person masks.

Two kinds of file leave a composition with an alpha channel, for editors to composite:

* WebM, VP9 with alpha (`yuva420p`, libvpx-vp9). The alpha plane travels as a second VP9 stream in
  each block's BlockAdditional data, which only the libvpx-vp9 decoder reads: ffmpeg's own `vp9`
  decoder (the default) drops it silently and returns opaque frames, so `read_alpha_frames` names
  libvpx-vp9 explicitly.
* QuickTime MOV, ProRes 4444 (`prores_ks` profile 4444, `yuva444p10le`): what Final Cut Pro,
  Premiere Pro, DaVinci Resolve and After Effects take as "video with alpha".

A person mask (the matte step's output) is a grey H.264 MP4 the size, frame rate and frame count of
the video it was cut from; white is the person. Grey in an ordinary MP4 rather than a special
format, so any player can show it and any decoder can read it back.

Frames are piped through the ffmpeg binary (talkstack.media.ffmpeg), so memory stays flat however
long the clip is; a file appears under its final name only once encoding succeeded.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import numpy as np

from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.ffmpeg import ffmpeg_exe

MASK_CRF = 12
"""x264 quality of mask videos: masks are smooth and compress well, and a soft edge should come
back as it went in (a few grey levels of error at most)."""


def encode_alpha_webm(
    frames: Iterable[np.ndarray], fps: float, path: Path, audio: Path | None = None
) -> Path:
    """RGBA uint8 frames (H×W×4) → WebM, VP9 with alpha (yuva420p); audio, if given, as Opus."""
    video_args = ["-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p", "-b:v", "0", "-crf", "30"]
    video_args += ["-row-mt", "1", "-deadline", "good", "-cpu-used", "4", "-auto-alt-ref", "0"]
    # auto-alt-ref must be off: libvpx refuses alt-ref frames together with an alpha plane.
    audio_args = ["-c:a", "libopus", "-b:a", "128k"]
    return _encode_rgba(frames, fps, Path(path), audio, video_args, audio_args, "webm")


def encode_prores4444(
    frames: Iterable[np.ndarray], fps: float, path: Path, audio: Path | None = None
) -> Path:
    """RGBA uint8 frames (H×W×4) → QuickTime MOV, ProRes 4444 with alpha; audio as 16-bit PCM."""
    video_args = ["-c:v", "prores_ks", "-profile:v", "4444", "-pix_fmt", "yuva444p10le"]
    video_args += ["-alpha_bits", "16", "-vendor", "apl0"]
    audio_args = ["-c:a", "pcm_s16le"]
    return _encode_rgba(frames, fps, Path(path), audio, video_args, audio_args, "mov")


def read_alpha_frames(path: Path) -> Iterator[np.ndarray]:
    """Decoded RGBA uint8 frames (H×W×4) of a WebM (VP9 alpha) or MOV (ProRes 4444), alpha kept."""
    path = Path(path)
    width, height, codec = _video_stream(path)
    decoder = ["-c:v", "libvpx-vp9"] if codec == "vp9" else []
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *decoder, "-i", str(path)]
    args += ["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgba", "pipe:"]
    yield from _read_raw(args, (height, width, 4), path.name)


def write_mask_video(masks: Iterable[np.ndarray], fps: float, path: Path) -> Path:
    """Person masks (H×W float in 0..1, or uint8) → a grey H.264 MP4, white = person."""
    path = Path(path)
    stream = iter(masks)
    first = next(stream, None)
    if first is None:
        raise ValueError("write_mask_video: no masks")
    height, width = first.shape[:2]
    # yuv420p needs even sides; an odd-sized upload keeps its size with full-resolution chroma.
    pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    args = _raw_input("gray", width, height, fps)
    args += ["-c:v", "libx264", "-pix_fmt", pix_fmt, "-crf", str(MASK_CRF), "-preset", "veryfast"]
    args += ["-movflags", "+faststart", "-f", "mp4"]

    def grey() -> Iterator[np.ndarray]:
        for mask in _chain(first, stream):
            if mask.shape[:2] != (height, width):
                raise ValueError(f"mask must be {height}×{width}, got {mask.shape[:2]}")
            if mask.dtype == np.uint8:
                yield mask
            else:
                yield (np.clip(mask, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    return _encode(grey(), path, args)


def read_mask_frames(path: Path, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """A mask video's frames as float32 H×W in 0..1 (1 = person), resized to `size` = (w, h) if given."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise TalkstackError(
            ErrorCode.CORRUPT_MEDIA, f"{Path(path).name} is not a readable mask video"
        ) from exc
    with container:
        for frame in container.decode(video=0):
            if size is not None and (frame.width, frame.height) != tuple(size):
                frame = frame.reformat(width=size[0], height=size[1], format="gray", interpolation="BILINEAR")
            yield frame.to_ndarray(format="gray").astype(np.float32) / 255.0


# ---------------------------------------------------------------------------------------------


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _raw_input(pix_fmt: str, width: int, height: int, fps: float) -> list[str]:
    return [
        *("-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{width}x{height}"),
        *("-framerate", f"{fps:g}", "-i", "pipe:"),
    ]


def _encode_rgba(
    frames: Iterable[np.ndarray],
    fps: float,
    path: Path,
    audio: Path | None,
    video_args: list[str],
    audio_args: list[str],
    container: str,
) -> Path:
    stream = iter(frames)
    first = next(stream, None)
    if first is None:
        raise ValueError(f"{path.name}: no frames")
    height, width = first.shape[:2]

    def rgba() -> Iterator[np.ndarray]:
        for frame in _chain(first, stream):
            if frame.shape != (height, width, 4) or frame.dtype != np.uint8:
                raise ValueError(f"frame must be {height}×{width}×4 uint8, got {frame.shape} {frame.dtype}")
            yield frame

    args = _raw_input("rgba", width, height, fps)
    if audio is not None:
        args += ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", *audio_args, "-shortest"]
    args += [*video_args, "-f", container]
    return _encode(rgba(), path, args)


def _encode(frames: Iterator[np.ndarray], path: Path, args: list[str]) -> Path:
    """Pipe frames into ffmpeg with `args` (input and output options); the file appears as `path`
    only when ffmpeg succeeded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args, str(partial)]
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=stderr)
        assert proc.stdin is not None
        try:
            for frame in frames:
                proc.stdin.write(np.ascontiguousarray(frame).data)
            proc.stdin.close()
            status = proc.wait()
        except BrokenPipeError:
            status = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            partial.unlink(missing_ok=True)
            raise
        if status != 0:
            partial.unlink(missing_ok=True)
            stderr.seek(0)
            tail = stderr.read()[-600:].decode(errors="replace").strip()
            raise TalkstackError(
                ErrorCode.GENERATION_FAILED,
                f"encoding {path.name} failed (ffmpeg status {status})",
                ffmpeg=tail,
            )
    partial.replace(path)
    return path


def _video_stream(path: Path) -> tuple[int, int, str]:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise TalkstackError(ErrorCode.UNSUPPORTED_MEDIA, f"{path.name} has no video stream")
            ctx = container.streams.video[0].codec_context
            return ctx.width, ctx.height, ctx.name
    except (av.error.FFmpegError, OSError) as exc:
        raise TalkstackError(ErrorCode.CORRUPT_MEDIA, f"{path.name} is not a readable video") from exc


def _read_raw(args: list[str], shape: tuple[int, int, int], name: str) -> Iterator[np.ndarray]:
    size = int(np.prod(shape))
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr)
        assert proc.stdout is not None
        stopped_early = True  # the caller stopped reading (or raised): ffmpeg is killed, not judged
        try:
            while True:
                data = proc.stdout.read(size)
                if len(data) < size:
                    break
                yield np.frombuffer(data, np.uint8).reshape(shape)
            stopped_early = False
        finally:
            with contextlib.suppress(OSError):
                proc.stdout.close()
            if proc.poll() is None and stopped_early:
                proc.kill()
            status = proc.wait()
        if status != 0 and not stopped_early:
            stderr.seek(0)
            tail = stderr.read()[-600:].decode(errors="replace").strip()
            raise TalkstackError(ErrorCode.CORRUPT_MEDIA, f"decoding {name} failed", ffmpeg=tail)
