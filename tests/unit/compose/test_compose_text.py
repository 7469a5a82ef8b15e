"""Text overlays: their pixels appear where the layout puts them (a frame with the overlay
compared with the same frame without it), inside the safe area; long text wraps and shrinks."""

from __future__ import annotations

import numpy as np
import pytest

from talkstack.compose.layout import safe_area
from talkstack.compose.render import compose_video
from talkstack.compose.text import OverlayPainter
from talkstack.contract.composition import TextOverlay
from tests.unit.compose.compose_media import HEIGHT, WIDTH, frame_at, ignore_progress, options, title

GREY = "#404040"


def _overlay_pixels(
    overlays: list[dict], t: float = 0.5, width: int = WIDTH, height: int = HEIGHT
) -> np.ndarray:
    painter = OverlayPainter([TextOverlay.model_validate(o) for o in overlays], width, height, 3.0)
    canvas = np.full((height, width, 3), 64, np.uint8)
    plain = canvas.copy()
    painter.draw(canvas, t)
    return np.abs(canvas.astype(int) - plain.astype(int)).max(axis=2) > 20


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_a_lower_third_sits_at_the_bottom_left_inside_the_safe_area_in_the_encoded_video(tmp_path):
    overlay = {"type": "lower_third", "text": "Ada Lovelace", "secondary": "Analyst", "accent": "#FFD400"}
    with_text = options([title("x", duration_s=1, background={"colour": GREY}, overlays=[overlay])])
    without = options([title("x", duration_s=1, background={"colour": GREY})])
    one = compose_video(with_text, {}, tmp_path / "a", ignore_progress, watermark=False)
    two = compose_video(without, {}, tmp_path / "b", ignore_progress, watermark=False)
    a, b = frame_at(one.outputs["video"], 12), frame_at(two.outputs["video"], 12)
    changed = np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 40
    x0, y0, x1, y1 = _bbox(changed)
    safe = safe_area(WIDTH, HEIGHT)
    assert x0 >= safe.x - 1 and y1 <= safe.bottom + 1  # inside the margins...
    assert x0 <= safe.x + 2 and y1 >= safe.bottom - 2  # ...at their bottom-left corner
    assert x1 < WIDTH * 0.7 and y0 > HEIGHT * 0.5
    # The accent bar: yellow along the panel's left edge.
    bar = a[(y0 + y1) // 2, x0 + 1]
    assert bar[0] > 180 and bar[1] > 150 and bar[2] < 90


def test_a_title_is_centred_on_the_upper_third():
    mask = _overlay_pixels([{"type": "title", "text": "Quarterly results"}])
    x0, y0, x1, y1 = _bbox(mask)
    assert abs((x0 + x1) / 2 - WIDTH / 2) <= 3
    assert abs((y0 + y1) / 2 - HEIGHT * 0.3) <= HEIGHT * 0.06


def _bright(overlays: list[dict], t: float) -> int:
    painter = OverlayPainter([TextOverlay.model_validate(o) for o in overlays], WIDTH, HEIGHT, 3.0)
    canvas = np.full((HEIGHT, WIDTH, 3), 64, np.uint8)
    painter.draw(canvas, t)
    return int((canvas.min(axis=2) > 180).sum())  # white text pixels (the panel is dark)


def test_bullets_are_revealed_one_by_one():
    bullets = [{"type": "bullets", "items": ["One", "Two", "Three"], "start_s": 0.0, "end_s": 3.0}]
    shown = [_bright(bullets, t) for t in (0.5, 1.5, 2.5)]
    assert 0 < shown[0] < shown[1] < shown[2]


def test_overlays_fade_in_when_they_start_later():
    late = [{"type": "text", "text": "Hello", "start_s": 1.0}]
    assert not _overlay_pixels(late, 0.9).any()
    assert 0 < _overlay_pixels(late, 1.05).sum() < _overlay_pixels(late, 1.5).sum()


def test_long_text_wraps_and_shrinks_to_the_safe_width():
    long = "A remarkably long headline that could never fit on one line of a small canvas " * 3
    mask = _overlay_pixels([{"type": "title", "text": long}])
    x0, _, x1, _ = _bbox(mask)
    safe = safe_area(WIDTH, HEIGHT)
    assert x0 >= safe.x - 3 and x1 <= safe.right + 3


@pytest.mark.parametrize(("width", "height"), [(640, 360), (360, 640), (480, 480)])
@pytest.mark.parametrize("style", ["classic", "highlight"])
def test_text_overlays_stay_above_burnt_in_captions(style, width, height):
    """A lower third or a bottom text panel sits where two-line captions would be drawn; over a
    captioned scene the overlays keep above the captions' highest row (CaptionOverlay.top)."""
    from talkstack.compose.captions import CaptionOverlay, Cue
    from talkstack.contract.captions import WordTiming
    from talkstack.contract.composition import Captions

    text = "Wide captions that surely need two full lines of text here"
    words = [WordTiming(word=w, start_s=i * 0.1, end_s=i * 0.1 + 0.1) for i, w in enumerate(text.split())]
    cue = Cue(0.0, 2.0, "Wide captions that surely need\ntwo full lines of text here", words)
    captions = CaptionOverlay(Captions(burn_in=style, max_line_chars=30), width, height, [cue])
    layer = captions.frame(0.05)
    assert layer is not None
    drawn_top = int(np.flatnonzero(layer[..., 3].max(axis=1) > 0)[0])
    assert captions.top <= drawn_top  # `top` bounds what is drawn

    for overlay in (
        {"type": "lower_third", "text": "Eileen Collins", "secondary": "Commander"},
        {"type": "text", "text": "Free text at the bottom"},
    ):
        drawn = [TextOverlay.model_validate(overlay)]
        painter = OverlayPainter(drawn, width, height, 3.0, above=captions.top)
        box = painter.sprite(0).box
        assert box.bottom <= captions.top, (overlay["type"], box, captions.top)
        assert box.y >= safe_area(width, height).y


def test_bullets_with_an_end_past_the_scene_are_all_revealed_before_it_ends():
    items = ["One", "Two", "Three", "Four"]
    overlay = TextOverlay.model_validate({"type": "bullets", "items": items, "end_s": 30})
    painter = OverlayPainter([overlay], WIDTH, HEIGHT, 3.0)  # the scene lasts 3 s
    ((sprite, opacity),) = painter.showing(2.9)
    assert sprite is painter.sprite(0, len(items)) and opacity == 1.0
