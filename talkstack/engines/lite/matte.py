"""lite-matte: a person mask on a CPU, for head-and-shoulders video (docs/backgrounds.md).

Why this method: MediaPipe's selfie segmentation model (Apache-2.0, 250 KB, shipped in the repo like
face_landmarker.task) gives a clean head-and-shoulders mask in about 10 ms a frame through the
MediaPipe Tasks ImageSegmenter we already depend on. A classical method (GrabCut seeded from the face
landmarks) was the alternative; it is slower (hundreds of ms a frame), needs a shoulder prior that
fails on anything but a centred bust, and bleeds into backgrounds of similar colour. The model's mask
is coarse (256×256) and its edge soft in the wrong places, so each mask is refined here:

* a guided filter with the frame as guide snaps the edge to the image's own edges, then a smoothstep
  curve makes the background exactly 0 and the body exactly 1, leaving a soft band a few pixels
  wide (no jaggies, no halo of half-transparent background);
* the face is always inside: the face oval from the landmarks (MediaPipe Face Landmarker), a little
  enlarged and feathered, is added to the mask (the model sometimes thins out cheeks or a bald head
  against a bright wall);
* temporal smoothing: each frame's mask is blended with the previous one (an exponential moving
  average), which removes the model's frame-to-frame flicker at the cost of a frame of lag on fast
  motion.

Lite avatars (the task carries the avatar's photo as `image`): the lite engine never touches pixels
outside the head, and moves the head by a few pixels at most. So the photo is segmented once, and for
each frame only the head's shift is measured (phase correlation of the head box against the photo)
and the photo's mask is moved by it inside a feathered head region: no per-frame model, no flicker
at all, and the body's mask is exactly the photo's.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from talkstack.contract.worker import WorkerTask
from talkstack.engines.base import ProgressFn, RenderResult, no_progress
from talkstack.engines.lite.face import FACE_OVAL, Face, _stderr_silenced, detect_faces, face_tracker
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.alpha import write_mask_video
from talkstack.media.files import sniff_mime
from talkstack.media.image import read_image
from talkstack.media.video import iter_frames, probe_video

MODEL_FILE = "selfie_segmentation.tflite"
STILL_FPS = 25
"""Frame rate of the one-frame mask of a still image (a still has none of its own)."""
WORK_SIDE = 640
"""Long side at which frames are segmented, faces tracked and the guided filter solved."""
SMOOTHING = 0.5
"""Weight of the newest frame's mask in the running average (1 = no temporal smoothing)."""
EDGE_LOW, EDGE_HIGH = 0.3, 0.7
"""The refined probability maps to 0 below EDGE_LOW and 1 above EDGE_HIGH (smoothstep between)."""
FACE_GROW = 1.08
"""The face oval is enlarged by this factor about its centre before it is added to the mask."""
SAME_BACKGROUND = 6.0
"""Mean grey-level difference, away from the head, up to which a video's first frame is the photo
(the lite engine's frames differ from it there only by H.264's loss and the invisible watermark:
2.4 levels on the bundled portrait at 320 px)."""
MAX_HEAD_SHIFT = 0.15
"""A measured head shift larger than this fraction of the face width is a mismatch, not motion."""


def model_path() -> Path:
    return Path(str(resources.files("talkstack") / "assets" / "models" / MODEL_FILE))


@dataclass(frozen=True)
class MatteResult:
    frames: int
    width: int
    height: int
    fps: float
    method: str
    """`photo` (a lite avatar: the photo's mask moved with the head), `frames` or `still`."""


# ---------------------------------------------------------------------------------------------
# The worker step
# ---------------------------------------------------------------------------------------------


def render_matte(
    task: WorkerTask, inputs: dict[str, Path], outdir: Path, progress: ProgressFn = no_progress
) -> tuple[dict[str, Path], RenderResult]:
    """MatteTask → {"mask": a grey MP4 the size, frame rate and frame count of input `video`}."""
    if "video" not in inputs:
        raise TalkstackError(ErrorCode.INVALID_REQUEST, "the matte step needs input `video`")
    t0 = time.perf_counter()
    output = Path(outdir) / "mask.mp4"
    result = matte_video(inputs["video"], output, photo=inputs.get("image"), progress=progress)
    render = RenderResult(
        output=output,
        bytes=output.stat().st_size,
        duration_s=result.frames / result.fps,
        width=result.width,
        height=result.height,
        fps=round(result.fps),
        frames=result.frames,
        timings={"total_s": time.perf_counter() - t0},
    )
    return {"mask": output}, render


