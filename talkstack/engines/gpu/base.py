"""The GPU engine base class: load once, render many tasks, speak the worker protocol.

    engine = SomeEngine("ltx-video", weights_dir=Path("/weights"))
    engine.load()              # heavy: imports torch, reads weights (Modal: in @modal.enter)
    run_task(task_json, step=engine)   # talkstack.workers.runner: fetch inputs, render, upload, mark

`render` has the same signature as the lite steps (talkstack/workers/lite_steps.py), so the runner
treats both alike. Subclasses import their libraries inside `_load`/`render`, never at module level.
"""

from __future__ import annotations

import importlib
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from talkstack.contract.worker import WorkerTask
from talkstack.engines.base import ProgressFn, RenderResult
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.settings import get_settings


class Engine(ABC):
    """One model, loaded once per process (a Modal container or a local worker)."""

    model_ids: ClassVar[tuple[str, ...]]
    """Model ids this class can serve; an instance serves exactly one of them."""

    def __init__(self, model: str, *, weights_dir: Path | None = None, device: str | None = None) -> None:
        if model not in self.model_ids:
            raise TalkstackError(
                ErrorCode.MODEL_UNAVAILABLE,
                f"{type(self).__name__} serves {', '.join(self.model_ids)}, not {model!r}",
            )
        self.model = model
        # Modal mounts the weights volume at the default; a local GPU box sets TALKSTACK_WEIGHTS_DIR.
        self.weights_dir = weights_dir or get_settings().weights_dir
        self.device = device
        self._loaded = False
        self._load_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        """Load the model (idempotent and thread-safe: concurrent inputs share one load)."""
        with self._load_lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    @abstractmethod
    def _load(self) -> None:
        """Import the heavy libraries and build the model."""

    @abstractmethod
    def render(
        self, task: WorkerTask, inputs: dict[str, Path], outdir: Path, progress: ProgressFn
    ) -> tuple[dict[str, Path], RenderResult]:
        """Turn a task's downloaded inputs into output files, by output role."""

    def __call__(
        self, task: WorkerTask, inputs: dict[str, Path], outdir: Path, progress: ProgressFn
    ) -> tuple[dict[str, Path], RenderResult]:
        if task.model != self.model:
            raise TalkstackError(
                ErrorCode.MODEL_UNAVAILABLE,
                f"this worker serves {self.model}; the task asked for {task.model}",
            )
        self.load()
        return self.render(task, inputs, outdir, progress)


def load_engine(spec: str, model: str) -> Engine:
    """Build the engine named by `module:callable` (a class or a factory taking the model id), e.g.
    `talkstack.engines.gpu.video:VideoEngine`. The local worker pool uses this for GPU models."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"engine spec must look like package.module:callable, got {spec!r}")
    factory = getattr(importlib.import_module(module_name), attr)
    engine = factory(model)
    if not isinstance(engine, Engine):
        raise TypeError(f"{spec} built {type(engine).__name__}, not an Engine")
    return engine
