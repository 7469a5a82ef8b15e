"""Layouts: the source's pixels land in the rectangle the layout computes (the frame compared
with the background-only frame), in its outline, and inside the safe margins."""

from __future__ import annotations

import numpy as np
import pytest

from talkstack.compose.layout import place, safe_area
from talkstack.compose.render import compose_video
from talkstack.compose.scenes import SceneRenderer
from talkstack.compose.timeline import build_timeline
from talkstack.contract.composition import Layout
from tests.unit.compose.compose_media import (
    FPS,
    HEIGHT,
    WIDTH,
    colour_video,
    frame_at,
    ignore_progress,
    media,
    options,
    solid_image,
)

BLUE = "#0000C8"
LAYOUTS = {
    "full": {"type": "full"},
    "background": {"type": "background", "position": "left", "scale": 0.6},
    "pip rectangle": {"type": "pip", "position": "top_right", "scale": 0.4},
    "pip circle": {"type": "pip", "position": "bottom_left", "scale": 0.5, "shape": "circle"},
    "pip rounded": {"type": "pip", "position": "center", "scale": 0.5, "shape": "rounded"},
    "split": {"type": "split", "side": "right"},
}


def _changed(frame: np.ndarray, background: np.ndarray) -> np.ndarray:
    return np.abs(frame.astype(int) - background.astype(int)).max(axis=2) > 40


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize("name", LAYOUTS)
def test_the_source_lands_in_the_layouts_rectangle(tmp_path, name):
    upload = solid_image(tmp_path / "red.png", (230, 20, 20), size=(200, 150))
    opts = options([media("red.png", layout=LAYOUTS[name], background={"colour": BLUE}, duration_s=1)])
    inputs = {"scene_0_media": upload}
    span = build_timeline(opts.scenes, inputs, FPS).spans[0]
    renderer = SceneRenderer(opts.scenes[0], span, inputs, WIDTH, HEIGHT)
    frame, _ = renderer.frame(0.5)
    background = renderer.backdrop.frame(0.5)
    box = place(Layout.model_validate(LAYOUTS[name]), WIDTH, HEIGHT, 200, 150).box

    changed = _changed(frame, background)
    x0, y0, x1, y1 = _bbox(changed)
    assert abs(x0 - box.x) <= 1 and abs(y0 - box.y) <= 1
    assert abs(x1 - box.right) <= 1 and abs(y1 - box.bottom) <= 1
    assert np.allclose(frame[box.y + box.h // 2, box.x + box.w // 2], (230, 20, 20), atol=3)
    if name == "pip circle":  # the disc's corners show the background; its edge is blended
        assert not changed[box.y + 1, box.x + 1] and changed[box.y + box.h // 2, box.x + 1]
        red = frame[box.y : box.bottom, box.x : box.right, 0].astype(int)
        between = (red > 30) & (red < 200)  # edge pixels partly red, partly blue: anti-aliased
        assert between.sum() > 0.5 * np.pi * box.w
    elif name == "pip rounded":
        assert not changed[box.y, box.x] and changed[box.y + box.h // 2, box.x]
    else:
        assert changed[box.y : box.bottom, box.x : box.right].mean() > 0.99


def test_placed_sources_stay_inside_the_safe_area():
    for name in ("pip rectangle", "pip circle", "pip rounded"):
        box = place(Layout.model_validate(LAYOUTS[name]), WIDTH, HEIGHT, 200, 150).box
        safe = safe_area(WIDTH, HEIGHT)
        assert safe.x <= box.x and box.right <= safe.right and safe.y <= box.y and box.bottom <= safe.bottom


def test_portrait_canvases_keep_a_bigger_bottom_margin_for_the_apps_buttons():
    safe = safe_area(720, 1280)
    assert 1280 - safe.bottom > 2 * safe.y
    landscape = safe_area(1280, 720)
    assert 720 - landscape.bottom == landscape.y


def test_split_halves_are_top_and_bottom_on_a_portrait_canvas():
    box = place(Layout(type="split", side="left"), 360, 640, 200, 150).box
    assert (box.x, box.y, box.w, box.h) == (0, 0, 360, 320)


def test_a_video_source_in_a_layout_reaches_the_encoded_frames(tmp_path):
    clip = colour_video(tmp_path / "clip.mp4", 1.0, "red", tone_hz=None)
    layout = LAYOUTS["pip rectangle"]
    opts = options([media("clip.mp4", layout=layout, background={"colour": BLUE})])
    composed = compose_video(
        opts, {"scene_0_media": clip}, tmp_path / "out", ignore_progress, watermark=False
    )
    frame = frame_at(composed.outputs["video"], 12)
    box = place(Layout.model_validate(layout), WIDTH, HEIGHT, 160, 120).box
    inside = frame[box.y + 3 : box.bottom - 3, box.x + 3 : box.right - 3].reshape(-1, 3).mean(axis=0)
    outside = frame[box.bottom + 3 :, : box.x - 3].reshape(-1, 3).mean(axis=0)
    assert inside[0] > 180 and inside[2] < 60  # red (H.264 shifts a solid colour a little)
    assert outside[2] > 150 and outside[0] < 60  # the blue background
