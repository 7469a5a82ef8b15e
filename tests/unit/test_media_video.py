from __future__ import annotations

import numpy as np
import pytest

from talkstack.errors import TalkstackError
from talkstack.media.video import Mp4Writer, iter_frames, probe_video, write_poster


def _frames(n: int, w: int = 64, h: int = 48):
    for i in range(n):
        frame = np.zeros((h, w, 3), np.uint8)
        frame[:, : (i * 3) % w] = 200  # a moving edge, so frames differ
        yield frame


def test_writer_makes_h264_yuv420p_with_aac_both_starting_at_zero(tmp_path, media):
    path = tmp_path / "clip.mp4"
    with Mp4Writer(path, 64, 48, 25, audio=media["speech_5s"]) as out:
        for frame in _frames(125):
            out.write(frame)
    info = probe_video(path)
    assert (info.video_streams, info.audio_streams) == (1, 1)
    assert (info.video.codec, info.audio.codec, info.pix_fmt) == ("h264", "aac", "yuv420p")
    assert info.video.start_s == 0 and info.audio.start_s == 0
    assert info.frames == 125 and info.fps == 25
    assert abs(info.video.duration_s - 5.0) < 0.04 and abs(info.audio.duration_s - 5.0) < 0.04
    # faststart: the moov atom precedes the media data.
    head = path.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))
    decoded = list(iter_frames(path))
    assert len(decoded) == 125 and decoded[0].shape == (48, 64, 3)


def test_failed_render_publishes_nothing(tmp_path):
    path = tmp_path / "clip.mp4"
    with pytest.raises(RuntimeError), Mp4Writer(path, 64, 48) as out:
        out.write(next(_frames(1)))
        raise RuntimeError("engine crashed mid-render")
    assert list(tmp_path.iterdir()) == []


def test_encoder_failure_is_a_generation_error_and_publishes_nothing(tmp_path):
    path = tmp_path / "clip.mp4"
    with (
        pytest.raises(TalkstackError) as info,
        Mp4Writer(path, 64, 48, audio=tmp_path / "missing.wav") as out,
    ):
        for frame in _frames(30):
            out.write(frame)
    assert info.value.code == "GENERATION_FAILED"
    assert list(tmp_path.iterdir()) == []


def test_odd_sizes_and_wrong_frames_are_refused(tmp_path):
    with pytest.raises(ValueError):
        Mp4Writer(tmp_path / "x.mp4", 63, 48)
    with pytest.raises(ValueError), Mp4Writer(tmp_path / "x.mp4", 64, 48) as out:
        out.write(np.zeros((48, 64), np.uint8))


def test_posters(tmp_path):
    frame = np.full((720, 1280, 3), 90, np.uint8)
    poster = write_poster(frame, tmp_path / "p.jpg")
    assert poster.read_bytes()[:2] == b"\xff\xd8"
    from PIL import Image

    assert Image.open(poster).size == (640, 360)
