"""Scene lengths, starts and the video's length: the sum of the scenes less the transitions'
overlaps, checked in the arithmetic and on the encoded file."""

from __future__ import annotations

import numpy as np
import pytest

from talkstack.compose.render import compose_video
from talkstack.compose.timeline import build_timeline
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.video import probe_video
from tests.unit.compose.compose_media import (
    FPS,
    colour_video,
    ignore_progress,
    media,
    options,
    scene,
    solid_image,
    title,
)


def test_scenes_last_their_source_and_overlap_by_their_transitions(tmp_path):
    clip = colour_video(tmp_path / "clip.mp4", 2.0)
    still = solid_image(tmp_path / "still.png", (0, 200, 0))
    opts = options(
        [
            media("clip.mp4", transition={"type": "crossfade", "duration_s": 0.5}),  # its own 2 s
            title(duration_s=1.5, transition={"type": "fade", "duration_s": 0.4}),
            media("still.png"),  # an image: DEFAULT_STILL_SECONDS (4 s)
        ]
    )
    inputs = {"scene_0_media": clip, "scene_2_media": still}
    timeline = build_timeline(opts.scenes, inputs, FPS)
    assert [round(s.start_s, 3) for s in timeline.spans] == [0.0, 1.5, 2.6]
    assert [round(s.duration_s, 3) for s in timeline.spans] == [2.0, 1.5, 4.0]
    total = 2.0 + 1.5 + 4.0 - 0.5 - 0.4
    assert timeline.frames == round(total * FPS)
    # Inside the crossfade both scenes show, earlier first; elsewhere one.
    assert [s.index for s in timeline.on_screen(1.7)] == [0, 1]
    assert [s.index for s in timeline.on_screen(2.2)] == [1]

    composed = compose_video(opts, inputs, tmp_path / "out", ignore_progress, watermark=False)
    info = probe_video(composed.outputs["video"])
    assert abs(info.frames - round(total * FPS)) <= 1
    assert abs(info.duration_s - total) <= 1.5 / FPS
    assert composed.frames == timeline.frames and composed.duration_s == pytest.approx(total, abs=1 / FPS)


def test_a_video_is_cut_to_the_scenes_duration_and_starts_at_start_s(tmp_path):
    clip = colour_video(tmp_path / "clip.mp4", 3.0)
    opts = options(
        [
            scene({"type": "media", "media": "clip.mp4", "start_s": 1.0}),  # 2 s left of 3
            scene({"type": "media", "media": "clip.mp4"}, duration_s=1.2),
        ]
    )
    inputs = {"scene_0_media": clip, "scene_1_media": clip}
    timeline = build_timeline(opts.scenes, inputs, FPS)
    assert [round(s.duration_s, 2) for s in timeline.spans] == [2.0, 1.2]
    assert timeline.frames == round(3.2 * FPS)


@pytest.mark.parametrize(
    ("durations", "transition"),
    [((1.0, 0.5), 0.8), ((0.5, 2.0), 0.6)],
    ids=["longer than the next scene", "longer than the previous scene"],
)
def test_a_transition_longer_than_a_scene_is_refused_with_the_fix_named(tmp_path, durations, transition):
    opts = options(
        [
            title(duration_s=durations[0], transition={"type": "crossfade", "duration_s": transition}),
            title(duration_s=durations[1]),
        ]
    )
    with pytest.raises(TalkstackError) as caught:
        build_timeline(opts.scenes, {}, FPS)
    assert caught.value.code == ErrorCode.INVALID_REQUEST
    assert "transition.duration_s" in caught.value.message


def test_a_start_past_the_end_of_an_upload_is_refused(tmp_path):
    clip = colour_video(tmp_path / "clip.mp4", 1.0, tone_hz=None)
    opts = options([scene({"type": "media", "media": "clip.mp4", "start_s": 5.0})])
    with pytest.raises(TalkstackError) as caught:
        build_timeline(opts.scenes, {"scene_0_media": clip}, FPS)
    assert caught.value.code == ErrorCode.INVALID_REQUEST and "start_s" in caught.value.message


def test_a_video_cursor_shows_the_frame_of_each_moment_from_start_s(tmp_path):
    """Frames are picked by time in the file: from `start_s`, across frame rates, held past the
    end, and from `start_s` again when looping. Each frame has a grey level of its own."""
    import subprocess

    from talkstack.compose.sources import VideoCursor
    from talkstack.media.ffmpeg import ffmpeg_exe

    video = tmp_path / "count.mp4"
    grey = "geq=lum='min(255\\,8*N)':cb=128:cr=128"
    subprocess.run(
        [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "color=s=64x48:r=10:d=3",
         "-vf", grey, "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", str(video)],
        check=True,
    )  # fmt: skip

    from talkstack.media.video import iter_frames

    levels = [float(f.mean()) for f in iter_frames(video)]  # every frame's own grey: distinct

    def index(frame) -> int:
        return int(np.argmin([abs(float(frame.mean()) - level) for level in levels]))

    cursor = VideoCursor(video, start_s=1.0)
    assert [index(cursor.at(t)) for t in (0.0, 0.04, 0.1, 0.55, 1.0, 1.95)] == [10, 10, 11, 15, 20, 29]
    assert index(cursor.at(5.0)) == 29  # held past the end
    cursor.close()
    looped = VideoCursor(video, start_s=1.0, loop=True)
    assert [index(looped.at(t)) for t in (0.5, 1.95, 2.0, 2.3)] == [15, 29, 10, 13]
    looped.close()
