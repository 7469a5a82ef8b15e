"""Reading the media a composition is made of: video frames by time (forward, optionally looped),
still images, and the sound of a video, all decoded with PyAV (libav in the wheel)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.video import probe_video

SAMPLE_RATE = 48_000
"""The soundtrack's rate: what AAC in an MP4 is usually made at."""


class VideoCursor:
    """Frames of a video by time, read forward once (the compositor asks for increasing times).

    `at(t)` is the frame shown at `t` seconds after `start_s` in the file. Past the end it holds the
    last frame, or, with `loop`, starts again from `start_s` (a background video)."""

    def __init__(self, path: Path, *, start_s: float = 0.0, loop: bool = False) -> None:
        info = probe_video(path)
        self.path, self.loop, self.start_s = path, loop, start_s
        self.fps = info.fps or 25.0
        self.width, self.height = info.width, info.height
        self.frames = info.frames or max(1, round(info.duration_s * self.fps))
        self.first = round(start_s * self.fps)
        self._open()

    def _open(self) -> None:
        self._iter: Iterator[av.VideoFrame] = _decode(self.path)
        self._index: int = -1
        self._decoded: av.VideoFrame | None = None
        self._frame: np.ndarray | None = None

    @property
    def playable_frames(self) -> int:
        return max(1, self.frames - self.first)

    def at(self, t: float) -> np.ndarray:
        index = self.first + int(max(0.0, t) * self.fps + 1e-6)
        if self.loop:
            index = self.first + (index - self.first) % self.playable_frames
            if index < self._index:  # wrapped around: decode from the start again
                self._open()
        while self._index < index:
            try:
                self._decoded = next(self._iter)
            except StopIteration:
                break
            self._index += 1
            self._frame = None  # converted to RGB only if shown (frames skipped cost no conversion)
        if self._frame is None:
            if self._decoded is None:
                raise TalkstackError(ErrorCode.CORRUPT_MEDIA, f"{self.path.name} has no decodable frames")
            self._frame = self._decoded.to_ndarray(format="rgb24")
        return self._frame

    def close(self) -> None:
        close = getattr(self._iter, "close", None)
        if close is not None:
            close()


def _decode(path: Path) -> Iterator[av.VideoFrame]:
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            yield from container.decode(stream)
    except av.error.FFmpegError as exc:
        raise TalkstackError(ErrorCode.CORRUPT_MEDIA, f"{path.name} cannot be decoded ({exc})") from exc


def read_still(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (EXIF orientation applied; transparency over black)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise TalkstackError(
            ErrorCode.UNSUPPORTED_MEDIA, f"{path.name} is not a readable image (PNG, JPEG, WebP)"
        ) from exc


def is_video_file(path: Path) -> bool:
    """Whether a file holds a video stream (uploads are told apart by content, not name)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0] if container.streams.video else None
            # An image opened by libav is a one-frame "video" of an image codec.
            return stream is not None and stream.codec_context.name not in _IMAGE_CODECS
    except (av.error.FFmpegError, OSError):
        return False


_IMAGE_CODECS = {"png", "mjpeg", "webp", "bmp", "gif", "tiff"}


def read_sound(path: Path, *, start_s: float = 0.0, duration_s: float | None = None) -> np.ndarray | None:
    """The sound of a media file as mono float32 at SAMPLE_RATE from `start_s`, at most
    `duration_s` long; None when the file has no audio stream. Silence is fine here (a scene may
    be quiet), unlike a speech upload."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise TalkstackError(ErrorCode.CORRUPT_MEDIA, f"{path.name} cannot be opened ({exc})") from exc
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        # AAC's last frame is padded: the stream's duration (the MP4 edit list) says where the sound
        # ends, as ffmpeg's own decoding would cut it; decoded as is, a looped music bed would have
        # a gap of padding at every seam.
        length = (
            round(float(stream.duration * stream.time_base) * SAMPLE_RATE)
            if stream.duration and stream.time_base
            else None
        )
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        except av.error.FFmpegError as exc:
            raise TalkstackError(
                ErrorCode.CORRUPT_MEDIA, f"{path.name}: its sound cannot be decoded ({exc})"
            ) from exc
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    samples = samples[:length]
    first = round(start_s * SAMPLE_RATE)
    last = None if duration_s is None else first + round(duration_s * SAMPLE_RATE)
    return np.clip(samples[first:last], -1.0, 1.0)
