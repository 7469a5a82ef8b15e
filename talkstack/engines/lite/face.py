"""Face landmarks for the lite engine: MediaPipe's Face Landmarker, model file shipped in the repo.

MediaPipe's detector sees the whole image at 128×128, so faces smaller than about a sixth of the
frame are missed. Unless the whole-image pass already found a face that large, we also look at
overlapping tiles (half the short side) and merge the detections; that finds small faces and
every face in a group photo.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np

from talkstack.errors import ErrorCode, TalkstackError
from talkstack.settings import get_settings

MODEL_FILE = "face_landmarker.task"

# MediaPipe face-mesh indices (478-point topology).
UPPER_INNER_LIP = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LOWER_INNER_LIP = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
OUTER_LIPS = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146]
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]  # fmt: skip
RIGHT_EYE = {"outer": 33, "inner": 133, "upper": [158, 159, 160], "lower": [144, 145, 153]}
LEFT_EYE = {"outer": 263, "inner": 362, "upper": [385, 386, 387], "lower": [373, 374, 380]}
CHIN, FOREHEAD, MOUTH_LEFT, MOUTH_RIGHT = 152, 10, 61, 291


def model_path() -> Path:
    return Path(str(resources.files("talkstack") / "assets" / "models" / MODEL_FILE))


@dataclass(frozen=True)
class Face:
    """One face's 478 landmarks in image pixels (x, y)."""

    points: np.ndarray  # (478, 2) float32

    @cached_property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the face oval."""
        oval = self.points[FACE_OVAL]
        return (*oval.min(axis=0), *oval.max(axis=0))

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return (x1 - x0) * (y1 - y0)

    def eye_centre(self, eye: dict) -> np.ndarray:
        return self.points[[eye["outer"], eye["inner"]]].mean(axis=0)

    @property
    def roll(self) -> float:
        """In-plane rotation (radians) of the eye line, positive clockwise in image coordinates."""
        d = self.eye_centre(LEFT_EYE) - self.eye_centre(RIGHT_EYE)
        return float(np.arctan2(d[1], d[0]))

    def scaled(self, sx: float, sy: float) -> Face:
        return Face((self.points * np.float32([sx, sy])).astype(np.float32))


@dataclass(frozen=True)
class FaceSearch:
    face: Face  # the largest face
    count: int  # how many faces were found


def find_face(rgb: np.ndarray, min_face_pixels: int) -> FaceSearch:
    """The largest face in the photo, or a specific error when there is none usable."""
    faces = detect_faces(rgb)
    if not faces:
        raise TalkstackError(
            ErrorCode.NO_FACE_DETECTED,
            "no face found in the image; use a photo with one clearly visible, roughly frontal face",
        )
    face = max(faces, key=lambda f: f.area)
    require_face_width(face, min_face_pixels, "in the photo")
    return FaceSearch(face, len(faces))


def require_face_width(face: Face, minimum: float, where: str) -> None:
    if face.width < minimum:
        raise TalkstackError(
            ErrorCode.FACE_TOO_SMALL,
            f"{where} the face is only {face.width:.0f} px wide; at least {minimum:g} px is needed "
            "(crop the photo closer to the face, or ask for a larger output)",
            face_px=round(face.width),
            min_face_px=minimum,
        )


def detect_faces(rgb: np.ndarray) -> list[Face]:
    """All faces, found on the whole image and on overlapping tiles, merged by overlap."""
    h, w = rgb.shape[:2]
    found: list[Face] = []
    with _landmarker() as detect:
        for i, (x, y, side_w, side_h) in enumerate(_windows(w, h)):
            if i == 1 and _big_enough(found, min(w, h)):
                break
            for pts in detect(np.ascontiguousarray(rgb[y : y + side_h, x : x + side_w])):
                face = Face((pts * [side_w, side_h] + [x, y]).astype(np.float32))
                if not any(_iou(face.box, other.box) > 0.3 for other in found):
                    found.append(face)
    return found


def _big_enough(found: list[Face], short_side: int) -> bool:
    # Tiles only find faces smaller than about a sixth of the frame; once the whole-image pass
    # found a face larger than that, tiles cannot change which face is the largest.
    return any(f.width >= 0.15 * short_side for f in found)


def _windows(w: int, h: int) -> Iterator[tuple[int, int, int, int]]:
    yield 0, 0, w, h
    side = min(w, h) // 2
    if side < 160:
        return
    for y in _steps(h, side):
        for x in _steps(w, side):
            yield x, y, side, side


def _steps(length: int, side: int) -> list[int]:
    n = max(1, int(np.ceil((length - side) / (side / 2)))) + 1
    return sorted({round(v) for v in np.linspace(0, length - side, n)})


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@contextlib.contextmanager
def _landmarker() -> Iterator:
    """A detect(rgb) -> list of (478, 2) normalised arrays; MediaPipe's C++ logging kept off stderr."""
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions
    except ImportError as exc:
        raise TalkstackError(
            ErrorCode.MODEL_UNAVAILABLE,
            "lite-avatar needs mediapipe: pip install --no-deps 'mediapipe==1.2.2' "
            "(see docs/lite-engines.md)",
        ) from exc
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(model_path())),
        running_mode=vision.RunningMode.IMAGE,
        num_faces=8,
        min_face_detection_confidence=0.5,
        min_face_presence_confidence=0.5,
    )
    with _stderr_silenced(), vision.FaceLandmarker.create_from_options(options) as landmarker:

        def detect(tile: np.ndarray) -> list[np.ndarray]:
            result = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=tile))
            return [np.array([(p.x, p.y) for p in lms], dtype=np.float32) for lms in result.face_landmarks]

        yield detect


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    # MediaPipe logs from C++ straight to file descriptor 2; Python-level redirection can't catch it.
    if get_settings().debug:
        yield
        return
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def face_tracker() -> Iterator:
    """track(rgb) -> Face | None for frame-by-frame measurement (whole frame, largest face)."""
    with _landmarker() as detect:

        def track(rgb: np.ndarray) -> Face | None:
            h, w = rgb.shape[:2]
            faces = [Face((pts * [w, h]).astype(np.float32)) for pts in detect(np.ascontiguousarray(rgb))]
            return max(faces, key=lambda f: f.area) if faces else None

        yield track
