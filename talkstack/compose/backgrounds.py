"""What is behind a scene's source: a colour, an image (scaled to cover the canvas) or a video
(scaled to cover, looped, its sound ignored)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from talkstack.compose.colours import rgb
from talkstack.compose.layout import cover_crop, fit
from talkstack.compose.sources import VideoCursor, is_video_file, read_still
from talkstack.contract.composition import Background
from talkstack.errors import ErrorCode, TalkstackError


class Backdrop:
    """`frame(t)`: the background at `t` seconds into the scene, canvas-sized RGB uint8. Colours
    and images are made once; callers draw on a copy."""

    def __init__(self, background: Background, width: int, height: int, media: Path | None) -> None:
        self.width, self.height = width, height
        self._video: VideoCursor | None = None
        self._still: np.ndarray | None = None
        if background.type == "colour":
            self._still = np.empty((height, width, 3), np.uint8)
            self._still[:] = rgb(background.colour)
            return
        if media is None:
            raise TalkstackError(ErrorCode.GENERATION_FAILED, "a background's media input is missing")
        if background.type == "video" or is_video_file(media):
            if not is_video_file(media):
                raise TalkstackError(ErrorCode.UNSUPPORTED_MEDIA, f"{media.name} is not a video")
            self._video = VideoCursor(media, loop=True)
            self._crop = cover_crop(self._video.width, self._video.height, width, height)
        else:
            image = read_still(media)
            h, w = image.shape[:2]
            self._still = np.ascontiguousarray(fit(image, cover_crop(w, h, width, height), width, height))

    @property
    def moves(self) -> bool:
        return self._video is not None

    def frame(self, t: float) -> np.ndarray:
        if self._still is not None:
            return self._still
        assert self._video is not None
        return fit(self._video.at(t), self._crop, self.width, self.height)

    def close(self) -> None:
        if self._video is not None:
            self._video.close()
