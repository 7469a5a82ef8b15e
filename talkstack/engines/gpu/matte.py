"""vitmatte: a person matte on a GPU (ViTMatte through transformers), for avatar renders and uploads.

ViTMatte (hustvl, Apache-2.0 weights) is a matting model: given a frame and a trimap (sure person,
sure background, unknown band) it predicts a fine alpha in the unknown band, hair and soft edges
included. The trimap comes from lite-matte's person mask (MediaPipe selfie segmentation, guided
filter, the face oval, temporal smoothing: talkstack/engines/lite/matte.py): its sure regions are
that mask eroded and dilated, and the band between them, a few percent of the frame wide, is where
ViTMatte decides. Outside the band the trimap's answer stands, so a matting mistake can never punch
a hole in the face or paint the far background.

Frames are matted in batches on the GPU (fp16 on CUDA); the alpha is smoothed over time inside the
band only (the sure regions do not flicker), and written as lite-matte's mask video (a grey MP4 of
the input's size, frame rate and frame count).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from talkstack.contract.worker import WorkerTask
from talkstack.engines.base import ProgressFn, RenderResult
from talkstack.engines.gpu.base import Engine
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.alpha import write_mask_video
from talkstack.media.files import sniff_mime
from talkstack.media.image import read_image
from talkstack.media.video import iter_frames, probe_video

SIZE_DIVISOR = 32
"""ViTMatte's input sides must be multiples of this (its image processor pads to it)."""
BATCH = 8
"""Frames per forward pass: 8 frames of 720p in fp16 take a few GB on the smallest Modal GPU."""
BAND = 0.025
"""Half-width of the trimap's unknown band, as a fraction of the frame's short side."""
SMOOTHING = 0.6
"""Weight of the newest alpha inside the band in the running average (1 = none)."""
MAX_SIDE = 1280
"""Frames with a longer side are matted at this size and the alpha scaled back up."""
STILL_FPS = 25


