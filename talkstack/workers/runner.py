"""Run one worker task: download inputs, run the engine, upload outputs, report through markers.

The runner is the worker side of the protocol (protocol.py) and holds no AWS credentials. While the
engine runs, a heartbeat thread PUTs a progress marker every `heartbeat_interval_s`, so the step's
HeartbeatSeconds only expires when the worker is really gone. Errors are classified once, here:
a TalkstackError is the input's fault (fatal, not retried); transfer trouble and anything
unexpected are transient (the state machine retries the step). The heartbeat also polls the job's
cancel flag: once the job is cancelled, the engine is stopped at its next progress report and
nothing is uploaded. Before the result marker is written, the step's output is scanned
(talkstack.safety.scan) with the classifier the worker was given (none: the verdict says
`not_scanned`); the verdict goes in the marker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from talkstack.contract.record import JobError, utc_now
from talkstack.contract.worker import (
    ErrorMarker,
    Markers,
    OutputObject,
    OutputUrl,
    ProgressMarker,
    ResultMarker,
    WorkerTask,
    WorkerTaskBase,
    parse_worker_task,
)
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.safety.scan import ImageClassifier, scan_output
from talkstack.workers.lite_steps import LITE_STEPS, StepFn
from talkstack.workers.words import WORDS_ROLE, write_words

log = logging.getLogger(__name__)
MAX_INPUT_BYTES = 512 * 1024 * 1024


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def accelerator() -> str | None:
    """The GPU this process computes on, for the job's cost; None for CPU engines. Only an engine
    that imported torch can have used one, so a lite worker never pays for importing it here."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return str(torch.cuda.get_device_name(torch.cuda.current_device()))


