"""What `talkstack up` shows: a banner of complete, copy-pasteable values, then one line per job
that ends (completed, failed or cancelled) and nothing else — the emulator's and the handlers' logs
are for `--verbose`.

Job ends are seen where a subscriber would see them: the notify function's terminal events (from
the state machine, and from ingest for a drop it rejected), observed on the emulated Lambda service.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from talkstack.contract.events import JobEvent
from talkstack.contract.state import NotifyRequest
from talkstack.local.resources import LOCAL_WEBHOOK_SECRET, LocalResources, repo_root

TERMINAL_EVENTS = frozenset({"job.completed", "job.held", "job.failed", "job.cancelled"})
EXAMPLE_MANIFEST = Path("docs", "examples", "hello", "job.json")
QUICKSTART = Path("docs", "quickstart.md")
log = logging.getLogger(__name__)


def _shown(relative: Path, cwd: Path) -> str:
    """A repository file as the user can paste it here: relative when they stand in the checkout."""
    path = repo_root() / relative
    try:
        return str(path.relative_to(cwd.resolve()))
    except ValueError:
        return str(path)


def _stack_options(r: LocalResources) -> str:
    """The options another command needs to find this stack (none for the defaults)."""
    default = LocalResources()
    port = f" --port {r.port}" if r.port != default.port else ""
    return port + (f" --stack {r.stack}" if r.stack != default.stack else "")


def banner(r: LocalResources, cwd: Path | None = None) -> list[str]:
    """The lines `talkstack up` prints once the stack is up: ten, so that a run of several jobs still
    fits a screen. Every value is whole (no table that truncates or wraps them) and each command is
    one line, whatever the terminal's width; the AWS CLI walk-through lives in docs/quickstart.md."""
    here = cwd or Path.cwd()
    manifest = _shown(EXAMPLE_MANIFEST, here)
    quickstart = _shown(QUICKSTART, here)
    env = " ".join(f"{name}={value}" for name, value in r.client_env().items() if name != "AWS_REGION")
    rows = (
        ("input bucket", f"{r.input_bucket}  (drop inputs/<name>/job.json + media)"),
        ("output bucket", f"{r.output_bucket}  (work bucket: {r.work_bucket})"),
        ("jobs table", r.jobs_table),
        ("events topic", r.topic_arn),
        ("ingest DLQ", r.dlq_url),
        ("state machine", r.state_machine_arn),
        ("webhook secret", LOCAL_WEBHOOK_SECRET),
    )
    return [
        f"talkstack local stack is up at {r.endpoint}; REST API at {r.api_url} (docs: {r.api_url}/docs, "
        "a key: talkstack keys create); Ctrl-C stops it",
        *(f"  {label:15} {value}" for label, value in rows),
        f"Try it: talkstack submit {manifest}{_stack_options(r)} -o out/hello; any S3 client works too "
        f"({quickstart}), e.g. the AWS CLI after:",
        f"  export {env}",
    ]


def job_line(event: JobEvent) -> str:
    """One line for a job that ended: its id, how, and the output or the error's code and message."""
    if event.type == "job.completed" and event.result is not None:
        duration = f" ({event.result.duration_s:.1f} s)" if event.result.duration_s else ""
        return f"job {event.job_id} completed: s3://{event.result.bucket}/{event.result.key}{duration}"
    if event.type == "job.failed" and event.error is not None:
        return f"job {event.job_id} failed [{event.error.code}]: {event.error.message}"
    return f"job {event.job_id} {event.status}"


class JobEnds:
    """Observer of the emulated Lambda service (LambdaPatch.observer): calls `report` once per job
    that ends, with the event its subscribers get."""

    def __init__(self, r: LocalResources, report: Callable[[JobEvent], None]) -> None:
        self.notify_function = r.function_name("notify")
        self.jobs_table = r.jobs_table
        self.report = report
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def __call__(self, function_name: str, payload: Any) -> None:
        if function_name != self.notify_function:
            return
        request = NotifyRequest.model_validate(payload)
        if request.type not in TERMINAL_EVENTS:
            return
        from talkstack.pipeline.notify import event_for
        from talkstack.pipeline.store import JobStore

        # What notify sent (a failure after completion is announced as the completion it was;
        # a step ending after a cancel announces nothing).
        event, _ = event_for(request, JobStore(self.jobs_table))
        if event is None:
            return
        with self._lock:
            if (event.job_id, event.type) in self._seen:  # notify retried by the state machine
                return
            self._seen.add((event.job_id, event.type))
        self.report(event)