def matte_video(
    video: Path, output: Path, *, photo: Path | None = None, progress: ProgressFn = no_progress
) -> MatteResult:
    """Write the person mask of `video` (a video, or an image: a one-frame mask) to `output`."""
    video = Path(video)
    mime = sniff_mime(video) or ""
    if mime.startswith("image/"):
        rgb, _ = read_image(video)
        with person_segmenter() as segment:
            mask = person_mask(rgb, segment)
        faces = detect_faces(rgb)
        if faces:
            mask = with_face(mask, max(faces, key=lambda f: f.area))
        h, w = mask.shape
        write_mask_video([mask], STILL_FPS, output)
        progress(1.0, "mask of the still")
        return MatteResult(1, w, h, float(STILL_FPS), "still")

    info = probe_video(video)
    fps = info.fps or float(STILL_FPS)
    total = max(info.frames, 1)
    count, method = 0, "frames"

    def masks() -> Iterator[np.ndarray]:
        nonlocal count, method
        frames = iter_frames(video)
        first = next(frames, None)
        if first is None:
            return
        tracker = _photo_tracker(Path(photo), first) if photo is not None else None
        with contextlib.ExitStack() as stack:
            per_frame = tracker or stack.enter_context(frame_matter())
            method = "photo" if tracker is not None else "frames"
            for frame in itertools.chain([first], frames):
                yield per_frame(frame)
                count += 1
                if count % 25 == 0:
                    progress(min(count / total, 1.0), f"mask {count}/{total}")

    write_mask_video(masks(), fps, output)
    progress(1.0, f"mask {count}/{count}")
    return MatteResult(count, info.width, info.height, fps, method)


# ---------------------------------------------------------------------------------------------
# Segmentation and refinement
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def person_segmenter() -> Iterator[Callable[[np.ndarray], np.ndarray]]:
    """segment(rgb) -> float32 H×W person probability at the image's size (MediaPipe selfie model)."""
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions
    except ImportError as exc:
        raise TalkstackError(
            ErrorCode.MODEL_UNAVAILABLE,
            "lite-matte needs mediapipe: pip install --no-deps 'mediapipe==1.2.2' (see docs/lite-engines.md)",
        ) from exc
    options = vision.ImageSegmenterOptions(
        base_options=BaseOptions(model_asset_path=str(model_path())),
        running_mode=vision.RunningMode.IMAGE,
        output_confidence_masks=True,
        output_category_mask=False,
    )
    with _stderr_silenced(), vision.ImageSegmenter.create_from_options(options) as segmenter:

        def segment(rgb: np.ndarray) -> np.ndarray:
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
            # The selfie model has one output: the person's confidence, at the input's size.
            mask = segmenter.segment(image).confidence_masks[0].numpy_view()
            return np.array(mask, dtype=np.float32).reshape(rgb.shape[:2])

        yield segment


