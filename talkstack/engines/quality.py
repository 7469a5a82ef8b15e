"""The quality report of an avatar video, the same measure for every engine (docs/quality.md).

One decoding pass over the video; the face landmarker (MediaPipe, talkstack/engines/lite/face.py)
runs only on sampled frames, so a video minute costs seconds (bench/quality.py):

- lip-sync windows: up to `lipsync_s` seconds of consecutive frames (the whole clip when shorter,
  else `lipsync_windows` windows spread over it): mouth opening vs the speech energy envelope;
- spread samples, one every `spread_every_s` (at most `max_spread`), and a few frames either side of
  each chunk boundary: identity and colour over the whole video.

The arithmetic is in talkstack/media/quality.py; this module samples, measures faces and judges
against QualityThresholds. A measure that cannot be taken (no face, no speech) is None and never
fails a job.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from talkstack.contract.quality import QualityCheck, QualityReport
from talkstack.engines.base import RenderResult
from talkstack.engines.lite.face import (
    FACE_OVAL,
    LEFT_EYE,
    OUTER_LIPS,
    RIGHT_EYE,
    Face,
    detect_faces,
    face_tracker,
)
from talkstack.media import quality as measures
from talkstack.media.colour import lab_pixels
from talkstack.media.image import read_image
from talkstack.media.video import probe_video
from talkstack.settings.quality import QualityThresholds, get_quality_thresholds

log = logging.getLogger(__name__)

# MediaPipe face-mesh indices (478-point topology) of points that speech barely moves: eye corners,
# the nose (bridge, tip, wings) and the face outline at the ears and jaw angles. The chin and lips
# move with every syllable and would read as identity drift.
STABLE_POINTS = [
    RIGHT_EYE["outer"], RIGHT_EYE["inner"], LEFT_EYE["inner"], LEFT_EYE["outer"],
    168, 6, 1, 98, 327, 234, 454, 172, 397,
]  # fmt: skip
# Facing pairs of the inner lips (upper, lower): the middle and a third of the way to each corner.
INNER_LIP_PAIRS = [(13, 14), (82, 87), (312, 317)]

MIN_MOUTH_SPREAD = 0.008
"""Mouth opening that varies less than this (standard deviation, face widths) is a still mouth: the
landmarker's own jitter on a still face is ~0.003, a talking mouth's spread ~0.03-0.04 (the lite
render of the bundled sample). Correlating jitter with speech can score by chance (a still mouth
in a frame brightening with the speech scored 0.35), so a still mouth scores 0: it follows nothing."""
FRAMES_TOLERANCE = 1
"""Frames the video may differ from round(speech × fps): engines round or floor the duration."""
COLOUR_WEIGHT = 1 / 100
"""Identity drift adds ΔE76/100 of the face's mean colour to its shape distance: a change of skin
tone of ΔE 15 (clearly another colour) weighs as much as a shape distance of 0.15."""


@dataclass(frozen=True)
class QualitySampling:
    """Which frames the report measures (the cost is the landmarker: ~10-20 ms a frame on a CPU)."""

    lipsync_s: float = 9.0
    lipsync_windows: int = 3
    spread_every_s: float = 1.0
    max_spread: int = 90
    boundary_s: float = 1.0
    """Seconds either side of a chunk boundary the colour jump is measured over."""
    boundary_samples: int = 5
    """Frames measured on each side of a boundary."""
    drift_window_s: float = 2.0
    """Without boundaries, colour drift compares windows of this length with the first one."""


@dataclass(frozen=True)
class FaceSample:
    time_s: float
    mouth: float
    """Inner-lip opening in face widths."""
    shape: np.ndarray
    """(len(STABLE_POINTS), 2) pixels."""
    lab: np.ndarray
    """(3,) mean Lab of the face (its oval without the mouth)."""


def mouth_opening(face: Face) -> float:
    """Mean gap between facing inner-lip points, in face widths (size-free, like the renderer's)."""
    gaps = [np.linalg.norm(face.points[upper] - face.points[lower]) for upper, lower in INNER_LIP_PAIRS]
    return float(np.mean(gaps)) / max(face.width, 1e-6)


def face_colour(rgb: np.ndarray, face: Face) -> np.ndarray:
    """Mean Lab of the face oval less the mouth (an open mouth is dark, and not a colour drift)."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in face.box)
    box = (max(0, x0), max(0, y0), min(w, x1 + 1), min(h, y1 + 1))
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(face.points[FACE_OVAL]).astype(np.int32)], 1)
    cv2.fillPoly(mask, [np.round(face.points[OUTER_LIPS]).astype(np.int32)], 0)
    pixels = lab_pixels(rgb, box, mask.astype(bool))
    return pixels.mean(axis=0) if len(pixels) else np.full(3, np.nan)


def face_sample(rgb: np.ndarray, face: Face, time_s: float) -> FaceSample:
    return FaceSample(time_s, mouth_opening(face), face.points[STABLE_POINTS].copy(), face_colour(rgb, face))


class FaceFinder:
    """The largest face of each sampled frame, looked for where it was last seen.

    MediaPipe's detector sees the whole frame at 128×128, so a face a quarter of a wide frame's
    width is found only now and then (a 512 px face padded into 832×480 was found in 1 of 6 frames).
    Looking in a square around the last face (CROP_SCALE face widths) finds it every time and is
    cheaper; where that fails, the whole frame, then (a few times at most, it costs a dozen
    landmarker runs) the tiled search talkstack/engines/lite/face.py uses for photos."""

    CROP_SCALE = 2.2
    TILED_SEARCHES = 3

    def __init__(self, track: Callable[[np.ndarray], Face | None]) -> None:
        self._track = track
        self._last: Face | None = None
        self._tiled_left = self.TILED_SEARCHES

    def __call__(self, rgb: np.ndarray) -> Face | None:
        face = self._around_last(rgb) or self._track(rgb)
        if face is None and self._tiled_left > 0:
            self._tiled_left -= 1
            faces = detect_faces(rgb)
            face = max(faces, key=lambda f: f.area) if faces else None
        if face is not None:
            self._last = face
        return face

    def _around_last(self, rgb: np.ndarray) -> Face | None:
        if self._last is None:
            return None
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = self._last.box
        half = self.CROP_SCALE * max(x1 - x0, y1 - y0) / 2
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        left, top = max(0, int(cx - half)), max(0, int(cy - half))
        right, bottom = min(w, int(cx + half)), min(h, int(cy + half))
        if right - left < 32 or bottom - top < 32:
            return None
        face = self._track(np.ascontiguousarray(rgb[top:bottom, left:right]))
        return None if face is None else Face(face.points + np.float32([left, top]))


def _lipsync_windows(frames: int, fps: float, sampling: QualitySampling) -> list[range]:
    length = round(sampling.lipsync_s * fps)
    if length <= 0 or frames <= 0:
        return []
    if frames <= length:
        return [range(frames)]
    count = max(1, sampling.lipsync_windows)
    each = length // count
    centres = [round((j + 0.5) * frames / count) for j in range(count)]
    return [range(max(0, c - each // 2), min(frames, c - each // 2 + each)) for c in centres]


def _spread(frames: int, fps: float, boundaries_s: Sequence[float], sampling: QualitySampling) -> set[int]:
    count = min(sampling.max_spread, max(2, int(frames / fps / sampling.spread_every_s) + 1))
    picked = set(np.linspace(0, frames - 1, count).round().astype(int).tolist())
    for cut in boundaries_s:
        for side in (-1, 1):
            # Past the crossfade (a few frames around the cut) up to boundary_s away.
            times = cut + side * np.linspace(
                measures.SEAM_GAP_S, sampling.boundary_s, sampling.boundary_samples, endpoint=False
            )
            # Rounded away from the cut, so no sample falls inside the gap.
            nearest = np.floor(times * fps + 1e-6) if side < 0 else np.ceil(times * fps - 1e-6)
            picked.update(int(i) for i in nearest if 0 <= i < frames)
    return picked


def _at_most(name: str, value: float | None, limit: float, detail: str | None = None) -> QualityCheck:
    """A check that passes when |value| ≤ limit (drifts, offsets); not measured when value is None."""
    return QualityCheck(
        name=name,  # type: ignore[arg-type]
        value=None if value is None else round(float(value), 4),
        threshold=limit,
        passed=None if value is None else abs(value) <= limit,
        detail=detail,
    )


def _at_least(name: str, value: float | None, floor: float, detail: str | None = None) -> QualityCheck:
    return QualityCheck(
        name=name,  # type: ignore[arg-type]
        value=None if value is None else round(float(value), 4),
        threshold=floor,
        passed=None if value is None else value >= floor,
        detail=detail,
    )


def reference_face(photo: np.ndarray) -> FaceSample | None:
    """The reference photo's largest face, measured like a video frame."""
    faces = detect_faces(photo)
    if not faces:
        return None
    return face_sample(photo, max(faces, key=lambda f: f.area), 0.0)


def _sample_faces(video: Path, wanted: set[int], fps: float) -> tuple[dict[int, FaceSample | None], int]:
    """One decoding pass: the face of each wanted frame (None where none was found), and how many
    frames the video has."""
    samples: dict[int, FaceSample | None] = {}
    decoded = 0
    with face_tracker() as tracker, av.open(str(video)) as container:
        track = FaceFinder(tracker)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            decoded += 1
            if index in wanted:
                rgb = frame.to_ndarray(format="rgb24")
                face = track(rgb)
                samples[index] = None if face is None else face_sample(rgb, face, index / fps)
    return samples, decoded


def _lipsync(
    video: Path, windows: list[range], found: dict[int, FaceSample], fps: float, frames: int
) -> tuple[float | None, float | None, str | None]:
    """(score, lag in seconds, why not measured): mouth opening vs speech energy in each window, at
    the best lag within ±0.2 s."""
    audio = measures.container_audio(video)
    if audio is None:
        return None, None, "no audio track"
    if not windows:
        return None, None, "not sampled"
    envelope = measures.speech_envelope(audio[0], audio[1], fps, frames)
    spoken = [envelope[w.start : w.stop] for w in windows]
    if float(np.std(np.concatenate(spoken))) < measures.MIN_ENVELOPE_SPREAD_DB:
        return None, None, "no speech rhythm in the sampled windows"
    mouths = [
        measures.smooth(np.array([found[i].mouth if i in found else np.nan for i in w])) for w in windows
    ]
    best = measures.best_lagged_correlation(mouths, spoken, max_lag=round(0.2 * fps))
    if best is None:
        return None, None, "too few frames with a face"
    moving = [m[np.isfinite(m)] - np.nanmean(m) for m in mouths if np.isfinite(m).sum() >= 3]
    if float(np.std(np.concatenate(moving))) < MIN_MOUTH_SPREAD:
        return 0.0, 0.0, "the mouth does not move"
    return best.r, best.lag / fps, None


def _identity(found: dict[int, FaceSample], reference: np.ndarray) -> tuple[float | None, str | None]:
    """(drift, why not measured): P90 over the frames of shape distance + ΔE76/100 to the photo."""
    ref = reference_face(reference)
    if ref is None:
        return None, "no face in the reference photo"
    if not found:
        return None, "no face in the sampled frames"
    per_frame = [
        measures.procrustes_distance(s.shape, ref.shape)
        + COLOUR_WEIGHT * float(np.linalg.norm(s.lab - ref.lab))
        for s in found.values()
    ]
    return float(np.percentile(per_frame, 90)), None


def assess_avatar(
    video: Path,
    reference: np.ndarray,
    *,
    speech_s: float | None = None,
    boundaries_s: Sequence[float] = (),
    thresholds: QualityThresholds | None = None,
    sampling: QualitySampling | None = None,
) -> QualityReport:
    """Measure an avatar video against its reference photo (RGB) and the speech it was rendered from.

    `speech_s`: the speech's duration (the frames the video should have); by default the container's
    audio track. `boundaries_s`: cut times of chunks rendered apart and joined (colour drift is then
    measured at the seams)."""
    t0 = time.perf_counter()
    thresholds = thresholds or get_quality_thresholds()
    sampling = sampling or QualitySampling()
    info = probe_video(video)
    fps = info.fps or 25.0
    frames_hint = info.frames or round(info.video.duration_s * fps)
    windows = _lipsync_windows(frames_hint, fps, sampling)
    in_window = {i for window in windows for i in window}
    wanted = in_window | _spread(frames_hint, fps, boundaries_s, sampling)

    samples, decoded = _sample_faces(video, wanted, fps)
    found = {i: s for i, s in samples.items() if s is not None}
    lipsync, lag_s, lipsync_detail = _lipsync(video, windows, found, fps, decoded)
    identity, identity_detail = _identity(found, reference)

    # Colour: the face's mean colour across the video (seams, or drift from the opening).
    ordered = sorted(found.values(), key=lambda s: s.time_s)
    colour = measures.colour_drift(
        np.array([s.time_s for s in ordered]),
        np.array([s.lab for s in ordered]).reshape(-1, 3),
        boundaries_s,
        window_s=sampling.boundary_s if boundaries_s else sampling.drift_window_s,
    )

    # Frames and A/V: what the container holds against what the speech needs.
    audio_track_s = info.audio.duration_s if info.audio else None
    needed_s = speech_s if speech_s is not None else audio_track_s
    expected = round(needed_s * fps) if needed_s is not None else decoded
    av_offset = info.video.duration_s - audio_track_s if audio_track_s is not None else 0.0

    checks = [
        _at_least("lipsync", lipsync, thresholds.min_lipsync, lipsync_detail),
        _at_most("identity", identity, thresholds.max_identity_drift, identity_detail),
        _at_most("colour", colour, thresholds.max_colour_drift),
        _at_most("frames", decoded - expected, FRAMES_TOLERANCE, f"{decoded} frames, {expected} needed"),
        _at_most(
            "av_sync",
            None if audio_track_s is None else av_offset,
            thresholds.max_av_offset_s,
            None if audio_track_s is not None else "no audio track",
        ),
    ]
    return QualityReport(
        lipsync=None if lipsync is None else round(lipsync, 4),
        lipsync_lag_s=None if lag_s is None else round(lag_s, 4),
        identity_drift=None if identity is None else round(identity, 4),
        colour_drift=None if colour is None else round(colour, 3),
        frames=decoded,
        expected_frames=expected,
        av_offset_s=round(av_offset, 4),
        faces_found=len(found) / len(samples) if samples else 0.0,
        sampled_frames=len(samples),
        seconds=round(time.perf_counter() - t0, 3),
        checks=checks,
        passed=all(check.passed is not False for check in checks),
    )


def with_quality(
    result: RenderResult,
    reference: np.ndarray | Path,
    *,
    speech_s: float | None = None,
    boundaries_s: Sequence[float] = (),
) -> RenderResult:
    """`result` with the quality report of its video. Measuring never fails a render: an error
    leaves `quality` unset and says so in the warnings."""
    try:
        photo = read_image(reference)[0] if isinstance(reference, Path) else reference
        report = assess_avatar(result.output, photo, speech_s=speech_s, boundaries_s=boundaries_s)
    except Exception as exc:
        log.warning("quality report not measured", exc_info=True)
        return dataclasses.replace(result, warnings=[*result.warnings, f"quality report not measured: {exc}"])
    return dataclasses.replace(result, quality=report)