class MatteEngine(Engine):
    """ViTMatte, loaded once per container: render(task, inputs, outdir, progress) → {"mask": …}."""

    model_ids: ClassVar[tuple[str, ...]] = ("vitmatte",)

    def __init__(
        self,
        model: str = "vitmatte",
        *,
        weights_dir: Path | None = None,
        device: str | None = None,
        matting_model: Any = None,
        coarse: Callable[[], AbstractContextManager[Callable[[np.ndarray], np.ndarray]]] | None = None,
    ) -> None:
        """`matting_model`: a ready VitMatteForImageMatting (tests build a tiny one from a config);
        `coarse`: what makes the trimap's person masks (default lite-matte's per-frame matter)."""
        super().__init__(model, weights_dir=weights_dir, device=device)
        self.net = matting_model
        self._coarse = coarse
        self.batches = 0

    def _load(self) -> None:
        import torch

        self.device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.float16 if str(self.device).startswith("cuda") else torch.float32
        if self.net is None:
            from transformers import VitMatteForImageMatting

            from talkstack.engines.gpu.weights import paths_for

            folder = paths_for(self.model, self.weights_dir)["model"]
            if not (folder / "config.json").is_file():
                raise TalkstackError(
                    ErrorCode.MODEL_UNAVAILABLE,
                    f"{self.model}: no weights at {folder} (run the weights app for {self.model} first)",
                )
            self.net = VitMatteForImageMatting.from_pretrained(str(folder), dtype=self.dtype)
        self.net = self.net.to(device=self.device, dtype=self.dtype).eval()
        if self._coarse is None:
            from talkstack.engines.lite.matte import frame_matter

            self._coarse = frame_matter

    # -- the step ---------------------------------------------------------------------------------
    def render(
        self, task: WorkerTask, inputs: dict[str, Path], outdir: Path, progress: ProgressFn
    ) -> tuple[dict[str, Path], RenderResult]:
        if "video" not in inputs:
            raise TalkstackError(ErrorCode.INVALID_REQUEST, "the matte step needs input `video`")
        t0 = time.perf_counter()
        source = Path(inputs["video"])
        output = Path(outdir) / "mask.mp4"
        if (sniff_mime(source) or "").startswith("image/"):
            rgb, _ = read_image(source)
            frames: Iterator[np.ndarray] = iter([rgb])
            fps, total, (height, width) = float(STILL_FPS), 1, rgb.shape[:2]
        else:
            info = probe_video(source)
            frames, fps, total = iter_frames(source), info.fps or float(STILL_FPS), max(info.frames, 1)
            width, height = info.width, info.height
        count = 0

        def masks() -> Iterator[np.ndarray]:
            nonlocal count
            for mask in self.matte_frames(frames):
                count += 1
                if count % 25 == 0:
                    progress(min(count / total, 1.0), f"matte {count}/{total}")
                yield mask

        write_mask_video(masks(), fps, output)
        progress(1.0, f"matte {count}/{count}")
        result = RenderResult(
            output=output,
            bytes=output.stat().st_size,
            duration_s=count / fps,
            width=width,
            height=height,
            fps=round(fps),
            frames=count,
            timings={"total_s": time.perf_counter() - t0},
        )
        return {"mask": output}, result

    # -- matting ----------------------------------------------------------------------------------
    def matte_frames(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """float32 alphas (H×W, 0..1), one per RGB frame, in order."""
        assert self._coarse is not None, "load() first"
        previous: np.ndarray | None = None
        with self._coarse() as coarse:
            batch: list[tuple[np.ndarray, np.ndarray]] = []
            for frame in frames:
                batch.append((frame, trimap(coarse(frame))))
                if len(batch) == BATCH:
                    for alpha, band in self._matte_batch(batch):
                        previous = _smooth(alpha, band, previous)
                        yield previous
                    batch = []
            if batch:
                for alpha, band in self._matte_batch(batch):
                    previous = _smooth(alpha, band, previous)
                    yield previous

    def _matte_batch(self, batch: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch

        height, width = batch[0][0].shape[:2]
        scale = min(1.0, MAX_SIDE / max(height, width))
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        ph, pw = -(-h // SIZE_DIVISOR) * SIZE_DIVISOR, -(-w // SIZE_DIVISOR) * SIZE_DIVISOR
        pixels = np.zeros((len(batch), 4, ph, pw), np.float32)
        for i, (frame, tri) in enumerate(batch):
            small = frame if scale == 1.0 else cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
            small_tri = tri if scale == 1.0 else cv2.resize(tri, (w, h), interpolation=cv2.INTER_NEAREST)
            # What VitMatteImageProcessor does: the image rescaled to 0..1 and normalised with mean
            # and std 0.5, the trimap rescaled to 0..1 as a fourth channel, zero padding bottom-right.
            pixels[i, :3, :h, :w] = (small.transpose(2, 0, 1).astype(np.float32) / 255.0 - 0.5) / 0.5
            pixels[i, 3, :h, :w] = small_tri.astype(np.float32) / 255.0
        with torch.inference_mode():
            tensor = torch.from_numpy(pixels).to(device=self.device, dtype=self.dtype)
            alphas = self.net(pixel_values=tensor).alphas[:, 0, :h, :w].float().cpu().numpy()
        self.batches += 1
        out = []
        for (_, tri), alpha in zip(batch, alphas, strict=True):
            if scale != 1.0:
                alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR)
            band = tri == 128
            # The trimap's sure regions stand; the model decides only inside the band.
            alpha = np.where(band, np.clip(alpha, 0.0, 1.0), tri / 255.0).astype(np.float32)
            out.append((alpha, band))
        return out


def trimap(mask: np.ndarray) -> np.ndarray:
    """uint8 trimap of a person mask: 255 sure person, 0 sure background, 128 the band between."""
    short = min(mask.shape[:2])
    radius = max(2, round(BAND * short))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    person = (mask >= 0.5).astype(np.uint8)
    sure = cv2.erode(person, kernel)
    maybe = cv2.dilate(person, kernel)
    out = np.full(mask.shape[:2], 128, np.uint8)
    out[sure == 1] = 255
    out[maybe == 0] = 0
    return out


def _smooth(alpha: np.ndarray, band: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    if previous is None:
        return alpha
    blended = SMOOTHING * alpha + (1 - SMOOTHING) * previous
    return np.where(band, blended, alpha).astype(np.float32)
