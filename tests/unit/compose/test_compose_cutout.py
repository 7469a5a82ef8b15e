"""Cut-out people and transparent output, through the matting side's interface
(talkstack.media.alpha: read_mask_frames, encode_alpha_webm, encode_prores4444). Masks are read by
the real reader; where a test looks at the RGBA frames handed to the alpha encoders, the
`alpha_module` fixture keeps them instead of encoding them (the encoders have their own tests in
tests/unit/test_alpha_video.py)."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from talkstack.compose.layout import place
from talkstack.compose.render import compose_video
from talkstack.contract.composition import Layout
from talkstack.media.ffmpeg import ffmpeg_exe
from tests.unit.compose.compose_media import (
    HEIGHT,
    WIDTH,
    avatar,
    colour_video,
    frame_at,
    ignore_progress,
    options,
)

ENCODED: dict[str, np.ndarray] = {}


@pytest.fixture
def alpha_module(monkeypatch):
    """talkstack.media.alpha with encoders that keep the frames they are given."""
    from talkstack.media import alpha

    module = types.ModuleType("talkstack.media.alpha")
    read_mask_frames = alpha.read_mask_frames

    def encoder(kind: str):
        def encode(frames, fps: float, path: Path, audio: Path | None = None) -> Path:
            ENCODED[kind] = np.stack(list(frames))
            path.write_bytes(b"stand-in")
            return path

        return encode

    module.read_mask_frames = read_mask_frames  # type: ignore[attr-defined]
    module.encode_alpha_webm = encoder("webm")  # type: ignore[attr-defined]
    module.encode_prores4444 = encoder("mov")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "talkstack.media.alpha", module)
    ENCODED.clear()
    return module


def _half_mask(path: Path, seconds: float) -> Path:
    """A grey mask video, 160×120 like the render: white (the person) on its left half."""
    subprocess.run(
        [
            ffmpeg_exe(), "-y", "-loglevel", "error",
            "-f", "lavfi", "-i", f"color=c=black:s=160x120:r=25:d={seconds}",
            "-vf", "drawbox=x=0:y=0:w=80:h=120:color=white:t=fill", "-c:v", "libx264", "-pix_fmt", "yuv420p",
            str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


LAYOUT = {"type": "background", "position": "center", "scale": 0.8}
BLUE = "#0000C8"


def _scene(**fields):
    return avatar(layout=LAYOUT, background={"colour": BLUE}, **fields) | {"mask": True}


def test_the_person_is_cut_out_over_the_scene_background(tmp_path, alpha_module):
    render = colour_video(tmp_path / "render.mp4", 1.0, "red", tone_hz=None)
    mask = _half_mask(tmp_path / "mask.mp4", 1.0)
    composed = compose_video(
        options([_scene()]),
        {"scene_0_video": render, "scene_0_mask": mask},
        tmp_path / "out",
        ignore_progress,
        watermark=False,
    )
    frame = frame_at(composed.outputs["video"], 12).astype(int)
    box = place(Layout.model_validate(LAYOUT), WIDTH, HEIGHT, 160, 120, cutout=True).box
    assert box.bottom == HEIGHT  # a cut-out person stands on the bottom edge
    y = box.y + box.h // 2
    person = frame[y, box.x + 4 : box.x + box.w // 2 - 4]
    behind = frame[y, box.x + box.w // 2 + 4 : box.right - 4]
    assert (person[:, 0] > 170).all() and (person[:, 2] < 80).all()  # the person (red)
    assert (behind[:, 2] > 150).all() and (behind[:, 0] < 80).all()  # the background shows through


def test_transparent_output_is_opaque_over_the_person_and_the_overlays_only(tmp_path, alpha_module):
    render = colour_video(tmp_path / "render.mp4", 1.0, "red", tone_hz=None)
    mask = _half_mask(tmp_path / "mask.mp4", 1.0)
    opts = options(
        [_scene(overlays=[{"type": "text", "text": "Hi", "position": "top_left"}])],
        options={"transparent": True},
    )
    composed = compose_video(
        opts,
        {"scene_0_video": render, "scene_0_mask": mask},
        tmp_path / "out",
        ignore_progress,
        watermark=False,
    )
    assert composed.outputs["video_webm"].name == "video.webm"
    assert composed.outputs["video_mov"].name == "video.mov"
    frames = ENCODED["webm"]
    assert frames.shape == (composed.frames, HEIGHT, WIDTH, 4)
    assert np.array_equal(frames, ENCODED["mov"])  # both files from the same frames
    alpha = frames[12, ..., 3]
    box = place(Layout.model_validate(LAYOUT), WIDTH, HEIGHT, 160, 120, cutout=True).box
    y = box.y + box.h // 2
    assert (alpha[y, box.x + 4 : box.x + box.w // 2 - 4] > 240).all()  # the person: opaque
    assert (alpha[y, box.x + box.w // 2 + 4 : box.right - 4] < 15).all()  # beside them: transparent
    assert alpha[HEIGHT - 2, WIDTH - 2] == 0 and alpha[HEIGHT - 2, 1] == 0  # corners
    assert alpha[: HEIGHT // 3, : WIDTH // 3].max() == 255  # the overlay stays
    assert np.allclose(frames[12, y, box.x + 10, :3], (254, 0, 0), atol=25)  # colour where opaque


def test_a_still_image_is_cut_out_by_its_one_frame_mask_for_the_whole_scene(tmp_path):
    """The matte step gives a still image a one-frame mask (docs/backgrounds.md); it holds for
    every frame of the scene, read by the matting side's own reader (talkstack.media.alpha)."""
    from talkstack.media.alpha import write_mask_video
    from tests.unit.compose.compose_media import media, solid_image

    photo = solid_image(tmp_path / "photo.png", (255, 0, 0), size=(160, 120))
    half = np.zeros((120, 160), np.float32)
    half[:, :80] = 1.0
    mask = write_mask_video([half], 25, tmp_path / "mask.mp4")
    layout = LAYOUT | {"cutout": True}  # an image is cut out only when asked
    scene = media("photo.png", layout=layout, background={"colour": BLUE}, duration_s=2) | {"mask": True}
    composed = compose_video(
        options([scene]),
        {"scene_0_media": photo, "scene_0_mask": mask},
        tmp_path / "out",
        ignore_progress,
        watermark=False,
    )
    assert composed.warnings == []
    box = place(Layout.model_validate(LAYOUT), WIDTH, HEIGHT, 160, 120, cutout=True).box
    assert box.bottom == HEIGHT  # a cut-out person stands on the bottom edge
    y = box.y + box.h // 2
    for index in (0, composed.frames // 2, composed.frames - 1):
        frame = frame_at(composed.outputs["video"], index).astype(int)
        person = frame[y, box.x + 4 : box.x + box.w // 2 - 4]
        behind = frame[y, box.x + box.w // 2 + 4 : box.right - 4]
        assert (person[:, 0] > 170).all() and (person[:, 2] < 80).all(), index  # the person (red)
        assert (behind[:, 2] > 150).all() and (behind[:, 0] < 80).all(), index  # the background


def test_a_failed_transparent_render_leaves_no_alpha_video_and_no_encoder_running(tmp_path):
    """The render fails part-way: the WebM and MOV encoders (talkstack.media.alpha, real ffmpeg)
    stop without writing a truncated file under its final name, and their threads end."""
    import threading

    render = colour_video(tmp_path / "render.mp4", 2.0, "red", tone_hz=None)
    mask = _half_mask(tmp_path / "mask.mp4", 2.0)
    opts = options([_scene()], options={"transparent": True})
    before = threading.active_count()

    def progress(fraction: float, message: str) -> None:
        if message.startswith("frame ") and int(message.split()[1]) >= 20:
            raise RuntimeError("the worker was stopped")

    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="stopped"):
        compose_video(opts, {"scene_0_video": render, "scene_0_mask": mask}, out, progress, watermark=False)
    assert not [p.name for p in out.iterdir() if p.suffix in (".webm", ".mov")]
    assert threading.active_count() == before


def test_transparent_outputs_carry_the_watermark_like_the_mp4(tmp_path, alpha_module, monkeypatch):
    """video.webm and video.mov are published videos too: their colour is the marked frame that
    video.mp4 gets (docs/safety.md: every published video carries the mark)."""
    import talkstack.compose.render as render_module

    def tagging_marker(watermark: bool):
        def mark(frame: np.ndarray) -> np.ndarray:
            marked = frame.copy()
            marked[0, 0] = (1, 2, 3) if watermark else marked[0, 0]
            return marked

        return mark

    monkeypatch.setattr(render_module, "_marker", tagging_marker)
    render = colour_video(tmp_path / "render.mp4", 1.0, "red", tone_hz=None)
    mask = _half_mask(tmp_path / "mask.mp4", 1.0)
    opts = options([_scene()], options={"transparent": True})
    compose_video(
        opts,
        {"scene_0_video": render, "scene_0_mask": mask},
        tmp_path / "out",
        ignore_progress,
        watermark=True,
    )
    for encoded in (ENCODED["webm"], ENCODED["mov"]):
        assert (encoded[:, 0, 0, :3] == (1, 2, 3)).all()
