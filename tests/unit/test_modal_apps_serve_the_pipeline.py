"""Every Modal worker class against the pipeline that sends it work, through Modal's own objects:
the timeout Modal registers for a class is the limit the pipeline plans that model's steps within,
and the `run` method Modal calls in a container answers a real task document with its own engine,
through the task's pre-signed URLs. Nothing is deployed; the apps are imported without credentials."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from talkstack.contract.worker import (
    AvatarTask,
    Markers,
    MatteTask,
    OutputUrl,
    ResultMarker,
    VideoTask,
    VoiceTask,
    WorkerTaskBase,
)
from talkstack.engines.base import RenderResult
from talkstack.engines.registry import STITCH_MODEL, get_model, list_models, modal_target
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.plan import worker_run_limit
from talkstack.settings import get_modal_deploy
from tests.support.modal_introspect import declared
from tests.support.pipeline_env import local_config_fields

FAMILIES = ("avatar", "video", "voice", "matte")
GPU_MODELS = [
    m.id for m in list_models() if m.modal_class
]  # every model with a Modal class (lite-matte: CPU)
TASKS: dict[str, type[WorkerTaskBase]] = {
    "avatar": AvatarTask,
    "video": VideoTask,
    "voice": VoiceTask,
    "matte": MatteTask,
}
OUTPUT = {"voice": "audio", "matte": "mask"}  # the output role of each kind of step (else video)
TIMEOUTS = {  # none of them a default, so a class that read another family's setting shows
    "TALKSTACK_AVATAR_TIMEOUT_S": "7001",
    "TALKSTACK_VIDEO_TIMEOUT_S": "5003",
    "TALKSTACK_VOICE_TIMEOUT_S": "1801",
    "TALKSTACK_STITCH_TIMEOUT_S": "1799",
    "TALKSTACK_MATTE_TIMEOUT_S": "1797",
}


def _fresh_apps() -> dict[str, ModuleType]:
    for family in FAMILIES:
        sys.modules.pop(f"modal_workers.{family}", None)
    return {f"talkstack-{f}": importlib.import_module(f"modal_workers.{f}") for f in FAMILIES}


@pytest.fixture
def apps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, ModuleType]]:
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path / "no-modal.toml"))
    yield _fresh_apps()
    for family in FAMILIES:  # the next import sees the default environment
        sys.modules.pop(f"modal_workers.{family}", None)
    get_modal_deploy.cache_clear()


@pytest.mark.parametrize("model", [*GPU_MODELS, STITCH_MODEL])
def test_each_class_may_run_exactly_as_long_as_the_pipeline_plans_its_steps(
    apps, monkeypatch, no_pipeline_environment, model
):
    """The pipeline never gives a step on Modal (nor its pre-signed URLs) more time than the class
    runs, and refuses work that cannot fit: both read the same deploy settings."""
    for name, value in TIMEOUTS.items():
        monkeypatch.setenv(name, value)
    configured = _fresh_apps()  # `modal deploy` where these are set
    get_modal_deploy.cache_clear()  # and the pipeline's Lambdas
    config = PipelineConfig(**{**local_config_fields(), "worker_backend": "modal"})  # type: ignore[arg-type]

    app_name, cls_name = modal_target(model)
    registered = declared(configured[app_name].app, cls_name).timeout
    family = "stitch" if model == STITCH_MODEL else get_model(model).task
    setting = int(TIMEOUTS[f"TALKSTACK_{family.upper()}_TIMEOUT_S"])
    assert registered == worker_run_limit(model, config) == setting


def _container(module: ModuleType, cls_name: str) -> tuple[Any, dict[str, Any]]:
    """A container's instance of the class and the methods/hooks Modal finds on it."""
    from modal._partial_function import _find_callables_for_obj, _PartialFunctionFlags

    instance = getattr(module, cls_name)._get_user_cls()()
    flags = _PartialFunctionFlags.CALLABLE_INTERFACE | _PartialFunctionFlags.EXIT
    return instance, _find_callables_for_obj(instance, flags)


class _S3:
    """The pre-signed URLs' side, answered at httpx's transport: what was PUT where."""

    def __init__(self) -> None:
        self.written: dict[str, bytes] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            self.written[request.url.path] = request.read()
            return httpx.Response(200)
        return httpx.Response(404)  # the job's cancel flag: not set


def _task(model: str) -> WorkerTaskBase:
    def put(name: str) -> OutputUrl:
        return OutputUrl(url=f"https://s3.test/{name}", key=name, content_type="application/octet-stream")

    task = get_model(model).task
    kind = TASKS[task]
    output = OUTPUT.get(task, "video")
    options = {"model": model, "scene": 0} if task == "matte" else {"model": model}
    return kind(
        job_id="job-1",
        attempt_id=f"{kind.model_fields['step'].default}-1-abc",
        attempt=1,
        model=model,
        text="hello there",
        options=options,
        outputs={output: put(output)},
        markers=Markers(progress=put("progress.json"), result=put("result.json"), error=put("error.json")),
        heartbeat_interval_s=30,
        deadline=datetime.now(UTC) + timedelta(hours=1),
    )


@pytest.mark.parametrize("model", GPU_MODELS)
def test_the_run_method_answers_a_task_document_with_the_containers_engine_and_client(apps, model):
    app_name, cls_name = modal_target(model)
    instance, methods = _container(apps[app_name], cls_name)
    seen: list[WorkerTaskBase] = []

    def engine(task: Any, inputs: dict[str, Path], outdir: Path, progress: Any) -> Any:
        # The loaded engine, at the one call the runner makes (no weights here).
        seen.append(task)
        output = outdir / "out.bin"
        output.write_bytes(b"rendered")
        role = OUTPUT.get(task.step, "video")
        return {role: output}, RenderResult(output=output, bytes=8, duration_s=1.0)

    s3 = _S3()
    instance.engine, instance.client = engine, httpx.Client(transport=httpx.MockTransport(s3))
    document = _task(model).model_dump(mode="json")  # what `.spawn(task)` delivers

    assert methods["run"](document) is True
    assert [t.model for t in seen] == [model] and seen[0].attempt_id == document["attempt_id"]
    output = OUTPUT.get(get_model(model).task, "video")
    assert s3.written[f"/{output}"] == b"rendered"
    assert ResultMarker.model_validate_json(s3.written["/result.json"]).attempt_id == document["attempt_id"]
    assert "/error.json" not in s3.written

    methods["close"]()  # Modal's exit hook: the container's client goes with it
    assert instance.client.is_closed


@pytest.mark.parametrize("model", [m for m in GPU_MODELS if get_model(m).gpu])
def test_each_gpu_class_mounts_the_volume_the_weights_app_fills_at_the_same_path(apps, monkeypatch, model):
    """The GPU containers never download: they read what `modal run -m modal_workers.weights` stored."""
    # Imported afresh in this test's environment; monkeypatch's teardown puts back whatever
    # sys.modules held before (or removes it), so no later test gets this copy.
    monkeypatch.setitem(sys.modules, "modal_workers.weights", None)
    del sys.modules["modal_workers.weights"]
    weights = importlib.import_module("modal_workers.weights")
    filled = declared(weights.app, "download_models").volumes
    app_name, cls_name = modal_target(model)
    assert filled and declared(apps[app_name].app, cls_name).volumes == filled
