"""When each scene plays: its length, its start on the output's clock, and which scenes are on
screen at a given moment.

A scene lasts as long as what it shows: an engine's render (an avatar's speech) or a video upload
from its `start_s`, cut to the scene's `duration_s` when given; an image, a title card or a
generated clip not rendered in a preview lasts `duration_s` (default DEFAULT_STILL_SECONDS; the
clip's own options.duration_s). A crossfade or fade into the next scene overlaps the two scenes by
its duration, so the video is the sum of the scenes less the overlaps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from talkstack.compose.sources import is_video_file
from talkstack.contract.composition import (
    DEFAULT_STILL_SECONDS,
    AvatarSource,
    ComposeScene,
    MediaSource,
    TitleSource,
    VideoSource,
    scene_role,
)
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.video import probe_video

MIN_SCENE_S = 0.2


@dataclass(frozen=True)
class SceneSpan:
    index: int
    start_s: float
    duration_s: float
    overlap_in_s: float
    """How long the previous scene's transition overlaps this one's start."""
    overlap_out_s: float
    """How long this scene's transition overlaps the next one's start."""

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    @property
    def middle_s(self) -> float:
        return self.start_s + self.duration_s / 2


@dataclass(frozen=True)
class Timeline:
    spans: list[SceneSpan]
    fps: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    def on_screen(self, t: float) -> list[SceneSpan]:
        """The scenes showing at `t`: one, or two inside a transition (earlier first)."""
        showing = [s for s in self.spans if s.start_s <= t < s.end_s]
        return showing or [self.spans[-1] if t >= self.spans[-1].start_s else self.spans[0]]

    def frame_at(self, t: float) -> int:
        return min(self.frames - 1, max(0, round(t * self.fps)))


def source_seconds(scene: ComposeScene, index: int, inputs: dict[str, Path]) -> float:
    """How long scene `index` lasts (before transitions)."""
    source, wanted = scene.scene.source, scene.scene.duration_s
    if scene.rendered:
        own = _video_seconds(_need(inputs, scene_role(index, "video")))
    elif isinstance(source, MediaSource):
        media = _need(inputs, scene_role(index, "media"))
        if not is_video_file(media):
            return wanted or DEFAULT_STILL_SECONDS
        own = _video_seconds(media) - source.start_s
        if own <= 0:
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST,
                f"scenes[{index}].source.start_s ({source.start_s:g} s) is past the end of the video "
                f"({own + source.start_s:.2f} s); start earlier",
            )
    elif isinstance(source, VideoSource):  # a generated clip shown as a card (preview)
        return wanted or source.options.duration_s
    elif isinstance(source, AvatarSource):
        raise TalkstackError(
            ErrorCode.GENERATION_FAILED, f"scenes[{index}]: the avatar scene's render is missing"
        )
    else:
        assert isinstance(source, TitleSource)
        return wanted or DEFAULT_STILL_SECONDS
    return min(own, wanted) if wanted else own


def build_timeline(scenes: list[ComposeScene], inputs: dict[str, Path], fps: int) -> Timeline:
    """Every scene's span; refuses transitions that do not fit in the scenes they join."""
    lengths = [source_seconds(scene, i, inputs) for i, scene in enumerate(scenes)]
    overlaps = [s.scene.transition.overlap_s for s in scenes[:-1]] + [0.0]
    spans: list[SceneSpan] = []
    start = 0.0
    for i, length in enumerate(lengths):
        into = overlaps[i - 1] if i else 0.0
        out = overlaps[i]
        if length < MIN_SCENE_S:
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST,
                f"scenes[{i}] lasts {length:.2f} s; a scene needs at least {MIN_SCENE_S:g} s",
            )
        if into + out > length + 1e-9:
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST,
                f"scenes[{i}] lasts {length:.2f} s, shorter than its transitions "
                f"({into:g} s in + {out:g} s out); shorten transition.duration_s or lengthen the scene",
            )
        spans.append(SceneSpan(i, start, length, into, out))
        start += length - out
    total = spans[-1].end_s
    return Timeline(spans, fps, max(1, round(total * fps)))


def _video_seconds(path: Path) -> float:
    info = probe_video(path)
    if info.frames and info.fps:
        return info.frames / info.fps
    return info.duration_s


def _need(inputs: dict[str, Path], role: str) -> Path:
    if role not in inputs:
        raise TalkstackError(ErrorCode.GENERATION_FAILED, f"compose step input {role!r} is missing")
    return inputs[role]
