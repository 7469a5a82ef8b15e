"""The Python client and `talkstack api …` against the local stack's REST API over real HTTP: uploads
through pre-signed URLs into the emulated S3, a real avatar job through the state machine and the
worker pool, and the outputs downloaded from their pre-signed URLs. Nothing is mocked.
"""

from __future__ import annotations

import json
import re

import pytest
import soundfile as sf
from typer.testing import CliRunner

from talkstack.api.models import JobList, JobView
from talkstack.cli import app
from talkstack.client import ApiError, TalkstackClient
from talkstack.errors import ErrorCode
from talkstack.media.video import probe_video

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def api_key(pipeline) -> str:
    return pipeline.api_key("enterprise", "python-client")


@pytest.fixture
def client(pipeline, api_key):
    with TalkstackClient(pipeline.api_url, api_key, timeout=60) as client:
        yield client


def cli_env(pipeline, key: str) -> dict[str, str]:
    return {"TALKSTACK_API_URL": pipeline.api_url, "TALKSTACK_API_KEY": key}


def test_upload_generate_wait_and_download_an_avatar(client, media, tmp_path):
    assert client.health().status == "ok"
    image, audio = client.upload(media["portrait"]), client.upload(media["speech"])
    assert re.fullmatch(r"upl_[a-z0-9]{24}", image) and image != audio

    accepted = client.generate_avatar({"inputs": {"image": image, "audio": audio}})
    assert accepted.task == "avatar" and accepted.status == "queued"
    seen: list[JobView] = []
    job = client.wait(accepted.job_id, on_progress=seen.append, timeout=240, poll=0.2)

    assert job.status == "completed", job.error
    progress = [j.progress for j in seen]
    assert progress == sorted(progress), progress  # never goes back
    assert any(0 < p < 1 for p in progress), progress  # a running job reports progress
    assert seen[-1].status == "completed" and progress[-1] == 1.0

    files = client.download(job, tmp_path / "out")
    videos = [f for f in files if f.suffix == ".mp4"]
    assert len(videos) == 1
    info = probe_video(videos[0])
    assert info.video_streams == 1 and info.audio_streams == 1
    speech_s = sf.info(str(media["speech"])).duration
    assert abs(speech_s - 13.54) < 0.05  # the sample the duration is checked against
    assert abs(info.duration_s - speech_s) <= 0.5, (info.duration_s, speech_s)
    assert videos[0].stat().st_size == next(o.bytes for o in job.result.outputs if o.kind == "video")

    listed = client.list_jobs(status="completed", limit=100)
    assert accepted.job_id in [j.job_id for j in listed.jobs]
    assert client.get_job(accepted.job_id).status == "completed"


def test_a_retried_generation_with_the_same_key_returns_the_same_job(client, media):
    image, audio = client.upload(media["portrait"]), client.upload(media["speech_5s"])
    body = {"inputs": {"image": image, "audio": audio}}
    first = client.generate_avatar(body, idempotency_key="retry-me-1")
    again = client.generate_avatar(body, idempotency_key="retry-me-1")
    assert again.job_id == first.job_id
    assert client.wait(first.job_id, timeout=240, poll=0.2).status == "completed"


def test_api_errors_arrive_parsed(client, pipeline):
    with pytest.raises(ApiError) as caught:
        client.get_job("avatar-does-not-exist")
    assert (caught.value.status, caught.value.code) == (404, ErrorCode.NOT_FOUND)

    with pytest.raises(ApiError) as caught:
        client.generate_avatar({"inputs": {"image": "portrait.png", "text": "Hi"}})
    assert caught.value.status == 400 and caught.value.code is ErrorCode.INVALID_REQUEST
    assert "inputs.image" in caught.value.message

    stranger = TalkstackClient(pipeline.api_url, "tsk_000000000000_" + "0" * 32)
    with stranger, pytest.raises(ApiError) as caught:
        stranger.models()
    assert (caught.value.status, caught.value.code) == (401, ErrorCode.UNAUTHORIZED)


