"""Transparent video and mask videos: what goes in comes back, alpha included."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from talkstack.media.alpha import (
    encode_alpha_webm,
    encode_prores4444,
    read_alpha_frames,
    read_mask_frames,
    write_mask_video,
)
from talkstack.media.video import probe_video
from tests.conftest import PORTRAIT, SPEECH

FRAMES = 6
SIZE = 128  # the portrait at 128×128: the face is around (56, 48), the top corners are wall


def _cut_out_portrait() -> list[np.ndarray]:
    """The portrait with an opaque ellipse over the face and shoulders, transparent elsewhere."""
    rgb = np.asarray(Image.open(PORTRAIT).convert("RGB").resize((SIZE, SIZE)))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    inside = ((xx - 56) / 40) ** 2 + ((yy - 60) / 55) ** 2 <= 1
    alpha = np.where(inside, 255, 0).astype(np.uint8)
    return [np.dstack([rgb, alpha]) for _ in range(FRAMES)]


@pytest.mark.parametrize(
    ("encode", "name", "codec"),
    [(encode_alpha_webm, "cut.webm", "vp9"), (encode_prores4444, "cut.mov", "prores")],
)
def test_alpha_survives_encoding(encode, name: str, codec: str, tmp_path: Path) -> None:
    frames = _cut_out_portrait()
    path = encode(iter(frames), 25, tmp_path / name, audio=SPEECH)
    info = probe_video(path)
    assert info.video.codec == codec and (info.width, info.height) == (SIZE, SIZE)
    assert info.audio is not None  # the speech is muxed in
    decoded = list(read_alpha_frames(path))
    assert len(decoded) == FRAMES
    for frame in decoded:
        assert frame.shape == (SIZE, SIZE, 4)
        assert frame[40:60, 45:65, 3].min() >= 250  # opaque over the face
        for corner in (frame[:8, :8, 3], frame[:8, -8:, 3], frame[-4:, -4:, 3]):
            assert corner.max() <= 5  # transparent in the corners
        face = frame[40:60, 45:65, :3].astype(int) - frames[0][40:60, 45:65, :3]
        assert np.abs(face).mean() < 8  # and the colour is the picture's


def test_default_vp9_decoder_drops_alpha_so_reader_names_libvpx(tmp_path: Path) -> None:
    """Why read_alpha_frames asks for libvpx-vp9: libav's own vp9 decoder returns no alpha plane."""
    path = encode_alpha_webm(iter(_cut_out_portrait()), 25, tmp_path / "cut.webm")
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        assert "a" not in frame.format.name  # yuv420p: the alpha stream was ignored
    assert next(read_alpha_frames(path))[:8, :8, 3].max() <= 5


def test_prores_is_4444_with_alpha(tmp_path: Path) -> None:
    path = encode_prores4444(iter(_cut_out_portrait()), 25, tmp_path / "cut.mov")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.codec_tag == "ap4h"  # ProRes 4444
        assert "yuva444" in next(container.decode(stream)).format.name


def test_mask_video_round_trip(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 1, 160, dtype=np.float32), (90, 1))
    masks = [ramp, 1 - ramp, np.zeros_like(ramp)]
    path = write_mask_video(masks, 30, tmp_path / "mask.mp4")
    info = probe_video(path)
    assert (info.width, info.height, info.fps, info.frames) == (160, 90, 30, 3)
    back = list(read_mask_frames(path))
    assert len(back) == 3
    for sent, got in zip(masks, back, strict=True):
        assert got.dtype == np.float32 and got.shape == (90, 160)
        assert np.abs(got - sent).max() < 0.03
    small = next(read_mask_frames(path, size=(80, 45)))
    assert small.shape == (45, 80)
    assert small[:, 0].max() < 0.05 and small[:, -1].min() > 0.95


def test_odd_sized_mask_keeps_its_size(tmp_path: Path) -> None:
    mask = np.zeros((51, 75), np.float32)
    mask[10:40, 20:50] = 1
    back = next(read_mask_frames(write_mask_video([mask], 25, tmp_path / "odd.mp4")))
    assert back.shape == (51, 75)
    assert back[20:30, 30:40].min() > 0.95 and back[:5, :5].max() < 0.05
