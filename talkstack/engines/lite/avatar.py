"""lite-avatar: photo + speech → talking-head MP4 on a CPU, with nothing downloaded.

Landmarks once on the photo, motion curves from the audio, then each frame is rendered by the
rig and piped straight into the encoder (memory does not grow with duration).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import cv2

from talkstack.engines.base import ProgressFn, RenderResult, no_progress
from talkstack.engines.lite.face import find_face, require_face_width
from talkstack.engines.lite.motion import motion_curves
from talkstack.engines.lite.rig import AvatarRig
from talkstack.engines.quality import with_quality
from talkstack.media.audio import ENGINE_SAMPLE_RATE, read_audio, resample
from talkstack.media.image import read_image
from talkstack.media.video import Mp4Writer, write_poster
from talkstack.safety.watermark import frame_marker, write_marked_wav
from talkstack.settings import MediaLimits, get_limits

MAX_SIDE = 1280
# Below this face width in the output, the mouth is a few pixels and the warp reads as noise.
MIN_RENDER_FACE_PX = 32


@dataclass(frozen=True)
class LiteAvatarOptions:
    fps: int = 25
    max_side: int = MAX_SIDE  # long side of the output, never above 1280
    short_side: int | None = None  # e.g. 480 for "480p"; never upscales the photo
    seed: int = 0
    head_motion: float = 1.0  # 0 = still head
    expressiveness: float = 1.0  # jaw travel multiplier
    blinks: bool = True
    crf: int = 20
    preset: str = "veryfast"


def output_size(
    width: int, height: int, max_side: int = MAX_SIDE, short_side: int | None = None
) -> tuple[int, int]:
    """Photo size scaled down (never up) to the limits, rounded down to even numbers for yuv420p."""
    scale = min(1.0, min(max_side, MAX_SIDE) / max(width, height))
    if short_side:
        scale = min(scale, short_side / min(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def render_avatar(
    image: Path,
    audio: Path,
    output: Path,
    *,
    options: LiteAvatarOptions | None = None,
    poster: Path | None = None,
    progress: ProgressFn = no_progress,
    limits: MediaLimits | None = None,
) -> RenderResult:
    options = options or LiteAvatarOptions()
    limits = limits or get_limits()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    photo, image_info = read_image(Path(image), limits)
    clip = read_audio(Path(audio), limits)
    search = find_face(photo, limits.min_face_pixels)
    warnings = list(image_info.notes)
    if search.count > 1:
        warnings.append(f"{search.count} faces found; animating the largest")

    width, height = output_size(photo.shape[1], photo.shape[0], options.max_side, options.short_side)
    frame_photo = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)
    face = search.face.scaled(width / photo.shape[1], height / photo.shape[0])
    require_face_width(face, MIN_RENDER_FACE_PX, f"at {width}×{height}")
    # No loudness normalisation here: the mouth curve is relative to the clip's own peaks.
    speech = resample(clip.samples, clip.sample_rate, ENGINE_SAMPLE_RATE)
    # The sound track is the decoded speech with the watermark added (docs/safety.md), written
    # beside the output and muxed in place of the file as it came.
    track = write_marked_wav(
        Path(output).with_name(f".{Path(output).stem}.speech.wav"), clip.samples, clip.sample_rate
    )
    del clip
    curves = motion_curves(
        speech,
        ENGINE_SAMPLE_RATE,
        options.fps,
        seed=options.seed,
        head_motion=options.head_motion,
        blinks=options.blinks,
    )
    rig = AvatarRig(frame_photo, face, expressiveness=options.expressiveness)
    timings["prepare_s"] = time.perf_counter() - t0

    n = len(curves)
    first_frame = None
    t1 = time.perf_counter()
    writer = Mp4Writer(
        Path(output), width, height, options.fps, audio=track, crf=options.crf, preset=options.preset
    )
    mark = frame_marker()
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(track.unlink, missing_ok=True)
        out = cleanup.enter_context(writer)
        for i in range(n):
            frame = rig.render(
                float(curves.mouth[i]),
                float(curves.blink[i]),
                float(curves.roll_deg[i]),
                float(curves.dx[i]),
                float(curves.dy[i]),
            )
            out.write(mark(frame))
            if i == 0:
                first_frame = frame
            if i % 25 == 0 or i == n - 1:
                progress((i + 1) / n, f"frame {i + 1}/{n}")
    # The poster is written only once the video exists: a failed render leaves neither behind.
    if poster is not None and first_frame is not None:
        write_poster(first_frame, Path(poster))
    timings["render_s"] = time.perf_counter() - t1
    timings["total_s"] = time.perf_counter() - t0
    result = RenderResult(
        output=Path(output),
        bytes=Path(output).stat().st_size,
        duration_s=n / options.fps,
        poster=Path(poster) if poster else None,
        width=width,
        height=height,
        fps=options.fps,
        frames=n,
        warnings=warnings,
        timings=timings,
    )
    # The same report as the GPU engines' (docs/quality.md), against the photo as the user sent it.
    return with_quality(result, photo, speech_s=len(speech) / ENGINE_SAMPLE_RATE)
