"""The templates' bundled media are what scripts/make_template_assets.py makes.

Regenerating gives images of the same size whose pixels match the committed files to within JPEG
noise (mean difference under one grey level: libjpeg builds may round differently), and a music
loop of the same codec, channels, rate and length; the media stay small."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import numpy as np
from PIL import Image

from talkstack.templates.assets import MEDIA_DIR

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_template_assets.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_template_assets", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _audio(path: Path) -> tuple[str, int, int, float, float]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = [frame.to_ndarray() for frame in container.decode(audio=0)]
        pcm = np.concatenate(samples, axis=1)
        return (
            stream.codec_context.name,
            stream.rate,
            stream.channels,
            pcm.shape[1] / stream.rate,
            float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))),
        )


def test_regenerated_assets_match_the_committed_ones(tmp_path):
    written = _script().make_assets(tmp_path)
    committed = sorted(p.name for p in MEDIA_DIR.iterdir())
    assert sorted(written) == committed
    for name, path in written.items():
        if name.endswith(".jpg"):
            fresh, shipped = Image.open(path), Image.open(MEDIA_DIR / name)
            assert fresh.size == shipped.size, name
            diff = np.abs(np.asarray(fresh, np.int16) - np.asarray(shipped, np.int16))
            assert diff.mean() < 1.0, name
    fresh_audio, shipped_audio = _audio(written["music-loop.m4a"]), _audio(MEDIA_DIR / "music-loop.m4a")
    assert fresh_audio[:3] == shipped_audio[:3] == ("aac", 44_100, 2)
    assert abs(fresh_audio[3] - shipped_audio[3]) < 0.05 and abs(shipped_audio[3] - 8.0) < 0.05
    assert abs(fresh_audio[4] - shipped_audio[4]) < 0.01 * shipped_audio[4]  # same loudness
    assert shipped_audio[4] > 0.05  # music, not silence


def test_media_sizes_and_shapes():
    sizes = {p.name: p.stat().st_size for p in MEDIA_DIR.iterdir()}
    assert sum(sizes.values()) < 1_500_000
    assert sizes["music-loop.m4a"] < 300_000
    assert Image.open(MEDIA_DIR / "social-gradient.jpg").size == (720, 1280)  # the 9:16 backdrop
    for name in ("studio.jpg", "slide.jpg", "product.jpg", "news-picture.jpg", "newsroom.jpg"):
        assert Image.open(MEDIA_DIR / name).size == (1280, 720), name
