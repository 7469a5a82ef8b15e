"""The local worker pool: worker tasks run in separate processes, like remote workers would.

Separate processes because the engines are CPU-bound (the GIL) and MediaPipe silences fd 2 while
it loads, which must not happen under the emulator's threads. Processes are spawned, not forked:
the parent runs the emulator's threads, and forking a threaded process is unsafe.

A FaultPlan lets tests and benchmarks make a worker misbehave at the one boundary that cannot be
made to fail on demand otherwise: "transient" reports a retryable error without running the
engine, "fatal" a non-retryable one (the job fails at once), "silent" takes the task and never
answers (no heartbeat, no marker), "poor_quality" renders as usual but reports a failing quality
report (a parallel chunk is then rendered again).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from talkstack.contract.record import JobError
from talkstack.contract.worker import WorkerTask, parse_worker_task
from talkstack.errors import ErrorCode
from talkstack.local.moto_patches import after_this_invocation

if TYPE_CHECKING:  # the worker runtime is imported in the worker processes only
    from talkstack.workers.lite_steps import StepFn

Fault = Literal["transient", "fatal", "silent", "poor_quality", "unsafe_output"]
log = logging.getLogger(__name__)


class FaultPlan:
    """Faults to inject, consumed one per attempt, by (job id, step); job id "*" matches any job.

    A fault may also be meant for the jobs of one API key (`add_for_key`): an API job's id is not
    known before it is submitted, and by then its first task may already be on its way. The stack
    gives the plan `owner_of` (job id → the key that submitted it) to match those."""

    def __init__(self) -> None:
        self._faults: dict[tuple[str, str], list[Fault]] = defaultdict(list)
        self._lock = threading.Lock()
        self.owner_of: Callable[[str], str | None] | None = None

    def add(self, job_id: str, step: str, *faults: Fault) -> None:
        with self._lock:
            self._faults[(job_id, step)].extend(faults)

    def add_for_key(self, key_id: str, step: str, *faults: Fault) -> None:
        """Faults for the next tasks of `step` of any job of API key `key_id`."""
        self.add(f"key:{key_id}", step, *faults)

    def take(self, job_id: str, step: str) -> Fault | None:
        with self._lock:
            by_key = any(k.startswith("key:") and v for (k, _), v in self._faults.items())
        # The owner is looked up (a table read) only when a fault waits for one, outside the lock.
        owner = self.owner_of(job_id) if by_key and self.owner_of is not None else None
        with self._lock:
            for key in ((job_id, step), (f"key:{owner}", step), ("*", step)):
                if self._faults.get(key):
                    return self._faults[key].pop(0)
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


def _warm_up() -> None:
    # Import the engines once per process, so the first task does not pay for it.
    import talkstack.engines.lite.avatar
    import talkstack.engines.lite.voice  # noqa: F401


_client: Any = None


def _worker_client() -> Any:
    """One HTTP client per worker process, reused by all its tasks."""
    global _client
    if _client is None:
        from talkstack.workers.runner import new_client

        _client = new_client()
    return _client


_engines: dict[str, Any] = {}


def _gpu_engine(model: str, spec: str) -> Any:
    """A GPU engine for `model`, built once per worker process (as a Modal container does). It loads
    its model on its first task, inside the runner, so the heartbeat covers the load."""
    if model not in _engines:
        from talkstack.engines.gpu.base import load_engine

        _engines[model] = load_engine(spec, model)
    return _engines[model]


def run_in_worker(task_json: str, fault: Fault | None, engine_spec: str | None = None) -> bool:
    """Entry point in the worker process (module-level so it pickles). `engine_spec` names the GPU
    engine for the task's model (PipelineConfig.local_engines); lite models need none."""
    from talkstack.contract.record import utc_now
    from talkstack.workers.runner import Reporter, Transfers, engine_for, run_task

    received_at = utc_now()
    task = parse_worker_task(task_json)
    if fault == "silent":
        return False
    if fault in ("transient", "fatal"):
        error = JobError(
            code=ErrorCode.GENERATION_FAILED,
            message=f"injected {fault} worker failure (local FaultPlan)",
            step=task.step,
        )
        Reporter(task, Transfers(_worker_client())).error(error, retryable=fault == "transient")
        return False
    step = _gpu_engine(task.model, engine_spec) if engine_spec else None
    if fault == "poor_quality":
        step = _poor_quality(step or engine_for(task))
    classifier = UnsafeEverything() if fault == "unsafe_output" else None
    return run_task(task, _worker_client(), received_at=received_at, step=step, classifier=classifier)


