"""The CLI as users run it: real subprocesses of the installed `talkstack` entry point; `status`
in process, its stack (or API) played by a stand-in that holds one job record."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from talkstack.api.models import JobView, ResultView
from talkstack.api.service import links
from talkstack.cli import app, remote
from talkstack.cli import stack as stack_cli
from talkstack.contract.record import JobRecord, JobResult, OutputFile
from talkstack.media.video import probe_video
from tests.support.steps import avatar_request, quality_report

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


# --- status: the quality report (in process: the job's record from a stand-in for the stack) --------


def _completed_avatar(report) -> JobRecord:
    record = JobRecord.new("job-1", avatar_request())
    record.start_step("avatar")
    record.finish_step("avatar")
    video = OutputFile(kind="video", bucket="out", key="job-1/video.mp4", content_type="video/mp4", bytes=10)
    warning = "chunk 1 was rendered again: … and was stitched anyway"
    return record.mark_completed(JobResult(outputs=[video], warnings=[warning], quality=report))


def _check_rows(output: str) -> dict[str, list[str]]:
    """The rows of the checks table, by check name (the words of each line)."""
    names = {"lipsync", "identity", "colour", "frames", "av_sync"}
    return {words[0]: words for words in map(str.split, output.splitlines()) if words and words[0] in names}


def test_status_shows_the_quality_report_as_a_table_of_checks(monkeypatch):

    record = _completed_avatar(quality_report(lipsync=0.12, colour_drift=2.0))
    monkeypatch.setattr(stack_cli, "_connect", lambda resources: SimpleNamespace(get=lambda job_id: record))

    result = CliRunner().invoke(app, ["status", "job-1"], env={"COLUMNS": "120"})

    assert result.exit_code == 0, result.output
    assert "quality   failed" in result.output and "50/50 frames" in result.output
    rows = _check_rows(result.output)
    assert rows["lipsync"] == ["lipsync", "0.12", "≥", "0.3", "FAIL"]
    assert rows["colour"] == ["colour", "2", "≤", "6", "pass"]
    assert "warning: chunk 1 was rendered again" in result.output


def test_api_status_shows_the_quality_report_too(monkeypatch):

    record = _completed_avatar(quality_report(lipsync=0.7))
    result_view = ResultView.model_validate(
        {**record.result.model_dump(exclude={"outputs", "held"}), "outputs": []}
    )
    job = JobView.of(record, result_view, links("job-1"))

    @contextmanager
    def client(url, key):
        yield SimpleNamespace(get_job=lambda job_id: job)

    monkeypatch.setattr(remote, "_client", client)
    result = CliRunner().invoke(app, ["api", "status", "job-1", "--key", "k"], env={"COLUMNS": "120"})

    assert result.exit_code == 0, result.output
    assert "quality   passed" in result.output
    assert _check_rows(result.output)["lipsync"] == ["lipsync", "0.7", "≥", "0.3", "pass"]


def test_status_of_a_job_without_a_report_shows_none(monkeypatch):

    record = _completed_avatar(None)
    monkeypatch.setattr(stack_cli, "_connect", lambda resources: SimpleNamespace(get=lambda job_id: record))

    result = CliRunner().invoke(app, ["status", "job-1"])

    assert result.exit_code == 0, result.output
    assert "quality" not in result.output


def test_render_runs_the_moderation_policy_before_any_engine(tmp_path, monkeypatch):
    """`talkstack render` refuses a blocked text with the pipeline's code, writing nothing; the
    operator's own policy (TALKSTACK_MODERATION_POLICY) decides what counts as blocked."""
    from talkstack.cli import app
    from talkstack.safety.policy import DEFAULT_POLICY_PATH
    from talkstack.settings.moderation import get_moderation_settings

    out = tmp_path / "v.wav"
    args = ["render", "voice", "--text", "Now kill yourself.", "-o", str(out)]
    monkeypatch.delenv("TALKSTACK_MODERATION_POLICY", raising=False)
    get_moderation_settings.cache_clear()
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "error [CONTENT_REFUSED]" in refused.output
    assert "category harassment" in refused.output and not out.exists()

    policy = json.loads(DEFAULT_POLICY_PATH.read_text())
    policy["categories"] = [c for c in policy["categories"] if c["id"] != "harassment"]
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    monkeypatch.setenv("TALKSTACK_MODERATION_POLICY", str(tmp_path / "policy.json"))
    get_moderation_settings.cache_clear()
    allowed = CliRunner().invoke(app, args)
    get_moderation_settings.cache_clear()
    assert allowed.exit_code == 0, allowed.output
    assert out.stat().st_size > 1000
