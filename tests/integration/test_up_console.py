"""`talkstack up` as a user runs it (its own process, an 80-column terminal): a banner whose values
are whole and whose commands are one line each, then one line per job that ends — ordinary failures
included, with no emulator stack dumps — and the whole run stays under 20 lines."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import boto3
import pytest

from talkstack.cli.drop import drop_job
from talkstack.local.resources import LocalResources
from tests.support.consent import with_consent

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def short_speech(source: Path, target: Path, seconds: float) -> Path:
    with wave.open(str(source)) as reader:
        params = reader.getparams()
        frames = reader.readframes(int(params.framerate * seconds))
    with wave.open(str(target), "wb") as writer:
        writer.setparams(params)
        writer.writeframes(frames)
    return target


def test_up_prints_a_whole_banner_then_one_line_per_job(media, tmp_path, free_port):
    r = LocalResources(stack="talkstack-console", port=free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TALKSTACK_", "MOTO_"))}
    env["COLUMNS"] = "80"
    exe = Path(sys.executable).parent / "talkstack"
    command = [str(exe), "up", "--port", str(r.port), "--stack", r.stack, "--workers", "1"]
    up = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in up.stdout], daemon=True)
    reader.start()
    seen: list[str] = []

    def until(pattern: str, count: int = 1, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while sum(bool(re.search(pattern, line)) for line in seen) < count:
            assert up.poll() is None, "".join(seen)
            try:
                seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"no {pattern!r} line:\n{''.join(seen)}")

    try:
        until(r"^\s+export AWS_ENDPOINT_URL=")  # the banner's last line: the stack is up
        s3 = boto3.client(
            "s3",
            endpoint_url=r.endpoint,
            region_name=r.region,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        speech = short_speech(media["speech"], tmp_path / "speech.wav", 1.5)
        avatar = {"task": "avatar", "inputs": {"image": "portrait.png", "audio": "speech.wav"}}
        for name in ("ok-1", "ok-2"):
            drop_job(
                s3,
                r.input_bucket,
                avatar,
                {"portrait.png": media["portrait"], "speech.wav": speech},
                name=name,
            )
        drop_job(
            s3,
            r.input_bucket,
            with_consent(avatar),
            {"portrait.png": media["no_face"], "speech.wav": speech},
            name="no-face",
        )
        drop_job(s3, r.input_bucket, avatar, {"speech.wav": speech}, name="missing")  # no portrait.png
        until(r"^job \S+ (completed|failed)", count=4)
    finally:
        up.send_signal(signal.SIGTERM)
        rest, _ = up.communicate(timeout=60)
        reader.join(timeout=5)
    while not lines.empty():
        seen.append(lines.get())
    output = "".join(seen) + (rest or "")
    shown = output.splitlines()

    assert up.returncode == 0, output
    assert len(shown) < 20, output
    assert "Exception" not in output and "Traceback" not in output, output
    ends = [line for line in shown if line.startswith("job ")]
    assert len([line for line in ends if " completed: s3://talkstack-console-outputs/" in line]) == 2, output
    assert len([line for line in ends if "failed [NO_FACE_DETECTED]: no face found" in line]) == 1, output
    assert len([line for line in ends if "failed [INPUT_NOT_FOUND]: inputs.image:" in line]) == 1, output

    # Whole values at 80 columns: the ARN, and the export line as one pasteable line.
    assert f"  state machine   {r.state_machine_arn}" in shown, output
    export = [line for line in shown if line.lstrip().startswith("export ")]
    assert export == [
        f"  export AWS_ENDPOINT_URL={r.endpoint} AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local "
        f"AWS_DEFAULT_REGION={r.region}"
    ], output
    # The banner is short, so a run of eight ended jobs still stays under 20 lines, and what it
    # points at ships.
    banner = shown[: shown.index(export[0]) + 1]
    assert len(banner) <= 10, output
    tried = next(line for line in banner if line.startswith("Try it: "))
    assert (
        f"talkstack submit docs/examples/hello/job.json --port {r.port} --stack {r.stack} -o out/hello"
        in tried
    )
    assert "(docs/quickstart.md)" in tried
    assert (ROOT / "docs/examples/hello/job.json").is_file() and (ROOT / "docs/quickstart.md").is_file()
