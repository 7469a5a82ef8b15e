"""A worker stops when its job's cancel flag appears, and uploads nothing.

The worker's whole world is HTTP on pre-signed URLs, so S3 is played here by an httpx
MockTransport (the boundary: it answers GET/PUT as S3 would and records what arrives). The runner,
the heartbeat thread and the reporter are the real ones.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import httpx

from talkstack.contract.record import utc_now
from talkstack.contract.worker import InputUrl, Markers, OutputUrl, VoiceTask, WorkerTask
from talkstack.engines.base import RenderResult
from talkstack.workers.runner import run_task


class FakeS3:
    def __init__(self, cancel_after_polls: int | None, progress_put_s: float = 0.0) -> None:
        self.cancel_after_polls = cancel_after_polls
        self.progress_put_s = progress_put_s  # a slow progress PUT, to widen the race with result
        self.polls = 0
        self.puts: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "PUT" and path.endswith("progress.json"):
            time.sleep(self.progress_put_s)
        with self.lock:
            if request.method == "PUT":
                self.puts.append(path)  # in the order the PUTs complete
                return httpx.Response(200)
            if path.endswith("/cancel.json"):
                self.polls += 1
                cancelled = self.cancel_after_polls is not None and self.polls > self.cancel_after_polls
                return httpx.Response(200 if cancelled else 404, content=b"{}")
            return httpx.Response(200, content=b"input bytes")


def task(cancel: bool = True) -> WorkerTask:
    def put(name: str) -> OutputUrl:
        return OutputUrl(url=f"https://s3.test/work/{name}", key=name, content_type="application/json")

    return VoiceTask(
        job_id="job-1",
        step="voice",
        attempt_id="voice-1-abc",
        attempt=1,
        model="slow-test-engine",
        inputs={"reference_voice": InputUrl(url="https://s3.test/in/ref.wav", filename="ref.wav")},
        outputs={"audio": put("audio.wav")},
        markers=Markers(progress=put("progress.json"), result=put("result.json"), error=put("error.json")),
        heartbeat_interval_s=0.05,
        deadline=utc_now() + timedelta(minutes=5),
        cancel_url="https://s3.test/work/control/job-1/cancel.json" if cancel else None,
    )


def slow_engine(steps: list[int]):
    def render(task, inputs, outdir, progress):
        for i in range(60):  # ~3 s unless stopped
            steps.append(i)
            progress(i / 60, f"step {i}")
            time.sleep(0.05)
        out = outdir / "audio.wav"
        out.write_bytes(b"RIFF")
        return {"audio": out}, RenderResult(output=out, bytes=4, duration_s=1.0)

    return render


def test_a_cancelled_job_stops_the_engine_and_uploads_nothing():
    s3, steps = FakeS3(cancel_after_polls=3), []
    with httpx.Client(transport=httpx.MockTransport(s3)) as client:
        started = time.monotonic()
        assert run_task(task(), client, step=slow_engine(steps)) is False
    assert time.monotonic() - started < 2.0 and len(steps) < 60  # stopped early, not run to the end
    assert not [p for p in s3.puts if p.endswith(("audio.wav", "result.json", "error.json"))], s3.puts
    assert s3.polls >= 4


def test_without_a_cancel_the_task_completes():
    s3, steps = FakeS3(cancel_after_polls=None), []
    with httpx.Client(transport=httpx.MockTransport(s3)) as client:
        assert run_task(task(), client, step=slow_engine(steps)) is True
    assert len(steps) == 60 and s3.puts[-2:] == ["/work/audio.wav", "/work/result.json"]
    assert s3.polls >= 2  # it kept looking while it worked


def test_no_progress_marker_lands_after_the_result():
    """The heartbeat thread must not write progress.json after result.json: a heartbeat already in
    flight finishes first, and none start after. Slow progress PUTs and a 10 ms heartbeat make the
    race near certain when that ordering is not enforced."""

    def quick(task, inputs, outdir, progress):
        time.sleep(0.03)  # let a heartbeat start
        out = outdir / "audio.wav"
        out.write_bytes(b"RIFF")
        return {"audio": out}, RenderResult(output=out, bytes=4, duration_s=1.0)

    for _ in range(5):
        s3 = FakeS3(cancel_after_polls=None, progress_put_s=0.05)
        fast = task(cancel=False).model_copy(update={"heartbeat_interval_s": 0.01})
        with httpx.Client(transport=httpx.MockTransport(s3)) as client:
            assert run_task(fast, client, step=quick) is True
        assert s3.puts[-1] == "/work/result.json", s3.puts


def test_a_task_for_an_already_cancelled_job_never_starts():
    s3, steps = FakeS3(cancel_after_polls=0), []
    with httpx.Client(transport=httpx.MockTransport(s3)) as client:
        assert run_task(task(), client, step=slow_engine(steps)) is False
    assert steps == [] and all(p.endswith("progress.json") for p in s3.puts)
