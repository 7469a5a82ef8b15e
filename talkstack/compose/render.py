"""The compose step: a finished video from a composition's rendered scenes, on a CPU.

Frame by frame, each scene showing is drawn (background, placed source, title card, overlays), two
scenes are mixed inside a transition, captions are burnt in and, in a preview, the PREVIEW mark
drawn; frames are piped to ffmpeg (libx264, yuv420p, faststart) with the soundtrack (audio.py)
muxed as AAC. Thumbnails and the animated preview are taken from the frames as they are written
(never re-decoded); transparent compositions also feed the alpha encoders from the same loop.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talkstack.compose.audio import Soundtrack, build_soundtrack, write_soundtrack
from talkstack.compose.layout import blend_into
from talkstack.compose.outputs import preview_frame_indices, shrink_for_preview, write_animated_webp
from talkstack.compose.scenes import SceneRenderer
from talkstack.compose.text import preview_mark
from talkstack.compose.timeline import SceneSpan, Timeline, build_timeline
from talkstack.compose.transitions import mix, mix_alpha, weights
from talkstack.contract.composition import (
    COMPOSE_OUTPUTS,
    AvatarSource,
    ComposeOptions,
    scene_role,
    scene_thumbnail_role,
)
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.video import Mp4Writer, write_poster

Progress = Callable[[float, str], None]


@dataclass
class ComposedVideo:
    outputs: dict[str, Path]
    """Output role (COMPOSE_OUTPUTS, scene_thumbnail_<i>) → file."""
    duration_s: float
    width: int
    height: int
    fps: int
    frames: int
    warnings: list[str] = field(default_factory=list)


def compose_video(
    options: ComposeOptions, inputs: dict[str, Path], outdir: Path, progress: Progress, *, watermark: bool
) -> ComposedVideo:
    outdir.mkdir(parents=True, exist_ok=True)
    width, height, fps = options.width, options.height, options.options.fps
    scenes = options.scenes
    timeline = build_timeline(scenes, inputs, fps)
    progress(0.02, f"composing {len(scenes)} scenes, {timeline.duration_s:.1f} s")
    track = build_soundtrack(scenes, timeline, inputs, options.options.music)
    soundtrack = write_soundtrack(track, outdir / "soundtrack.wav", watermark=watermark and track.audible)
    outputs: dict[str, Path] = {}
    warnings: list[str] = []

    captions = _captions(options, inputs, timeline, track, outdir, outputs, warnings)
    burn = captions if options.options.captions.burn_in != "none" else None
    mark_preview = preview_mark(width, height) if options.preview else None

    # Frames kept as they pass: each scene's middle, the video's thumbnail, the animated preview's.
    scene_picks = {timeline.frame_at(span.middle_s): span.index for span in timeline.spans}
    thumb_frame = timeline.frame_at(_thumbnail_time(options, timeline))
    preview_picks = set(preview_frame_indices(timeline.frames))
    preview_frames: list[np.ndarray] = []

    marker = _marker(watermark)
    transparent = options.options.transparent
    sinks = _AlphaSinks(outdir, fps, soundtrack) if transparent else None
    # Text overlays of scenes whose captions are burnt in keep above them (no lower third under them).
    above = {index: burn.top for index in options.captioned_scenes()} if burn is not None else {}
    drawer = _Drawer(options, inputs, timeline, transparent, above)
    video = outdir / COMPOSE_OUTPUTS["video"]
    step = max(1, timeline.frames // 20)
    captions_layer = _LayerBlender()
    try:
        with Mp4Writer(video, width, height, fps, soundtrack, preset="veryfast", crf=20) as out:
            for f in range(timeline.frames):
                t = f / fps
                frame, alpha = drawer.frame(t)
                if burn is not None:
                    layer = burn.frame(t)
                    if layer is not None:
                        captions_layer.draw(frame, layer, alpha)
                if mark_preview is not None:
                    mark_preview.draw(frame)
                if f in scene_picks:
                    index = scene_picks[f]
                    outputs[scene_thumbnail_role(index)] = write_poster(frame, outdir / f"scene-{index}.jpg")
                if f == thumb_frame:
                    outputs["thumbnail"] = write_poster(
                        frame, outdir / COMPOSE_OUTPUTS["thumbnail"], max_side=960
                    )
                if f in preview_picks:
                    preview_frames.append(shrink_for_preview(frame))
                frame = marker(frame)  # the watermark, in every published video (not the stills)
                if sinks is not None:
                    assert alpha is not None
                    sinks.put(np.dstack([frame, (alpha * 255 + 0.5).clip(0, 255).astype(np.uint8)]))
                out.write(frame)
                if f % step == 0:
                    progress(0.05 + 0.85 * f / timeline.frames, f"frame {f} of {timeline.frames}")
        if sinks is not None:
            outputs.update(sinks.finish())
    finally:
        drawer.close()
        if sinks is not None:
            sinks.abort()
    warnings.extend(drawer.warnings)
    outputs["video"] = video
    progress(0.95, "animated preview")
    outputs["preview"] = write_animated_webp(preview_frames, outdir / COMPOSE_OUTPUTS["preview"])
    progress(1.0, "composed")
    return ComposedVideo(
        outputs=outputs,
        duration_s=timeline.duration_s,
        width=width,
        height=height,
        fps=fps,
        frames=timeline.frames,
        warnings=warnings,
    )


class _Drawer:
    """The composed frame at a time: one scene, or two mixed inside a transition. Scene renderers
    open when their scene first shows and close when it has passed."""

    def __init__(
        self,
        options: ComposeOptions,
        inputs: dict[str, Path],
        timeline: Timeline,
        alpha: bool,
        text_above: dict[int, int] | None = None,
    ) -> None:
        self.options, self.inputs, self.timeline, self.alpha = options, inputs, timeline, alpha
        self.text_above = text_above or {}
        self.open: dict[int, SceneRenderer] = {}
        self.warnings: list[str] = []

    def renderer(self, span: SceneSpan) -> SceneRenderer:
        if span.index not in self.open:
            renderer = SceneRenderer(
                self.options.scenes[span.index],
                span,
                self.inputs,
                self.options.width,
                self.options.height,
                with_alpha=self.alpha,
                text_above=self.text_above.get(span.index),
            )
            self.warnings.extend(renderer.warnings)
            self.open[span.index] = renderer
        return self.open[span.index]

    def frame(self, t: float) -> tuple[np.ndarray, np.ndarray | None]:
        for index in [i for i in self.open if self.timeline.spans[i].end_s <= t]:
            self.open.pop(index).close()
        showing = self.timeline.on_screen(t)
        if len(showing) == 1:
            span = showing[0]
            return self.renderer(span).frame(t - span.start_s)
        before, after = showing[0], showing[-1]
        transition = self.options.scenes[before.index].scene.transition
        progress = (t - after.start_s) / before.overlap_out_s
        out_w, in_w, _ = weights(transition, progress)
        one = self.renderer(before).frame(t - before.start_s) if out_w else (None, None)
        two = self.renderer(after).frame(t - after.start_s) if in_w else (None, None)
        frame = (
            mix(transition, one[0], two[0], progress) if one[0] is not None or two[0] is not None else None
        )
        if frame is None:  # the middle of a fade: only the colour
            frame = mix(
                transition, np.zeros((self.options.height, self.options.width, 3), np.uint8), None, progress
            )
        alpha = None
        if self.alpha:
            zeros = np.zeros((self.options.height, self.options.width), np.float32)
            alpha = mix_alpha(transition, one[1] if one[1] is not None else zeros, two[1], progress)
        return frame, alpha

    def close(self) -> None:
        for renderer in self.open.values():
            renderer.close()
        self.open.clear()


def _thumbnail_time(options: ComposeOptions, timeline: Timeline) -> float:
    """The middle of the first avatar scene, else of the whole video."""
    for span in timeline.spans:
        if isinstance(options.scenes[span.index].scene.source, AvatarSource):
            return span.middle_s
    return timeline.duration_s / 2


def _marker(watermark: bool) -> Callable[[np.ndarray], np.ndarray]:
    if not watermark:
        return lambda frame: frame
    from talkstack.safety.watermark import frame_marker

    return frame_marker()


class _LayerBlender:
    """Draws canvas-sized RGBA layers (burnt-in captions) over frames, and into their alpha. The
    captions hand back the same picture for as long as it shows, so the part of it that has pixels
    (its RGB and alpha, as blend_into takes them) is found once per picture, not once per frame."""

    def __init__(self) -> None:
        self._layer: np.ndarray | None = None
        self._part: tuple[int, int, np.ndarray, np.ndarray] | None = None

    def draw(self, frame: np.ndarray, layer: np.ndarray, alpha: np.ndarray | None) -> None:
        if layer is not self._layer:
            self._layer, self._part = layer, None
            opaque = layer[..., 3] > 0
            rows, cols = np.flatnonzero(opaque.any(axis=1)), np.flatnonzero(opaque.any(axis=0))
            if len(rows):
                top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
                part = layer[top:bottom, left:right]
                rgb = np.ascontiguousarray(part[..., :3])
                self._part = (left, top, rgb, part[..., 3].astype(np.float32) / 255.0)
        if self._part is None:
            return
        x, y, rgb, a = self._part
        blend_into(frame, rgb, a, x, y)
        if alpha is not None:
            region = alpha[y : y + a.shape[0], x : x + a.shape[1]]
            np.maximum(region, a, out=region)


def _captions(
    options: ComposeOptions,
    inputs: dict[str, Path],
    timeline: Timeline,
    track: Soundtrack,
    outdir: Path,
    outputs: dict[str, Path],
    warnings: list[str],
):  # -> CaptionOverlay | None (typed loosely: the captions module is imported only when needed)
    """Cues of every captioned scene's speech on the video's clock; the sidecar SRT and VTT files
    (whenever options.writes_caption_files, even with no cues: the step declared them); the
    burn-in overlay (None when nothing is burnt in or nobody speaks)."""
    captioned = options.captioned_scenes()
    if not captioned:
        return None
    from talkstack.compose.captions import CaptionOverlay, build_cues, write_srt, write_vtt
    from talkstack.contract.captions import SpeechTimings

    settings = options.options.captions
    cues = []
    languages = []
    for index in captioned:
        span, scene = timeline.spans[index], options.scenes[index]
        timings: SpeechTimings | None = None
        if scene.words:
            words = inputs.get(scene_role(index, "words"))
            if words is None:
                raise TalkstackError(
                    ErrorCode.GENERATION_FAILED,
                    f"compose step input {scene_role(index, 'words')!r} is missing",
                )
            timings = SpeechTimings.model_validate_json(words.read_text())
        elif scene.scene.transcript and index in track.scene_sounds:
            from talkstack.media.alignment import align_words
            from talkstack.media.audio import write_wav

            speech = write_wav(outdir / f"scene-{index}-speech.wav", track.scene_sounds[index], track.rate)
            try:
                timings = align_words(speech, scene.scene.transcript, scene.language)
            except TalkstackError as exc:  # nothing is said: the video is still made, uncaptioned
                if exc.code != ErrorCode.AUDIO_SILENT:
                    raise
                warnings.append(f"scene {index}: its sound is silent; its transcript is not captioned")
                continue
        if timings is None:
            continue
        # A scene cut short (duration_s, a transition) keeps the words it still shows.
        kept = [w for w in timings.words if w.start_s < span.duration_s]
        timings = timings.model_copy(
            update={"words": kept, "duration_s": min(timings.duration_s, span.duration_s)}
        )
        languages.append(timings.language)
        cues.extend(build_cues(timings, offset_s=span.start_s, max_line_chars=settings.max_line_chars))
    if options.writes_caption_files:
        srt, vtt = outdir / COMPOSE_OUTPUTS["captions_srt"], outdir / COMPOSE_OUTPUTS["captions_vtt"]
        write_srt(cues, srt)
        write_vtt(cues, vtt, languages[0] if languages else options.scenes[captioned[0]].language)
        outputs["captions_srt"], outputs["captions_vtt"] = srt, vtt
    if settings.burn_in == "none" or not cues:
        return None
    return CaptionOverlay(settings, options.width, options.height, cues)


_ABORT = object()
"""Put on an encoder's queue when the render failed."""


