"""Read back what a Modal app declares for a class or function, without deploying or credentials.

Modal keeps the declaration in two places: the function spec (image, GPU, volumes, secrets) and the
arguments captured by the function's loader (timeout, scale-down window, containers, snapshots).
Both are private; if a Modal upgrade moves them, these helpers fail loudly rather than pass.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import modal
from modal_proto import api_pb2


@contextmanager
def offline_import(
    monkeypatch: Any, tmp_path: Path, module: str, unset: Iterable[str] = ()
) -> Iterator[ModuleType]:
    """`module` (a modal_workers app) imported fresh with no Modal token in the environment or the
    config file (and the variables `unset` unset), and forgotten afterwards so the next import sees
    the default environment."""
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", *unset):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path / "no-modal.toml"))
    sys.modules.pop(module, None)
    try:
        yield importlib.import_module(module)
    finally:
        sys.modules.pop(module, None)


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


# --- a deployed class as Modal's control plane and containers see it -----------------------------


@dataclass(frozen=True)
class RealClass:
    """A class of one of our Modal apps, read the way `modal deploy` registers it."""

    app: str
    name: str
    cls: modal.Cls
    parameters: api_pb2.ClassParameterInfo
    """The parameter schema `modal deploy` sends with the class (FunctionInfo.class_parameter_info):
    PROTO with one spec per `modal.parameter()`, or PICKLE for a class that declares none."""
    methods: tuple[str, ...]


def real_class(app_name: str, cls_name: str) -> RealClass:
    """`cls_name` of the app `app_name` as modal_workers/<family>.py declares it (imported, not deployed)."""
    module = importlib.import_module(f"modal_workers.{app_name.removeprefix('talkstack-').replace('-', '_')}")
    app = module.app
    assert app.name == app_name, f"modal_workers.{module.__name__} declares app {app.name}, not {app_name}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        classes, functions = app.registered_classes, app.registered_functions
    if cls_name not in classes:
        raise LookupError(f"app {app_name} ({module.__name__}) has no class {cls_name}: {sorted(classes)}")
    service = _impl(functions[f"{cls_name}.*"])
    return RealClass(
        app=app_name,
        name=cls_name,
        cls=classes[cls_name],
        parameters=service._source_info.class_parameter_info(),
        methods=tuple(sorted(_impl(classes[cls_name])._get_method_names())),
    )


def container_instance(real: RealClass, serialized_params: bytes | None) -> Any:
    """The instance a container of `real` builds for a function bound with `serialized_params`
    (None: the class itself, unbound), through Modal's own container code: parameters decoded by the
    class's registered format, then the class constructed from them. Raises what the container would."""
    from modal._runtime.user_code_imports import get_user_class_instance
    from modal._serialization import deserialize_params
    from modal._utils.async_utils import synchronizer

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    if serialized_params:
        definition = api_pb2.Function(class_parameter_info=real.parameters)
        args, kwargs = deserialize_params(serialized_params, definition, None)  # type: ignore[arg-type]
    return get_user_class_instance(synchronizer._translate_in(real.cls), args, kwargs)


def parameter_values(real: RealClass, instance: Any) -> dict[str, Any]:
    """The class parameters `instance` holds (its `modal.parameter()` attributes)."""
    from modal.cls import _get_class_constructor_signature

    names = list(_get_class_constructor_signature(real.cls._get_user_cls()).parameters)
    return {name: getattr(instance, name) for name in names}