class UnsafeEverything:
    """An image-safety classifier that scores every frame `nsfw` (the "unsafe_output" fault): the
    real sampling and verdict run on the real render; only the scores are made up."""

    model = "local-fault-plan/unsafe-everything"

    def classify(self, frames: Any) -> list[dict[str, float]]:
        return [{"nsfw": 0.99, "normal": 0.01} for _ in frames]


def _poor_quality(step: StepFn) -> StepFn:
    """The engine as it is, its video judged out of sync (a lip-sync score under any pass mark)."""
    from talkstack.contract.quality import QualityCheck, QualityReport

    def render(task: Any, inputs: Any, outdir: Any, progress: Any) -> Any:
        produced, result = step(task, inputs, outdir, progress)
        check = QualityCheck(name="lipsync", value=-1.0, threshold=0.3, passed=False, detail="injected")
        frames = result.frames or 0
        report = QualityReport(
            lipsync=-1.0,
            frames=frames,
            expected_frames=frames,
            av_offset_s=0.0,
            faces_found=1.0,
            sampled_frames=0,
            checks=[check],
            passed=False,
        )
        return produced, dataclasses.replace(result, quality=report)

    return render


def _log_crash(future: Future[bool]) -> None:
    # Job errors end as error markers; only a dead worker process surfaces here.
    if future.exception() is not None:
        log.error("local worker crashed: %s", future.exception())


class LocalWorkerPool:
    def __init__(
        self, workers: int = 2, faults: FaultPlan | None = None, engines: dict[str, str] | None = None
    ) -> None:
        self.workers = workers
        self.faults = faults or FaultPlan()
        self.engines = engines or {}
        """GPU model id → engine spec (`module:callable`) the workers may run in process."""
        self._executor: ProcessPoolExecutor | None = None

    def start(self) -> LocalWorkerPool:
        context = multiprocessing.get_context("spawn")
        self._executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_warm_up)
        self._free = threading.Semaphore(self.workers)
        # Start every process now (spawn + imports take a second or two), not on the first job.
        for future in [self._executor.submit(int) for _ in range(self.workers)]:
            future.result(timeout=120)
        return self

    def submit(self, task: WorkerTask) -> str:
        if self._executor is None:
            raise RuntimeError("the local worker pool is not running")
        engine = self.engines.get(task.model)
        document, executor = task.model_dump_json(), self._executor

        def run_when_a_process_is_free() -> None:
            # Wait for a free process here rather than in the executor's queue, and take the task's
            # fault only then: a fault meant for "the first task a worker takes" must not be spent
            # on a task that waits behind others (and may time out and be retried without it).
            while not self._free.acquire(timeout=1.0):
                if self._executor is not executor:  # the pool stopped meanwhile
                    return
            fault = self.faults.take(task.job_id, task.step)
            if fault:
                log.info("fault %s injected into %s", fault, task.attempt_id)
            try:
                future = executor.submit(run_in_worker, document, fault, engine)
            except RuntimeError:  # the stack stopped in the meantime: nothing to run it on
                self._free.release()
                log.info("not started (the pool has stopped): %s", task.attempt_id)
                return
            future.add_done_callback(lambda done: (self._free.release(), _log_crash(done)))

        def start() -> None:
            threading.Thread(
                target=run_when_a_process_is_free, name=f"start-{task.attempt_id}", daemon=True
            ).start()

        # Not before the dispatch invocation has answered (moto_patches: a worker answering first).
        after_this_invocation(start)
        return f"local:{task.attempt_id}"

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
