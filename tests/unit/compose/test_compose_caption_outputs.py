"""Which scenes the compose step captions and when it writes the caption files (the outputs the
pipeline declares), and how it hands the captions side their timings: shifted by each scene's
start, drawn over the frames when burnt in. The captions module itself (cues, SRT/VTT, styles) is
the captions side's (talkstack/compose/captions.py); until it is merged these tests use a small
stand-in of its interface (below)."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from talkstack.compose.render import compose_video
from talkstack.contract.captions import SpeechTimings, WordTiming
from tests.unit.compose.compose_media import (
    HEIGHT,
    WIDTH,
    avatar,
    colour_video,
    frame_at,
    ignore_progress,
    options,
    scene,
    title,
)

AUDIO_AVATAR = {"type": "avatar", "inputs": {"image": "p.png", "audio": "s.wav"}}


def _plan(scenes, **captions):
    return options(scenes, options={"captions": {"sidecar": True, **captions}})


def test_the_captioned_scenes_are_those_with_timings_or_a_transcript_to_align():
    plan = _plan(
        [
            avatar() | {"words": True},  # a scripted avatar: the voice step's timings
            scene(AUDIO_AVATAR, rendered=True),  # speech with no text: nothing to caption
            scene(AUDIO_AVATAR, rendered=True, transcript="Hello there"),  # aligned
            scene({"type": "media", "media": "clip.mp4"}, transcript="Hi"),  # its kept sound, aligned
            scene({"type": "media", "media": "clip.mp4", "keep_audio": False}, transcript="Hi"),  # no sound
            avatar(captions=False) | {"words": True},  # opted out
            title(),
        ]
    )
    assert plan.captioned_scenes() == [0, 2, 3]
    assert plan.writes_caption_files
    assert not _plan([title()]).writes_caption_files
    off = options([avatar() | {"words": True}], options={"captions": {"sidecar": False, "burn_in": "none"}})
    assert off.captioned_scenes() == [] and not off.writes_caption_files
    burn_only = options(
        [avatar() | {"words": True}], options={"captions": {"sidecar": False, "burn_in": "classic"}}
    )
    assert burn_only.captioned_scenes() == [0] and not burn_only.writes_caption_files


@dataclass
class _Cue:
    start_s: float
    end_s: float
    text: str


CALLS: dict[str, list] = {}


@pytest.fixture
def captions_module(monkeypatch):
    """Stand-in for talkstack.compose.captions (the captions side's), used only by these tests: a
    cue per word, files listing them, and a white bar at the bottom while a cue shows."""
    module = types.ModuleType("talkstack.compose.captions")

    def build_cues(timings: SpeechTimings, *, offset_s: float, max_line_chars: int, max_lines: int = 2):
        CALLS.setdefault("offsets", []).append(offset_s)
        return [_Cue(w.start_s + offset_s, w.end_s + offset_s, w.word) for w in timings.words]

    def write_srt(cues, path: Path) -> Path:
        path.write_text("".join(f"{c.start_s:.2f} {c.end_s:.2f} {c.text}\n" for c in cues))
        return path

    def write_vtt(cues, path: Path, language: str) -> Path:
        CALLS["language"] = [language]
        path.write_text("WEBVTT\n")
        return path

    class CaptionOverlay:
        def __init__(self, captions, width: int, height: int, cues) -> None:
            self.cues, self.width, self.height = cues, width, height
            self.top = height - 20  # the highest row its bar reaches

        def frame(self, t: float):
            if not any(c.start_s <= t < c.end_s for c in self.cues):
                return None
            layer = np.zeros((self.height, self.width, 4), np.uint8)
            layer[-20:, :] = 255
            return layer

    for name, value in [
        ("build_cues", build_cues),
        ("write_srt", write_srt),
        ("write_vtt", write_vtt),
        ("CaptionOverlay", CaptionOverlay),
    ]:
        setattr(module, name, value)
    monkeypatch.setitem(sys.modules, "talkstack.compose.captions", module)
    CALLS.clear()


def test_word_timings_are_shifted_to_the_scenes_start_written_and_burnt_in(tmp_path, captions_module):
    render = colour_video(tmp_path / "render.mp4", 2.0, "gray", tone_hz=None)
    words = tmp_path / "words.json"
    words.write_text(
        SpeechTimings(
            language="de",
            source="tts",
            duration_s=2.0,
            words=[
                WordTiming(word="Hallo", start_s=0.2, end_s=0.6),
                WordTiming(word="spät", start_s=1.9, end_s=2.4),
            ],
        ).model_dump_json()
    )
    opts = options(
        [title(duration_s=1.0), avatar(layout={"type": "full"}, duration_s=1.6) | {"words": True}],
        options={"captions": {"sidecar": True, "burn_in": "classic"}},
    )
    composed = compose_video(
        opts,
        {"scene_1_video": render, "scene_1_words": words},
        tmp_path / "out",
        ignore_progress,
        watermark=False,
    )
    assert CALLS["offsets"] == [1.0] and CALLS["language"] == ["de"]
    # The word after the scene's cut (1.9 s into a 1.6 s scene) is dropped.
    assert composed.outputs["captions_srt"].read_text() == "1.20 1.60 Hallo\n"
    assert composed.outputs["captions_vtt"].name == "captions.vtt"
    during, after = frame_at(composed.outputs["video"], 35), frame_at(composed.outputs["video"], 45)
    assert during[HEIGHT - 10, WIDTH // 2].min() > 230  # the cue's bar, burnt in at 1.4 s
    assert after[HEIGHT - 10, WIDTH // 2].max() < 200  # gone at 1.8 s


def test_a_transcript_over_silent_sound_is_not_captioned_and_the_video_is_still_made(tmp_path):
    """The aligner refuses silence (AUDIO_SILENT, as any speech input); a silent upload with a
    transcript must not fail the whole composition after every scene has been rendered."""
    import subprocess

    from talkstack.media.ffmpeg import ffmpeg_exe

    clip = tmp_path / "quiet.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=gray:s=160x120:r=25:d=1.5",
         "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "1.5", "-c:v", "libx264", "-pix_fmt",
         "yuv420p", "-c:a", "aac", str(clip)],
        check=True,
    )  # fmt: skip
    opts = _plan([scene({"type": "media", "media": "quiet.mp4"}, transcript="Nothing is said here")])
    assert opts.captioned_scenes() == [0]
    out = tmp_path / "out"
    composed = compose_video(opts, {"scene_0_media": clip}, out, ignore_progress, watermark=False)
    assert composed.outputs["video"].exists()
    assert composed.warnings == ["scene 0: its sound is silent; its transcript is not captioned"]
    assert composed.outputs["captions_srt"].read_text().strip() == ""
