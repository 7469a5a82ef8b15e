"""The CLI as users run it: real subprocesses of the installed `talkstack` entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from talkstack.media.video import probe_video

TALKSTACK = str(Path(sys.executable).with_name("talkstack"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TALKSTACK, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("image", "audio", "code"),
    [
        ("missing", "speech_5s", "INPUT_NOT_FOUND"),
        ("portrait", "empty", "EMPTY_INPUT"),
        ("portrait", "text_wav", "UNSUPPORTED_MEDIA"),
        ("portrait", "corrupt_flac", "CORRUPT_MEDIA"),
        ("portrait", "short", "AUDIO_TOO_SHORT"),
        ("bomb_png", "speech_5s", "IMAGE_TOO_LARGE"),
        ("tiny_face", "speech_5s", "FACE_TOO_SMALL"),
    ],
)
def test_bad_input_is_one_line_with_its_code_and_no_traceback(media, tmp_path, image, audio, code):
    image_path = media.get(image, tmp_path / "missing.png")
    proc = run(
        "render", "avatar", "-i", str(image_path), "-a", str(media[audio]), "-o", str(tmp_path / "o.mp4")
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith(f"error [{code}]: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_render_avatar_from_text_chains_voice_then_avatar(media, tmp_path):
    out = tmp_path / "hello.mp4"
    args = ["-i", str(media["portrait"]), "-t", "Hello there.", "-o", str(out), "--resolution", "256p"]
    proc = run("render", "avatar", *args)
    assert proc.returncode == 0, proc.stderr
    info = probe_video(out)
    assert (info.width, info.audio.codec) == (256, "aac") and 0.5 < info.duration_s < 3
    assert (tmp_path / "hello.jpg").exists()
    assert f"wrote {out}" in proc.stdout


def test_render_voice_and_argument_errors(tmp_path):
    proc = run("render", "voice", "--text", "Testing, one, two.", "-o", str(tmp_path / "v.wav"))
    assert proc.returncode == 0 and (tmp_path / "v.wav").stat().st_size > 10_000
    both = run("render", "avatar", "-i", "x.png", "-o", str(tmp_path / "o.mp4"))
    assert both.returncode == 2 and "exactly one of --audio or --text" in both.stderr
    gpu = run("render", "voice", "--text", "hi", "-o", str(tmp_path / "v.wav"), "--model", "chatterbox")
    assert gpu.returncode == 2 and "error [MODEL_UNAVAILABLE]" in gpu.stderr


def test_models_json_lists_every_engine_with_licence():
    proc = run("models", "--json")
    models = {m["id"]: m for m in json.loads(proc.stdout)}
    expected = {
        "lite-avatar",
        "lite-voice",
        "multitalk",
        "infinitetalk",
        "chatterbox",
        "indextts2",
        "ltx-video",
        "wan2.2-ti2v-5b",
    }
    assert expected <= set(models)
    assert models["lite-avatar"]["available"] is True and models["multitalk"]["available"] is False
    assert all(m["licence"] for m in models.values())
