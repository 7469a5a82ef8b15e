"""One scene's frames: its background, its source placed by its layout (the person cut out where
a mask came with it), its title card or preview card, and its text overlays."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from talkstack.compose.backgrounds import Backdrop
from talkstack.compose.layout import Placement, blend_into, fit, place
from talkstack.compose.sources import VideoCursor, is_video_file, read_still
from talkstack.compose.text import OverlayPainter, Sprite, clip_card, title_card
from talkstack.compose.timeline import SceneSpan
from talkstack.contract.composition import (
    ComposeScene,
    MediaSource,
    TitleSource,
    VideoSource,
    scene_role,
)


class _MaskCursor:
    """The matte step's mask frames (float 0..1 at the source's size), read in step with the
    source video's frame index (a still image's mask has one frame, index 0)."""

    def __init__(self, path: Path, width: int, height: int) -> None:
        from talkstack.media.alpha import read_mask_frames  # the matting side's reader

        self._frames: Iterator[np.ndarray] = iter(read_mask_frames(path, size=(width, height)))
        self._index, self._mask = -1, None

    def at(self, index: int) -> np.ndarray:
        while self._index < index:
            try:
                self._mask = next(self._frames)
            except StopIteration:
                break
            self._index += 1
        if self._mask is None:
            raise ValueError("mask video has no frames")
        return self._mask


class SceneRenderer:
    """`frame(t)` → (RGB canvas, alpha plane or None) at `t` seconds into the scene. The alpha
    plane (transparent output) is opaque where the person and the overlays are."""

    def __init__(
        self,
        scene: ComposeScene,
        span: SceneSpan,
        inputs: dict[str, Path],
        width: int,
        height: int,
        *,
        with_alpha: bool = False,
        text_above: int | None = None,
    ) -> None:
        """`text_above`: a row the scene's text overlays stay above (its burnt-in captions' top)."""
        index, request = span.index, scene.scene
        self.width, self.height, self.with_alpha = width, height, with_alpha
        self.warnings: list[str] = []
        self.backdrop = Backdrop(
            request.background, width, height, inputs.get(scene_role(index, "background"))
        )
        self.overlays = OverlayPainter(request.overlays, width, height, span.duration_s, above=text_above)
        self.video: VideoCursor | None = None
        self.still: np.ndarray | None = None
        self.card: Sprite | None = None
        self.mask: _MaskCursor | None = None
        self.placement: Placement | None = None
        self._still_patch: np.ndarray | None = None
        self._still_alpha: np.ndarray | None = None
        source = request.source
        if scene.rendered:
            self.video = VideoCursor(inputs[scene_role(index, "video")])
        elif isinstance(source, MediaSource):
            media = inputs[scene_role(index, "media")]
            if is_video_file(media):
                self.video = VideoCursor(media, start_s=source.start_s)
            else:
                self.still = read_still(media)
        elif isinstance(source, TitleSource):
            self.card = title_card(source.title, source.subtitle, width, height)
        elif isinstance(source, VideoSource):
            self.card = clip_card(source.inputs.prompt, width, height)
        if self.video is not None or self.still is not None:
            sw, sh = (
                (self.video.width, self.video.height)
                if self.video is not None
                else (self.still.shape[1], self.still.shape[0])  # type: ignore[union-attr]
            )
            cut = request.cutout and scene.mask
            if request.cutout and not cut:
                self.warnings.append(f"scene {index}: no person mask arrived; the source is shown uncut")
            self.placement = place(request.layout, width, height, sw, sh, cutout=cut)
            if cut:
                self.mask = _MaskCursor(inputs[scene_role(index, "mask")], sw, sh)
            if self.still is not None:  # drawn once: the still and its one-frame mask hold the scene
                self._still_patch, self._still_alpha = self._place_still()

    def _place_still(self) -> tuple[np.ndarray, np.ndarray | None]:
        assert self.placement is not None and self.still is not None
        box, crop, alpha = self.placement.box, self.placement.crop, self.placement.shape
        patch = np.ascontiguousarray(fit(self.still, crop, box.w, box.h))
        if self.mask is not None:
            person = fit(self.mask.at(0), crop, box.w, box.h)
            alpha = person if alpha is None else alpha * person
        return patch, alpha

    def frame(self, t: float) -> tuple[np.ndarray, np.ndarray | None]:
        canvas = self.backdrop.frame(t).copy()
        alpha_plane = np.zeros((self.height, self.width), np.float32) if self.with_alpha else None
        if self.placement is not None:
            box, crop, shape = self.placement.box, self.placement.crop, self.placement.shape
            alpha = shape
            if self.video is not None:
                frame = self.video.at(t)
                patch = fit(frame, crop, box.w, box.h)
                if self.mask is not None:
                    index = self.video.first + int(max(0.0, t) * self.video.fps + 1e-6)
                    person = fit(self.mask.at(min(index, self.video.frames - 1)), crop, box.w, box.h)
                    alpha = person if alpha is None else alpha * person
            else:
                patch, alpha = self._still_patch, self._still_alpha
                assert patch is not None
            blend_into(canvas, patch, alpha, box.x, box.y)
            if alpha_plane is not None:
                region = alpha if alpha is not None else np.ones((box.h, box.w), np.float32)
                alpha_plane[box.y : box.bottom, box.x : box.right] = region
        if self.card is not None:
            self.card.draw(canvas)
        self.overlays.draw(canvas, t)
        if alpha_plane is not None:
            self.overlays.draw_alpha(alpha_plane, t)
        return canvas, alpha_plane

    def close(self) -> None:
        self.backdrop.close()
        if self.video is not None:
            self.video.close()
