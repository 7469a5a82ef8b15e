"""The stack's CLI: `submit`, `status` and `events` against the running local stack, and `talkstack
demo` end to end in its own process (it starts its own stack, as `make demo` does)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from talkstack.api.usage import TIER_TAG
from talkstack.cli import app
from talkstack.media.video import probe_video

pytestmark = pytest.mark.slow
runner = CliRunner()


def stack_args(pipeline) -> list[str]:
    return ["--port", str(pipeline.r.port), "--stack", pipeline.r.stack]


def test_submit_follows_the_job_and_status_events_report_it(pipeline, media, tmp_path):
    result = runner.invoke(
        app,
        [
            "submit",
            "--image",
            str(media["portrait"]),
            "--audio",
            str(media["speech_5s"]),
            "--name",
            "cli submit",
            "-o",
            str(tmp_path / "submitted"),
            *stack_args(pipeline),
        ],
    )
    assert result.exit_code == 0, result.output
    job_id = re.search(r"submitted (\S+)", result.output).group(1)
    assert f"s3://{pipeline.r.output_bucket}/{job_id}/video.mp4" in result.output
    assert f"{job_id}/result.json" in result.output
    # -o downloaded the outputs; `download` fetches the same files again, from the stack's S3
    assert f"wrote {tmp_path / 'submitted' / 'video.mp4'}" in result.output
    again = runner.invoke(app, ["download", job_id, "-o", str(tmp_path / "again"), *stack_args(pipeline)])
    assert again.exit_code == 0, again.output
    video = (tmp_path / "again" / "video.mp4").read_bytes()
    assert video == (tmp_path / "submitted" / "video.mp4").read_bytes()
    stored = pipeline.s3.get_object(Bucket=pipeline.r.output_bucket, Key=f"{job_id}/video.mp4")["Body"].read()
    assert video == stored and probe_video(tmp_path / "again" / "video.mp4").video is not None

    status = runner.invoke(app, ["status", job_id, "--json", *stack_args(pipeline)])
    assert status.exit_code == 0, status.output
    record = json.loads(status.output)
    steps = [s["name"] for s in record["steps"]]
    assert record["status"] == "completed" and steps[:2] == ["moderate", "avatar"]

    pipeline.stack.wait_for_execution(job_id)
    events = runner.invoke(app, ["events", job_id, "--json", *stack_args(pipeline)])
    types = [json.loads(line)["type"] for line in events.output.splitlines() if line.startswith("{")]
    assert types[0] == "job.queued" and types[-1] == "job.completed"


def test_submit_a_manifest_file_uploads_its_media(pipeline, media, tmp_path):
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "face.png").write_bytes(media["portrait"].read_bytes())
    (folder / "voice.wav").write_bytes(media["speech_5s"].read_bytes())
    manifest = {
        "task": "avatar",
        "inputs": {"image": "face.png", "audio": "voice.wav"},
        "output": {"prefix": "cli"},
    }
    (folder / "job.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["submit", str(folder / "job.json"), *stack_args(pipeline)])
    assert result.exit_code == 0, result.output
    assert f"s3://{pipeline.r.output_bucket}/cli/video.mp4" in result.output


def test_status_of_a_failed_job_and_of_an_unknown_job(pipeline, media):
    result = runner.invoke(
        app,
        [
            "submit",
            "--image",
            str(media["no_face"]),
            "--audio",
            str(media["speech_5s"]),
            "--consent-subject",
            "Grace Subject",
            *stack_args(pipeline),
        ],
    )
    assert result.exit_code == 2
    assert "NO_FACE_DETECTED" in result.output
    # A missing job is NOT_FOUND, the code the API gives for one (INPUT_NOT_FOUND is for media).
    for command in ("status", "events"):
        unknown = runner.invoke(app, [command, "no-such-job", *stack_args(pipeline)])
        assert unknown.exit_code == 2 and "error [NOT_FOUND]: no job 'no-such-job'" in unknown.output
    missing = runner.invoke(app, ["download", "no-such-job", *stack_args(pipeline)])
    assert missing.exit_code == 2 and "error [NOT_FOUND]" in missing.output


def test_a_disabled_key_gets_the_401_of_an_unknown_key_until_enabled(pipeline):
    """`talkstack keys disable/enable` against the running stack, seen over real HTTP."""
    key = pipeline.api_key("free", "disable me")
    key_id = key.split("_")[1]
    api = httpx.Client(base_url=pipeline.api_url, timeout=30)

    def models(bearer: str) -> httpx.Response:
        return api.get("/v1/models", headers={"Authorization": f"Bearer {bearer}"})

    assert models(key).status_code == 200
    unknown = models(f"tsk_{'z' * 12}_{'a' * 32}")
    assert unknown.status_code == 401

    disabled = runner.invoke(app, ["keys", "disable", key_id, *stack_args(pipeline)])
    assert disabled.exit_code == 0, disabled.output
    refused = models(key)
    assert (refused.status_code, refused.json()) == (401, unknown.json())
    listed = runner.invoke(app, ["keys", "list", "--json", *stack_args(pipeline)])
    mine = [json.loads(line) for line in listed.output.splitlines() if key_id in line]
    assert [k["status"] for k in mine] == ["disabled"]

    enabled = runner.invoke(app, ["keys", "enable", key_id, *stack_args(pipeline)])
    assert enabled.exit_code == 0, enabled.output
    assert models(key).status_code == 200


def test_commands_say_when_no_stack_is_running(free_port):
    port = free_port()
    result = runner.invoke(app, ["status", "x", "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"error [STACK_NOT_RUNNING]: no local stack at http://127.0.0.1:{port}" in result.output
    assert "start one with `talkstack up`" in result.output


@pytest.mark.parametrize("busy", ["endpoint", "api"])
def test_up_on_a_busy_port_names_the_port_and_the_way_out(free_port, busy):
    """A second `talkstack up` on the same ports: one line, its code, the port, how to pick another."""
    port = free_port()
    taken = port if busy == "endpoint" else port + 10
    exe = Path(sys.executable).parent / "talkstack"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TALKSTACK_", "MOTO_"))}
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        done = subprocess.run(
            [str(exe), "up", "--port", str(port)], env=env, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error [PORT_IN_USE]: port {taken} on 127.0.0.1"), lines
    assert "--port or TALKSTACK_LOCAL_PORT" in lines[0] and "Traceback" not in done.stderr


def test_demo_runs_the_whole_pipeline(tmp_path, free_port):
    port = free_port()
    output = tmp_path / "demo.mp4"
    exe = Path(sys.executable).parent / "talkstack"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TALKSTACK_", "MOTO_"))}
    env["TALKSTACK_DEMO_PORT"] = str(port)
    env["COLUMNS"] = "200"
    done = subprocess.run(
        [str(exe), "demo", "--output", str(output)], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "signature verified with standardwebhooks" in done.stdout
    assert "job.completed" in done.stdout and "steps: moderate" in done.stdout and ", avatar " in done.stdout
    # the quality report of the bundled sample, measured by the worker: it passes, lip sync included
    assert done.stdout.count("quality   passed") == 2
    lipsync = re.search(r"lipsync\s+([0-9.]+)", done.stdout)
    assert lipsync is not None and float(lipsync.group(1)) >= 0.6
    info = probe_video(output)
    assert info.video is not None and abs(info.duration_s - 13.56) < 0.2
    assert output.with_suffix(".jpg").stat().st_size > 0


def test_keys_create_prints_a_working_key(pipeline):
    result = runner.invoke(app, ["keys", "create", "--tier", "pro", "--name", "cli", *stack_args(pipeline)])
    assert result.exit_code == 0, result.output
    key = next(line for line in result.output.splitlines() if line.startswith("tsk_"))
    answer = httpx.get(f"{pipeline.api_url}/v1/usage", headers={"x-api-key": key})
    assert answer.status_code == 200 and answer.json()["tier"] == "pro"
    bad = runner.invoke(app, ["keys", "create", "--tier", "gold", *stack_args(pipeline)])
    assert bad.exit_code == 2 and "INVALID_REQUEST" in bad.output


def test_keys_create_refuses_a_usage_plan_of_another_tier(pipeline):
    """--usage-plan against the local stack's moto API Gateway, with a plan tagged as the CDK stack
    tags them: the wrong tier is refused and the key it had made is disabled, never handed out."""
    apigw = pipeline.stack.client("apigateway")
    free = apigw.create_usage_plan(name="t-free", tags={TIER_TAG: "free"})["id"]
    name = f"wrong-plan-{uuid.uuid4().hex[:6]}"
    args = ["keys", "create", "--tier", "pro", "--name", name, "--usage-plan", free, *stack_args(pipeline)]
    wrong = runner.invoke(app, args)
    assert wrong.exit_code == 2 and "INVALID_REQUEST" in wrong.output
    assert "meters the free tier and this key is pro" in wrong.output and "tsk_" not in wrong.output
    made = pipeline.stack.client("dynamodb").scan(
        TableName=pipeline.r.jobs_table,
        FilterExpression="#n = :n",
        ExpressionAttributeNames={"#n": "name"},
        ExpressionAttributeValues={":n": {"S": name}},
    )["Items"]
    assert [item["disabled"]["BOOL"] for item in made] == [True]
