"""A flagged output is not reachable through any output URL until an operator releases it: the real
local stack over HTTP, the real render, the real frame sampling and verdict; only the classifier's
scores are substituted (the FaultPlan's "unsafe_output": the local workers have no classifier)."""

from __future__ import annotations

import json

import httpx
from typer.testing import CliRunner

from talkstack.cli import app
from talkstack.media.video import probe_video
from talkstack.safety.credentials import read_credentials
from tests.integration.test_api import SAMPLES, Api

runner = CliRunner()


def test_a_flagged_output_is_held_until_released(pipeline, tmp_path):
    key = pipeline.api_key("enterprise", "moderation-hold")
    api = Api(pipeline.api_url, key)
    image = api.upload(SAMPLES / "portrait.png", "image/png")
    audio = api.upload(SAMPLES / "speech.wav", "audio/wav")
    body = {"inputs": {"image": image, "audio": audio}, "notify": {"webhook_url": pipeline.hooks.url}}
    pipeline.stack.faults.add_for_key(key.split("_")[1], "avatar", "unsafe_output")
    try:
        accepted = api.post("/v1/avatar/generate", json=body)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        assert pipeline.wait(job_id, timeout_s=120).status == "held"
    finally:
        pipeline.stack.faults.clear()

    # Held: the API shows no result and no links, the output bucket has nothing of the job, and
    # the webhook heard job.held with the scan
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "held" and job["result"] is None, job
    assert not any(job_id in k for k in pipeline.keys(pipeline.r.output_bucket))
    assert set(pipeline.keys(pipeline.r.work_bucket, f"held/{job_id}/")) == {
        f"held/{job_id}/video.mp4",
        f"held/{job_id}/thumbnail.jpg",
    }
    held = json.loads(pipeline.hooks.wait_for(job_id, "job.held").body)
    assert held["scan"]["status"] == "flagged" and held["scan"]["categories"] == ["nsfw"]

    stack = ["--port", str(pipeline.r.port), "--stack", pipeline.r.stack]
    listed = runner.invoke(app, ["moderation", "list", "--json", *stack])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [r["model"] for r in rows if r["job_id"] == job_id] == ["local-fault-plan/unsafe-everything"]

    # Released: the links work and download the video; job.completed reaches the webhook
    released = runner.invoke(app, ["moderation", "release", job_id, "--operator", "ops", *stack])
    assert released.exit_code == 0, released.output
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "completed" and job["result"]["scan"]["status"] == "flagged"
    video = next(o for o in job["result"]["outputs"] if o["kind"] == "video")
    local = tmp_path / "video.mp4"
    local.write_bytes(httpx.get(video["url"]).content)
    assert probe_video(local).video.codec == "h264" and local.stat().st_size == video["bytes"]
    # signed as it was released, with the stack's own signer (no test-signer warning)
    credentials = read_credentials(local)
    assert credentials.validation_state == "Valid" and credentials.models == ["lite-avatar"], credentials
    assert credentials.job_id == job_id and job["result"]["warnings"] == []
    assert pipeline.keys(pipeline.r.work_bucket, f"held/{job_id}/") == {}
    assert pipeline.hooks.wait_for(job_id, "job.completed").verified
