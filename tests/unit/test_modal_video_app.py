"""The `talkstack-video` Modal app as declared: imported with no Modal credentials and read back
through tests/support/modal_introspect.py (nothing is deployed or run)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from modal_workers.common import WEIGHTS_DIR
from talkstack.engines.gpu.video import WEIGHTS_SUBDIR
from talkstack.engines.gpu.weights import paths_for
from talkstack.engines.registry import modal_target
from talkstack.errors import ErrorCode, TalkstackError
from tests.support.modal_introspect import declared, method_names

CLASSES = {"LTXVideo": "ltx-video", "Wan22TI2V": "wan2.2-ti2v-5b"}
REPO = Path(__file__).resolve().parents[2]


def _fresh_import() -> ModuleType:
    sys.modules.pop("modal_workers.video", None)
    return importlib.import_module("modal_workers.video")


@pytest.fixture
def app_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "TALKSTACK_VIDEO_GPU"):
        monkeypatch.delenv(name, raising=False)
    yield _fresh_import()
    sys.modules.pop("modal_workers.video", None)  # the next import sees the default environment


def _user_hooks(module: ModuleType, cls_name: str, flags: str) -> dict[str, Any]:
    """The lifecycle hooks / methods Modal will call on a container's instance of `cls_name`."""
    from modal._partial_function import _find_callables_for_obj, _PartialFunctionFlags

    instance = getattr(module, cls_name)._get_user_cls()()
    wanted = 0
    for flag in flags.split("|"):
        wanted |= getattr(_PartialFunctionFlags, flag)
    return _find_callables_for_obj(instance, wanted) | {"__instance__": instance}


@pytest.mark.parametrize("cls_name", CLASSES)
def test_each_class_is_a_gpu_class_with_no_credentials(app_module, cls_name):
    # Time limits: test_modal_apps_serve_the_pipeline.py (against the pipeline's plan), as is `run`;
    # the GPU setting: the subprocess test below.
    fn = declared(app_module.app, cls_name)
    assert fn.gpu  # which one is the deploy-time setting
    assert fn.secrets == []  # workers hold no credentials: every transfer is a pre-signed URL
    assert method_names(app_module.app, cls_name) == {"run", "smoke"}


@pytest.mark.parametrize("cls_name", CLASSES)
def test_classes_serve_the_models_the_registry_sends_them(app_module, cls_name):
    model = CLASSES[cls_name]
    assert modal_target(model) == ("talkstack-video", cls_name)
    assert getattr(app_module, cls_name)._get_user_cls().model == model
    # The weights app stores each repository where the engine looks for it.
    assert paths_for(model, WEIGHTS_DIR)["pipeline"] == Path(WEIGHTS_DIR) / WEIGHTS_SUBDIR[model]


@pytest.mark.parametrize("cls_name", CLASSES)
def test_the_container_loads_its_own_model_from_the_weights_volume(app_module, cls_name):
    hooks = _user_hooks(app_module, cls_name, "ENTER_PRE_SNAPSHOT|ENTER_POST_SNAPSHOT")
    assert set(hooks) == {"load", "__instance__"}

    # No volume is mounted here, so loading stops at the weights check, naming the folder it read.
    with pytest.raises(TalkstackError) as info:
        hooks["load"]()
    assert info.value.code == ErrorCode.MODEL_UNAVAILABLE
    model = CLASSES[cls_name]
    assert f"{WEIGHTS_DIR}/{WEIGHTS_SUBDIR[model]}" in info.value.message
    assert hooks["__instance__"].engine.model == model


def test_the_deploy_time_gpu_setting_is_honoured_and_nothing_heavy_is_imported():
    code = (
        "import json, sys\n"
        "import modal_workers.video as video\n"
        "from tests.support.modal_introspect import declared\n"
        "print(json.dumps({'gpu': [declared(video.app, c).gpu for c in ('LTXVideo', 'Wan22TI2V')],\n"
        "  'heavy': sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_TOKEN")}
    env["TALKSTACK_VIDEO_GPU"] = "A100-80GB"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"gpu": ["A100-80GB", "A100-80GB"], "heavy": []}


class _RecordingEngine:
    """Stands in for a loaded engine at the one boundary `render_locally` calls: `engine(task, …)`."""

    model = "ltx-video"

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def __call__(self, task: Any, inputs: dict[str, Path], outdir: Path, progress: Any) -> Any:
        from talkstack.engines.base import RenderResult

        self.seen.append((task, {role: path.read_bytes() for role, path in inputs.items()}))
        progress(0.5, "half way")
        video = outdir / "video.mp4"
        video.write_bytes(b"mp4")
        result = RenderResult(output=video, bytes=3, duration_s=3.0, width=64, height=32, fps=25, frames=75)
        return {"video": video, "thumbnail": video}, result


def test_the_smoke_method_renders_a_real_task_document_from_bytes_without_transfers(app_module):
    from modal_workers.common import SmokeRender
    from talkstack.contract.worker import VideoTask

    hooks = _user_hooks(app_module, "LTXVideo", "CALLABLE_INTERFACE")
    instance = hooks["__instance__"]
    instance.engine, instance.load_s, instance.inputs_served = _RecordingEngine(), 42.0, 0

    first = SmokeRender.model_validate(hooks["smoke"]("a red fox", b"png", {"duration_s": 3.0}))
    second = SmokeRender.model_validate(hooks["smoke"]("a red fox", None, {"duration_s": 6.0}))

    task, files = instance.engine.seen[0]
    assert isinstance(task, VideoTask)  # parsed by the worker contract, as a job's task would be
    assert task.text == "a red fox" and task.options.duration_s == 3.0 and task.options.model == "ltx-video"
    assert files == {"image": b"png"}
    assert instance.engine.seen[1][1] == {}  # no image: text to video
    assert (first.video, first.frames, first.load_s, first.first_input) == (b"mp4", 75, 42.0, True)
    assert second.first_input is False and first.render_s >= 0 and first.gpu is None


def test_every_class_caps_its_containers_from_the_settings(app_module, monkeypatch):
    for cls_name in CLASSES:
        assert declared(app_module.app, cls_name).max_containers  # never unbounded GPUs
    monkeypatch.setenv("TALKSTACK_VIDEO_MAX_CONTAINERS", "5")
    module = _fresh_import()
    for cls_name in CLASSES:
        assert declared(module.app, cls_name).max_containers == 5
