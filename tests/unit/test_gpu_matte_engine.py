"""The vitmatte engine end to end on CPU with a tiny random ViTMatte (built from a config, no
weights): the real transformers class, the real trimap from lite-matte's mask, the mask video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from talkstack.engines.gpu import matte as gpu_matte
from talkstack.engines.gpu.matte import MatteEngine, trimap
from talkstack.engines.lite.face import detect_faces
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.alpha import read_mask_frames
from talkstack.media.video import Mp4Writer, iter_frames, probe_video
from tests.conftest import PORTRAIT
from tests.support.matte import matte_task, tiny_vitmatte

SIZE = 192
FRAMES = 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The portrait at 192×192 drifting a pixel a frame: 10 frames, 25 fps."""
    from PIL import Image

    rgb = np.asarray(Image.open(PORTRAIT).convert("RGB").resize((SIZE + FRAMES, SIZE)))
    path = tmp_path_factory.mktemp("vitmatte") / "clip.mp4"
    with Mp4Writer(path, SIZE, SIZE, 25) as out:
        for i in range(FRAMES):
            out.write(np.ascontiguousarray(rgb[:, i : i + SIZE]))
    return path


@pytest.fixture(scope="module")
def engine() -> MatteEngine:
    engine = MatteEngine("vitmatte", matting_model=tiny_vitmatte(), device="cpu")
    engine.load()
    return engine


def test_trimap_has_sure_regions_and_a_band_between() -> None:
    mask = np.zeros((100, 100), np.float32)
    mask[20:80, 30:70] = 1.0
    tri = trimap(mask)
    assert set(np.unique(tri)) == {0, 128, 255}
    assert tri[50, 50] == 255 and tri[2, 2] == 0
    assert tri[20, 50] == 128 and tri[50, 30] == 128  # the outline itself is undecided


def test_engine_renders_a_mask_video_through_the_model(
    engine: MatteEngine, clip: Path, tmp_path: Path, monkeypatch
):
    monkeypatch.setattr(gpu_matte, "BATCH", 4)  # 10 frames: batches of 4, 4 and 2
    before = engine.batches
    outputs, result = engine(matte_task("vitmatte"), {"video": clip}, tmp_path, lambda f, m: None)

    assert engine.batches - before == 3
    info, source = probe_video(outputs["mask"]), probe_video(clip)
    assert (info.width, info.height, info.fps, info.frames) == (SIZE, SIZE, source.fps, FRAMES)
    assert result.frames == FRAMES and result.output == outputs["mask"]
    masks = list(read_mask_frames(outputs["mask"]))
    assert len(masks) == FRAMES
    x0, y0, x1, y1 = max(detect_faces(next(iter_frames(clip))), key=lambda f: f.area).box
    qw, qh = (x1 - x0) / 4, (y1 - y0) / 4
    for i, mask in enumerate(masks):
        # The trimap's sure regions stand whatever the (random) model says: the face is the person
        # (the central half of the face oval, which moves a pixel left a frame), the top corners
        # are wall.
        face = slice(int(y0 + qh), int(y1 - qh)), slice(int(x0 + qw) - i, int(x1 - qw) - i)
        assert mask[face].min() > 0.95, f"frame {i}"
        assert mask[:10, :10].max() < 0.05 and mask[:10, -10:].max() < 0.05
    # Inside the band the model decided: an untrained ViTMatte answers about 0.5 everywhere, which
    # the coarse mask (a smooth edge, mostly 0 or 1) would not.
    band = trimap(masks[0]) == 128
    assert band.any()
    assert np.mean(np.abs(masks[0][band] - 0.5) < 0.1) > 0.5


def test_engine_mattes_a_still_image(engine: MatteEngine, tmp_path: Path) -> None:
    outputs, result = engine(matte_task("vitmatte"), {"video": PORTRAIT}, tmp_path, lambda f, m: None)
    masks = list(read_mask_frames(outputs["mask"]))
    assert result.frames == len(masks) == 1 and masks[0].shape == (512, 512)


def test_engine_without_weights_names_the_folder(tmp_path: Path) -> None:
    engine = MatteEngine("vitmatte", weights_dir=tmp_path, device="cpu")
    with pytest.raises(TalkstackError) as info:
        engine.load()
    assert info.value.code == ErrorCode.MODEL_UNAVAILABLE
    assert str(tmp_path / "hustvl" / "vitmatte-small-composition-1k") in info.value.message


class _Recording:
    """Wraps the model: keeps each `pixel_values` it is given and the alphas it answers."""

    def __init__(self, net) -> None:
        self.net, self.inputs, self.alphas = net, [], []

    def __call__(self, pixel_values):
        out = self.net(pixel_values=pixel_values)
        self.inputs.append(pixel_values.clone())
        self.alphas.append(out.alphas.clone())
        return out

    def to(self, **kwargs):
        self.net = self.net.to(**kwargs)
        return self

    def eval(self):
        return self


def test_the_model_gets_what_transformers_image_processor_makes_and_its_alpha_cropped_back() -> None:
    """Our batching builds ViTMatte's input by hand: it must be exactly what transformers'
    VitMatteImageProcessor makes of the same frame and trimap (image rescaled and normalised,
    the trimap as a fourth channel in 0..1, both padded bottom-right to a multiple of 32), and the
    alpha must be the model's answer for the frame's own pixels (the padding cropped off)."""
    import torch
    from transformers import VitMatteImageProcessor

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)  # neither side a multiple of 32
    tri = np.full((70, 90), 128, np.uint8)
    tri[:20], tri[50:] = 0, 255
    recording = _Recording(tiny_vitmatte())
    engine = MatteEngine("vitmatte", matting_model=recording, device="cpu", coarse=lambda: None)  # type: ignore[arg-type,return-value]
    engine.load()

    [(alpha, band)] = engine._matte_batch([(frame, tri)])

    expected = VitMatteImageProcessor()(images=frame, trimaps=tri, return_tensors="pt").pixel_values
    assert recording.inputs[0].shape == expected.shape == (1, 4, 96, 96)
    torch.testing.assert_close(recording.inputs[0], expected, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(band, tri == 128)
    model_alpha = recording.alphas[0][0, 0, :70, :90].numpy()
    np.testing.assert_allclose(alpha[band], model_alpha[band], atol=1e-6)
    assert (alpha[tri == 255] == 1.0).all() and (alpha[tri == 0] == 0.0).all()


def test_the_weights_download_holds_what_transformers_saves_and_the_engine_loads(tmp_path: Path) -> None:
    """What transformers' save_pretrained writes for a ViTMatte is what the catalogue downloads and
    requires (no second format), and a folder of just those files loads into the engine."""
    import fnmatch
    import shutil

    from talkstack.engines.gpu.weights import paths_for, specs_for

    [spec] = specs_for(["vitmatte"])
    saved = tmp_path / "saved"
    tiny_vitmatte().save_pretrained(saved)
    written = {p.name for p in saved.iterdir()}
    assert written == set(spec.required)
    folder = paths_for("vitmatte", tmp_path / "volume")["model"]
    folder.mkdir(parents=True)
    for name in written:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in spec.allow_patterns), name
        shutil.copy(saved / name, folder / name)
    assert not any(fnmatch.fnmatch("pytorch_model.bin", pattern) for pattern in spec.allow_patterns)

    engine = MatteEngine("vitmatte", weights_dir=tmp_path / "volume", device="cpu")
    engine.load()
    assert type(engine.net).__name__ == "VitMatteForImageMatting"