def _transient_http(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code >= 500


_transfer_retry = retry(
    retry=retry_if_exception(_transient_http),
    stop=stop_after_attempt(4),
    wait=wait_random_exponential(multiplier=0.2, max=5),
    reraise=True,
)


class Transfers:
    """HTTP GET/PUT on pre-signed URLs, each retried a few times on transient trouble."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    @_transfer_retry
    def download(self, url: str, path: Path, role: str) -> Path:
        with self.client.stream("GET", url) as response:
            if response.status_code in (403, 404):
                raise TalkstackError(
                    ErrorCode.INPUT_NOT_FOUND,
                    f"{role}: input could not be read (HTTP {response.status_code})",
                )
            response.raise_for_status()
            size = 0
            with open(path, "wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    size += len(chunk)
                    if size > MAX_INPUT_BYTES:
                        raise TalkstackError(ErrorCode.INPUT_TOO_LARGE, f"{role}: larger than 512 MB")
                    out.write(chunk)
        return path

    @_transfer_retry
    def upload(self, target: OutputUrl, body: bytes | Path) -> int:
        data = body.read_bytes() if isinstance(body, Path) else body
        response = self.client.put(target.url, content=data, headers={"Content-Type": target.content_type})
        response.raise_for_status()
        return len(data)


class TaskCancelled(Exception):
    """The job was cancelled while this worker ran it."""


class Reporter:
    """Writes the markers; the progress marker doubles as the heartbeat."""

    def __init__(self, task: WorkerTask, transfers: Transfers) -> None:
        self.task, self.transfers = task, transfers
        self.progress, self.message = 0.0, "starting"
        self._sent, self._sent_at = 0.0, 0.0
        self._lock = threading.Lock()
        # Held across every marker upload: a heartbeat already in flight finishes before the
        # terminal marker goes out, and none may follow it (a progress.json written after
        # result.json would read as a job that is still running).
        self._write = threading.Lock()
        self._finished = False
        self._stop = threading.Event()
        self.cancelled = threading.Event()

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise TaskCancelled(self.task.job_id)

    def poll_cancel(self) -> None:
        """GET the cancel flag: 200 = cancelled; 404 (or 403 once the URL expired) = carry on."""
        if self.task.cancel_url is None or self.cancelled.is_set():
            return
        try:
            response = self.transfers.client.get(self.task.cancel_url)
        except httpx.TransportError as exc:
            log.warning("cancel flag unreachable: %s", exc)
            return
        if response.status_code == 200:
            log.info("job %s was cancelled: stopping %s", self.task.job_id, self.task.attempt_id)
            self.cancelled.set()

    def update(self, fraction: float, message: str) -> None:
        """Engine progress (the engine's thread: a cancelled job stops here). Besides the periodic
        heartbeat, report each new tenth at once (at most once a second), so clients see progress
        even when the heartbeat interval is long."""
        self.check_cancelled()
        with self._lock:
            self.progress, self.message = max(self.progress, min(1.0, fraction)), message
            due = int(self.progress * 10) > int(self._sent * 10) and time.monotonic() - self._sent_at >= 1.0
        if due:
            try:
                self.beat()
            except Exception as exc:  # progress is best effort; the heartbeat thread keeps trying
                log.warning("progress report failed: %s", exc)

    def beat(self) -> None:
        with self._write:
            if self._finished:
                return
            with self._lock:
                marker = ProgressMarker(
                    attempt_id=self.task.attempt_id,
                    progress=self.progress,
                    message=self.message,
                    at=utc_now(),
                )
                self._sent, self._sent_at = self.progress, time.monotonic()
            self.transfers.upload(self.task.markers.progress, marker.model_dump_json().encode())

    def _final(self, url: OutputUrl, body: bytes) -> None:
        """Write a terminal marker; no progress marker is written after it."""
        with self._write:
            self._finished = True
            self.transfers.upload(url, body)

    @contextlib.contextmanager
    def heartbeat(self) -> Iterator[None]:
        def loop() -> None:
            while not self._stop.wait(self.task.heartbeat_interval_s):
                self.poll_cancel()
                if self.cancelled.is_set():
                    return  # no more heartbeats: Step Functions has stopped listening anyway
                try:
                    self.beat()
                except Exception as exc:  # a missed beat is not fatal; the next one may pass
                    log.warning("heartbeat failed: %s", exc)

        self.poll_cancel()  # a task for an already-cancelled job stops at its first progress report
        self.beat()
        thread = threading.Thread(target=loop, name=f"heartbeat-{self.task.attempt_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join(timeout=5)

    def result(self, marker: ResultMarker) -> None:
        self._final(self.task.markers.result, marker.model_dump_json().encode())

    def error(self, error: JobError, retryable: bool) -> None:
        marker = ErrorMarker(
            attempt_id=self.task.attempt_id,
            error=error,
            retryable=retryable,
            worker=worker_name(),
            at=utc_now(),
        )
        self._final(self.task.markers.error, marker.model_dump_json().encode())


def is_chunk(task: WorkerTaskBase) -> bool:
    """A chunk of a parallel long avatar (attempt ids `avatar-c<k>-…`, StepAddress.attempt_stem)."""
    return task.step == "avatar" and re.match(r"^avatar-c\d+-", task.attempt_id) is not None


def engine_for(task: WorkerTask) -> StepFn:
    step = LITE_STEPS.get(task.model)
    if step is None:
        raise TalkstackError(
            ErrorCode.MODEL_UNAVAILABLE, f"model {task.model!r} is not available on this worker"
        )
    return step


def new_client() -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0))


def run_task(
    payload: WorkerTaskBase | Mapping[str, Any] | str,
    client: httpx.Client | None = None,
    received_at: datetime | None = None,
    step: StepFn | None = None,
    classifier: ImageClassifier | None = None,
) -> bool:
    """Run `task` to completion; True when a result marker was written. Never raises for job errors:
    they end as an error marker (the only way the pipeline hears about them). Long-lived workers
    should pass one `client` for all their tasks (connection reuse; no TLS setup per task). `step`
    is the engine to run (a GPU engine instance); by default the task's model picks one.
    `classifier` scans the output's frames (none: the output is marked not scanned)."""
    started_at = received_at or utc_now()
    try:
        task = parse_worker_task(payload)
    except ValidationError as exc:
        # A document the contract refuses (bad options, say): answer through its error marker if it
        # names one, so the step fails now with the reason instead of timing out on a silent worker.
        with contextlib.ExitStack() as stack:
            http = client or stack.enter_context(new_client())
            if not _report_unreadable(payload, exc, Transfers(http)):
                raise
        return False
    own = client is None
    client = client or new_client()
    transfers = Transfers(client)
    reporter = Reporter(task, transfers)
    try:
        with tempfile.TemporaryDirectory(prefix=f"talkstack-{task.attempt_id}-") as tmp, reporter.heartbeat():
            workdir = Path(tmp)
            try:
                _execute(task, workdir, transfers, reporter, started_at, step, classifier)
                return True
            except TaskCancelled:
                log.info("task %s stopped: job cancelled; nothing uploaded", task.attempt_id)
            except TalkstackError as exc:
                reporter.error(JobError.from_exception(exc, step=task.step), retryable=False)
            except Exception as exc:
                log.exception("worker task %s failed", task.attempt_id)
                error = JobError.from_exception(exc, step=task.step)
                reporter.error(error, retryable=True)
            return False
    finally:
        if own:
            client.close()


class _Addressable(BaseModel):
    """The part of a task document needed to answer it (read when the rest is refused)."""

    attempt_id: str
    markers: Markers


def _report_unreadable(payload: object, exc: ValidationError, transfers: Transfers) -> bool:
    """Write a fatal INVALID_REQUEST error marker for a task the contract refuses; False when the
    document does not even say where to answer (then the caller raises)."""
    try:
        raw = json.loads(payload) if isinstance(payload, str | bytes) else payload
        where = _Addressable.model_validate(raw, strict=False)
    except (ValueError, ValidationError):
        return False
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)
    )
    marker = ErrorMarker(
        attempt_id=where.attempt_id,
        error=JobError(code=ErrorCode.INVALID_REQUEST, message=f"task refused: {problems}"[:2000]),
        retryable=False,
        worker=worker_name(),
        at=utc_now(),
    )
    transfers.upload(where.markers.error, marker.model_dump_json().encode())
    return True


