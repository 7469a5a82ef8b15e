"""Read back what a Modal app declares for a class or function, without deploying or credentials.

Modal keeps the declaration in two places: the function spec (image, GPU, volumes, secrets) and the
arguments captured by the function's loader (timeout, scale-down window, containers, snapshots).
Both are private; if a Modal upgrade moves them, these helpers fail loudly rather than pass.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Any

import modal


@dataclass(frozen=True)
class Declared:
    gpu: Any
    volumes: dict[str, str]
    """Mount path → volume name."""
    secrets: list[str]
    timeout: int
    scaledown_window: int | None
    startup_timeout: int | None
    min_containers: int | None
    max_containers: int | None
    enable_memory_snapshot: bool
    memory: Any
    cpu: Any
    image: Any


def _impl(obj: Any) -> Any:
    originals = [v for k, v in vars(obj).items() if k.startswith("_sync_original")]
    assert originals, f"cannot find the implementation behind {obj!r} (modal internals changed?)"
    return originals[0]


def _name(obj: Any) -> str:
    text = repr(obj)  # modal.Volume.from_name('talkstack-weights')
    assert "from_name('" in text, f"expected a named Modal object, got {text}"
    return text.split("from_name('", 1)[1].split("'", 1)[0]


def declared(app: modal.App, name: str) -> Declared:
    """What `app` declares for class or function `name`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        functions = app.registered_functions
    function = functions.get(f"{name}.*") or functions.get(name)
    assert function is not None, f"{name} is not registered on app {app.name}: {sorted(functions)}"
    impl = _impl(function)
    spec = impl._spec
    captured = inspect.getclosurevars(impl._load).nonlocals
    assert "timeout" in captured, "modal internals changed: the loader no longer captures the options"
    return Declared(
        gpu=spec.gpus,
        volumes={str(path): _name(volume) for path, volume in spec.volumes.items()},
        secrets=[_name(secret) for secret in spec.secrets],
        timeout=captured["timeout"],
        scaledown_window=captured.get("scaledown_window"),
        startup_timeout=captured.get("startup_timeout"),
        min_containers=captured.get("min_containers"),
        max_containers=captured.get("max_containers"),
        enable_memory_snapshot=bool(captured.get("enable_memory_snapshot")),
        memory=spec.memory,
        cpu=spec.cpu,
        image=spec.image,
    )


def method_names(app: modal.App, name: str) -> set[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls = app.registered_classes[name]
    return set(_impl(cls)._get_method_names())