def guided_coefficients(
    guide: np.ndarray, src: np.ndarray, radius: int, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """He et al.'s guided filter (grey guide) as its two smoothed coefficient maps (a, b): the
    filtered `src` is a * guide + b, with the guide's edges."""
    size = (2 * radius + 1, 2 * radius + 1)

    def mean(a: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(a, cv2.CV_32F, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = mean(guide), mean(src)
    var_i = mean(guide * guide) - mean_i * mean_i
    cov_ip = mean(guide * src) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return mean(a), mean(b)


def person_mask(rgb: np.ndarray, segment: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The refined person mask of one frame, at its size. Large frames are segmented and their
    guided filter solved at WORK_SIDE (the model sees 256×256 anyway), and the filter's coefficients
    applied to the full-size frame (He and Sun's fast guided filter): the edge still follows the
    full-resolution image, at a fraction of the cost (1080p: about 5× faster)."""
    small = working_copy(rgb)
    return refine(rgb, segment(small), small)


def refine(rgb: np.ndarray, probability: np.ndarray, small: np.ndarray | None = None) -> np.ndarray:
    """The model's coarse probability → a clean mask the size of `rgb`: edges snapped to the image,
    a soft band a few pixels wide, exactly 0 and 1 elsewhere. `probability` may be at the size of
    `small`, a downscaled `rgb` (then the filter is solved there and applied at full size)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    probability = probability.astype(np.float32)
    if probability.shape == grey.shape:
        low = grey
    else:
        assert small is not None and small.shape[:2] == probability.shape, "probability of another frame"
        low = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    radius = max(2, round(min(low.shape) / 90))
    a, b = guided_coefficients(low, probability, radius, 1e-3)
    if low is not grey:
        size = (grey.shape[1], grey.shape[0])
        a = cv2.resize(a, size, interpolation=cv2.INTER_LINEAR)
        b = cv2.resize(b, size, interpolation=cv2.INTER_LINEAR)
    snapped = a * grey + b
    return _smoothstep((snapped - EDGE_LOW) / (EDGE_HIGH - EDGE_LOW))


def with_face(mask: np.ndarray, face: Face) -> np.ndarray:
    """The mask with the (enlarged, feathered) face oval added: the face is always the person."""
    oval = face.points[FACE_OVAL]
    centre = oval.mean(axis=0)
    grown = (oval - centre) * FACE_GROW + centre
    feather = max(1, round(face.width / 40)) * 2 + 1
    # Only the oval's box (plus the feather) is touched: cheap on large frames.
    h, w = mask.shape
    x0, y0 = np.floor(grown.min(axis=0)).astype(int) - feather
    x1, y1 = np.ceil(grown.max(axis=0)).astype(int) + feather + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return mask
    face_mask = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.fillPoly(face_mask, [np.round(grown - [x0, y0]).astype(np.int32)], 1.0)
    face_mask = cv2.GaussianBlur(face_mask, (feather, feather), 0)
    out = mask.copy()
    out[y0:y1, x0:x1] = np.maximum(out[y0:y1, x0:x1], face_mask)
    return out


def working_copy(rgb: np.ndarray) -> np.ndarray:
    """The frame itself, or a copy scaled down to WORK_SIDE on its long side."""
    h, w = rgb.shape[:2]
    scale = WORK_SIDE / max(h, w)
    if scale >= 1.0:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return (x * x * (3 - 2 * x)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Per-frame masks: any video
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def frame_matter() -> Iterator[Callable[[np.ndarray], np.ndarray]]:
    """matte(rgb) for consecutive frames: segment, refine, add the face, smooth over time."""
    with person_segmenter() as segment, face_tracker() as track:
        previous: list[np.ndarray] = []

        def matte(rgb: np.ndarray) -> np.ndarray:
            h, w = rgb.shape[:2]
            small = working_copy(rgb)
            mask = refine(rgb, segment(small), small)
            if previous:
                mask = SMOOTHING * mask + (1 - SMOOTHING) * previous[0]
            face = track(small)
            if face is not None:  # after smoothing: the face is never faded in from the last frame
                mask = with_face(mask, face.scaled(w / small.shape[1], h / small.shape[0]))
            previous[:] = [mask]
            return mask

        yield matte


# ---------------------------------------------------------------------------------------------
# Lite avatars: the photo's mask, moved with the head
# ---------------------------------------------------------------------------------------------


def _photo_tracker(photo_path: Path, first: np.ndarray) -> Callable[[np.ndarray], np.ndarray] | None:
    """matte(frame) for a lite avatar render of this photo, or None when the video is not one (its
    aspect ratio differs from the photo's, the photo has no face, or the first frame differs from
    the photo away from the head): then frames are matted alone."""
    height, width = first.shape[:2]
    photo, _ = read_image(photo_path)
    ph, pw = photo.shape[:2]
    if abs(pw / ph - width / height) > 0.02:  # the lite engine scales the photo, never crops it
        return None
    photo = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)
    faces = detect_faces(photo)
    if not faces:
        return None
    face = max(faces, key=lambda f: f.area)

    # The head region, as the lite rig draws it: an ellipse a little above the face oval's centre,
    # feathered; outside it the frame is the photo, and so is the mask.
    x0, y0, x1, y1 = face.box
    fw, fh = x1 - x0, y1 - y0
    centre = np.float32([(x0 + x1) / 2, (y0 + y1) / 2 - 0.08 * fh])
    axes = np.float32([0.5 * fw * 1.5, 0.5 * fh * 1.7])
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    r = np.hypot((xs - centre[0]) / axes[0], (ys - centre[1]) / axes[1])
    weight = 1.0 - _smoothstep((r - 1.0) / 0.6)
    bx0, by0 = max(0, int(x0 - 0.2 * fw)), max(0, int(y0 - 0.3 * fh))
    bx1, by1 = min(width, int(x1 + 0.2 * fw)), min(height, int(y1 + 0.2 * fh))
    # A GPU engine's render of the same photo (or anything else) redraws the background too: then
    # the photo's mask does not fit it. The lite engine leaves it as the photo, up to the encoder.
    still = weight < 0.01
    away = np.abs(
        cv2.cvtColor(first, cv2.COLOR_RGB2GRAY).astype(np.float32) - cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    )
    if not still.any() or float(away[still].mean()) > SAME_BACKGROUND:
        return None
    with person_segmenter() as segment:
        base = with_face(person_mask(photo, segment), face)
    grey_photo = cv2.cvtColor(photo[by0:by1, bx0:bx1], cv2.COLOR_RGB2GRAY).astype(np.float32)
    window = cv2.createHanningWindow((bx1 - bx0, by1 - by0), cv2.CV_32F)
    limit = MAX_HEAD_SHIFT * fw

    def matte(frame: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(frame[by0:by1, bx0:bx1], cv2.COLOR_RGB2GRAY).astype(np.float32)
        (dx, dy), _ = cv2.phaseCorrelate(grey_photo, grey, window)
        if abs(dx) > limit or abs(dy) > limit:
            dx = dy = 0.0
        if abs(dx) < 0.05 and abs(dy) < 0.05:
            return base
        # Backward map: an output pixel takes the photo's mask from where the head came from.
        return cv2.remap(
            base, xs - weight * dx, ys - weight * dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )

    return matte