class _Aborted(Exception):
    pass


class _AlphaSinks:
    """The WebM (VP9 + alpha) and ProRes 4444 encoders of transparent output, each on a thread
    reading RGBA frames from a short queue that the render loop fills (one pass over the frames)."""

    def __init__(self, outdir: Path, fps: int, audio: Path) -> None:
        from talkstack.media.alpha import encode_alpha_webm, encode_prores4444

        self.targets = {
            "video_webm": (encode_alpha_webm, outdir / COMPOSE_OUTPUTS["video_webm"]),
            "video_mov": (encode_prores4444, outdir / COMPOSE_OUTPUTS["video_mov"]),
        }
        self.queues: dict[str, queue.Queue[np.ndarray | None]] = {}
        self.errors: dict[str, BaseException] = {}
        self.threads: dict[str, threading.Thread] = {}
        for role, (encode, path) in self.targets.items():
            feed: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=4)
            self.queues[role] = feed
            thread = threading.Thread(
                target=self._run, args=(role, encode, feed, fps, path, audio), daemon=True
            )
            self.threads[role] = thread
            thread.start()

    def _run(self, role: str, encode, feed: queue.Queue, fps: int, path: Path, audio: Path) -> None:
        def frames() -> Iterator[np.ndarray]:
            while (item := feed.get()) is not None:
                if item is _ABORT:  # the render failed: the encoder kills ffmpeg, keeps no file
                    raise _Aborted
                yield item

        try:
            encode(frames(), float(fps), path, audio=audio)
        except _Aborted:
            pass
        except BaseException as exc:  # reported by finish()/put()
            self.errors[role] = exc
            while (item := feed.get()) is not None and item is not _ABORT:  # the loop never blocks
                pass

    def put(self, rgba: np.ndarray) -> None:
        for role, feed in self.queues.items():
            if role in self.errors:
                raise self._failure(role)
            feed.put(rgba)

    def finish(self) -> dict[str, Path]:
        for feed in self.queues.values():
            feed.put(None)
        for thread in self.threads.values():
            thread.join()
        for role in self.targets:
            if role in self.errors:
                raise self._failure(role)
        self.queues.clear()
        return {role: path for role, (_, path) in self.targets.items()}

    def abort(self) -> None:
        """After a failed render: stop the encoders without a file (a truncated video.webm or
        video.mov must not look finished) and wait for their ffmpeg processes to end."""
        for feed in self.queues.values():
            with contextlib.suppress(queue.Empty):
                while True:  # only the encoder takes from the queue now: room for the signal
                    feed.get_nowait()
            feed.put_nowait(_ABORT)  # type: ignore[arg-type]
        for thread in self.threads.values():
            thread.join(timeout=30)

    def _failure(self, role: str) -> TalkstackError:
        error = self.errors[role]
        if isinstance(error, TalkstackError):
            return error
        return TalkstackError(ErrorCode.GENERATION_FAILED, f"transparent output ({role}) failed: {error}")