def _execute(
    task: WorkerTask,
    workdir: Path,
    transfers: Transfers,
    reporter: Reporter,
    started_at: datetime,
    step: StepFn | None,
    classifier: ImageClassifier | None = None,
) -> None:
    step = step or engine_for(task)
    indir, outdir = workdir / "in", workdir / "out"
    indir.mkdir()
    outdir.mkdir()
    reporter.update(0.0, "downloading inputs")
    inputs = {role: transfers.download(i.url, indir / i.filename, role) for role, i in task.inputs.items()}
    reporter.update(0.02, "running engine")
    started = time.perf_counter()
    marking: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if not task.watermark:  # a render a later step remakes and marks: what is published is marked once
        from talkstack.safety.watermark import unmarked

        marking = unmarked()
    with marking:
        produced, render = step(task, inputs, outdir, lambda f, m: reporter.update(0.02 + 0.9 * f, m))
    if WORDS_ROLE in task.outputs and WORDS_ROLE not in produced:  # any voice engine: captions need them
        reporter.update(0.92, "timing words")
        produced = {**produced, WORDS_ROLE: write_words(task, produced, render, outdir)}
    engine_s = time.perf_counter() - started
    missing = set(task.outputs) - set(produced)
    if missing:
        raise RuntimeError(f"engine produced no {', '.join(sorted(missing))}")
    scan = None
    if not is_chunk(task):  # a chunk is not published: the stitched video is scanned instead
        reporter.update(0.92, "scanning output")
        scan = scan_output(produced, classifier)
    reporter.update(0.93, "uploading outputs")
    reporter.poll_cancel()  # a last look: a cancelled job must not get outputs
    reporter.check_cancelled()
    outputs = {}
    for role, target in task.outputs.items():
        size = transfers.upload(target, produced[role])
        outputs[role] = OutputObject(key=target.key, bytes=size, content_type=target.content_type)
    reporter.result(
        ResultMarker(
            attempt_id=task.attempt_id,
            outputs=outputs,
            duration_s=render.duration_s,
            width=render.width,
            height=render.height,
            fps=render.fps,
            sample_rate=render.sample_rate,
            engine_s=engine_s,
            warnings=render.warnings,
            quality=render.quality,
            scan=scan,
            worker=worker_name(),
            accelerator=accelerator(),
            started_at=started_at,
            at=utc_now(),
        )
    )