def test_cli_submit_uploads_follows_and_downloads(pipeline, api_key, media, tmp_path):
    result = runner.invoke(
        app,
        [
            "api",
            "submit",
            "--image",
            str(media["portrait"]),
            "--audio",
            str(media["speech_5s"]),
            "-o",
            str(tmp_path),
        ],
        env=cli_env(pipeline, api_key),
    )
    assert result.exit_code == 0, result.output
    job_id = re.search(r"submitted (\S+)", result.output).group(1)
    assert f"completed {job_id}" in result.output
    videos = list(tmp_path.glob("*.mp4"))
    assert len(videos) == 1, result.output
    info = probe_video(videos[0])
    assert info.audio_streams == 1 and abs(info.duration_s - 5.0) <= 0.5

    status = runner.invoke(app, ["api", "status", job_id, "--json"], env=cli_env(pipeline, api_key))
    assert status.exit_code == 0, status.output
    assert JobView.model_validate_json(status.stdout).status == "completed"


def test_cli_submit_a_manifest_uploads_its_relative_media_and_keeps_text(pipeline, api_key, media, tmp_path):
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "face.png").write_bytes(media["portrait"].read_bytes())
    manifest = {"task": "avatar", "inputs": {"image": "face.png", "text": "Hello from the REST API."}}
    (folder / "job.json").write_text(json.dumps(manifest))
    result = runner.invoke(
        app,
        ["api", "submit", str(folder / "job.json"), "-o", str(tmp_path / "out")],
        env=cli_env(pipeline, api_key),
    )
    assert result.exit_code == 0, result.output
    assert "uploading" in result.output and "face.png" in result.output
    video = tmp_path / "out" / "video.mp4"
    assert probe_video(video).audio_streams == 1


def test_cli_no_wait_cancel_and_jobs(pipeline, media):
    env = cli_env(pipeline, pipeline.api_key("pro", "cli-cancel"))
    submitted = runner.invoke(
        app, ["api", "submit", "-i", str(media["portrait"]), "-a", str(media["speech"]), "--no-wait"], env=env
    )
    assert submitted.exit_code == 0, submitted.output
    job_id = re.search(r"submitted (\S+)", submitted.output).group(1)
    cancelled = runner.invoke(app, ["api", "cancel", job_id], env=env)
    assert cancelled.exit_code == 0, cancelled.output
    assert f"{job_id}: cancelled" in cancelled.output

    listed = runner.invoke(app, ["api", "jobs", "--status", "cancelled", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert [j.job_id for j in JobList.model_validate_json(listed.stdout).jobs] == [job_id]
    table = runner.invoke(app, ["api", "jobs"], env=env)
    assert table.exit_code == 0 and job_id in table.output
    again = runner.invoke(app, ["api", "cancel", job_id], env=env)  # cancelling twice answers the same
    assert again.exit_code == 0, again.output
    pipeline.stack.wait_for_execution(job_id)


def test_cli_status_of_an_unknown_job_fails_with_not_found(pipeline, api_key):
    result = runner.invoke(app, ["api", "status", "avatar-nope"], env=cli_env(pipeline, api_key))
    assert result.exit_code != 0
    assert "NOT_FOUND" in result.output


def test_cli_submit_of_a_failing_job_exits_non_zero_with_its_code(pipeline, api_key, media, tmp_path):
    result = runner.invoke(
        app,
        [
            "api",
            "submit",
            "-i",
            str(media["no_face"]),
            "-a",
            str(media["speech_5s"]),
            "-o",
            str(tmp_path),
            "--consent-subject",
            "Grace Subject",
        ],
        env=cli_env(pipeline, api_key),
    )
    assert result.exit_code == 2, result.output
    assert "error [NO_FACE_DETECTED]" in result.output
    assert not list(tmp_path.iterdir())
