"""What is published beside the video: the PREVIEW mark (previews only), thumbnails per scene and
of the video, the animated WebP preview, and the preview's card for a clip it did not generate."""

from __future__ import annotations

import numpy as np
from PIL import Image

from talkstack.compose.render import compose_video
from talkstack.contract.composition import COMPOSE_OUTPUTS, scene_thumbnail_role
from tests.unit.compose.compose_media import (
    FPS,
    HEIGHT,
    WIDTH,
    avatar,
    colour_video,
    frame_at,
    ignore_progress,
    media,
    options,
    scene,
    solid_image,
)


def _grey_video(tmp_path, preview: bool):
    upload = solid_image(tmp_path / "grey.png", (90, 90, 90))
    opts = options([media("grey.png", duration_s=1)], preview=preview)
    out = tmp_path / ("preview" if preview else "full")
    return compose_video(opts, {"scene_0_media": upload}, out, ignore_progress, watermark=False)


def test_the_preview_mark_is_drawn_on_previews_only(tmp_path):
    full = frame_at(_grey_video(tmp_path, preview=False).outputs["video"], 10).astype(int)
    preview = frame_at(_grey_video(tmp_path, preview=True).outputs["video"], 10).astype(int)
    centre = (slice(HEIGHT // 3, 2 * HEIGHT // 3), slice(WIDTH // 4, 3 * WIDTH // 4))
    assert np.abs(full[centre] - 90).max() < 12  # nothing on the full render
    marked = np.abs(preview[centre] - full[centre]).max(axis=2) > 25
    assert marked.mean() > 0.05  # translucent letters across the middle
    assert (preview[centre].max(axis=2) < 250).all()  # translucent, not solid white


def test_thumbnails_per_scene_the_videos_thumbnail_and_an_animated_preview(tmp_path):
    red = solid_image(tmp_path / "red.png", (210, 0, 0))
    render = colour_video(tmp_path / "render.mp4", 2.0, "blue", tone_hz=None)
    opts = options(
        [
            media("red.png", duration_s=1.5, transition={"type": "crossfade", "duration_s": 0.3}),
            avatar(layout={"type": "full"}),
        ]
    )
    composed = compose_video(
        opts,
        {"scene_0_media": red, "scene_1_video": render},
        tmp_path / "out",
        ignore_progress,
        watermark=False,
    )
    outputs = composed.outputs
    first = np.asarray(Image.open(outputs[scene_thumbnail_role(0)])).reshape(-1, 3).mean(axis=0)
    second = np.asarray(Image.open(outputs[scene_thumbnail_role(1)])).reshape(-1, 3).mean(axis=0)
    assert first[0] > 180 and second[2] > 180
    assert outputs[scene_thumbnail_role(0)].name == "scene-0.jpg"
    # The video's thumbnail: the middle of the (first) avatar scene.
    thumb = np.asarray(Image.open(outputs["thumbnail"])).reshape(-1, 3).mean(axis=0)
    assert thumb[2] > 180
    webp = outputs["preview"]
    assert webp.name == COMPOSE_OUTPUTS["preview"]
    with Image.open(webp) as animation:
        assert animation.format == "WEBP" and animation.is_animated and animation.n_frames > 1
        assert animation.width <= 480
        colours = set()
        for index in range(animation.n_frames):  # sampled across the whole video: both scenes
            animation.seek(index)
            r, _, b = np.asarray(animation.convert("RGB")).reshape(-1, 3).mean(axis=0)
            colours.add("red" if r > 150 else "blue" if b > 150 else "mixed")
        assert {"red", "blue"} <= colours
    assert composed.frames == round((1.5 + 2.0 - 0.3) * FPS)


def test_a_preview_shows_a_card_naming_a_generated_clips_prompt(tmp_path):
    clip = scene({"type": "video", "inputs": {"prompt": "A red fox running through snow"}}, duration_s=1)
    composed = compose_video(
        options([clip], preview=True), {}, tmp_path / "out", ignore_progress, watermark=False
    )
    frame = frame_at(composed.outputs["video"], 5)
    background = np.array([0x10, 0x18, 0x20])
    text = np.abs(frame.astype(int) - background).max(axis=2) > 80
    assert text.mean() > 0.02  # the card's text
    assert composed.duration_s == 1.0
