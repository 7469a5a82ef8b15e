"""Worker backends: where the dispatch Lambda sends a task. Each takes a WorkerTask and returns at
once; the worker reports back through markers only.

`local` hands the task to the worker pool of the running local stack (`talkstack up`, tests,
`make demo`). `modal` (issue 4) will `.spawn` the task on a Modal function.
"""

from __future__ import annotations

from typing import Protocol

from talkstack.errors import ErrorCode, TalkstackError
from talkstack.workers.protocol import WorkerTask


class WorkerBackend(Protocol):
    name: str

    def submit(self, task: WorkerTask) -> str:
        """Start `task` somewhere; returns a worker/call id for the job record."""
        ...


class TaskSink(Protocol):
    def submit(self, task: WorkerTask) -> str: ...


_local_sink: TaskSink | None = None


def register_local_sink(sink: TaskSink | None) -> None:
    """Called by the local runtime when its worker pool starts (None when it stops)."""
    global _local_sink
    _local_sink = sink


class LocalBackend:
    name = "local"

    def submit(self, task: WorkerTask) -> str:
        if _local_sink is None:
            raise TalkstackError(
                ErrorCode.MODEL_UNAVAILABLE,
                "the local worker backend only runs inside the local stack (talkstack up); "
                "set TALKSTACK_WORKER_BACKEND for deployed stacks",
            )
        return _local_sink.submit(task)


def get_backend(name: str) -> WorkerBackend:
    if name == "local":
        return LocalBackend()
    raise TalkstackError(ErrorCode.MODEL_UNAVAILABLE, f"unknown worker backend {name!r}")
