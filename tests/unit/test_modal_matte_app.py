"""The `talkstack-matte` Modal app as declared: imported with no Modal credentials and read back
through tests/support/modal_introspect.py (nothing is deployed or run). Time limits and `run`
against the pipeline: test_modal_apps_serve_the_pipeline.py."""

from __future__ import annotations

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
from talkstack.engines.gpu.weights import paths_for
from talkstack.engines.registry import get_model, modal_target
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.workers.lite_steps import LITE_STEPS
from tests.support.modal_introspect import declared, method_names, offline_import

CLASSES = {"ViTMatte": "vitmatte", "LiteMatte": "lite-matte"}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    unset = ("TALKSTACK_MATTE_GPU", "TALKSTACK_MATTE_MAX_CONTAINERS")
    with offline_import(monkeypatch, tmp_path, "modal_workers.matte", unset) as module:
        yield module


def _container(module: ModuleType, cls_name: str, flags: str) -> dict[str, Any]:
    from modal._partial_function import _find_callables_for_obj, _PartialFunctionFlags

    instance = getattr(module, cls_name)._get_user_cls()()
    wanted = 0
    for flag in flags.split("|"):
        wanted |= getattr(_PartialFunctionFlags, flag)
    return _find_callables_for_obj(instance, wanted) | {"__instance__": instance}


@pytest.mark.parametrize("cls_name", CLASSES)
def test_classes_serve_the_models_the_registry_sends_them(app_module, cls_name):
    model = CLASSES[cls_name]
    assert modal_target(model) == ("talkstack-matte", cls_name)
    assert getattr(app_module, cls_name)._get_user_cls().model == model
    fn = declared(app_module.app, cls_name)
    assert fn.secrets == []  # workers hold no credentials: every transfer is a pre-signed URL
    assert fn.max_containers  # never unbounded
    assert method_names(app_module.app, cls_name) == {"run"}


def test_vitmatte_is_a_gpu_class_on_the_weights_volume_and_lite_matte_needs_no_gpu(app_module):
    gpu, cpu = declared(app_module.app, "ViTMatte"), declared(app_module.app, "LiteMatte")
    assert gpu.gpu and WEIGHTS_DIR in gpu.volumes
    assert not cpu.gpu and cpu.volumes == {} and cpu.cpu
    assert get_model("vitmatte").gpu and not get_model("lite-matte").gpu
    assert (
        paths_for("vitmatte", WEIGHTS_DIR)["model"]
        == Path(WEIGHTS_DIR) / "hustvl/vitmatte-small-composition-1k"
    )


def test_vitmatte_container_loads_from_the_weights_volume(app_module):
    hooks = _container(app_module, "ViTMatte", "ENTER_PRE_SNAPSHOT|ENTER_POST_SNAPSHOT")
    assert set(hooks) == {"load", "__instance__"}
    with pytest.raises(TalkstackError) as info:  # no volume here: the load names the folder it read
        hooks["load"]()
    assert info.value.code == ErrorCode.MODEL_UNAVAILABLE
    assert f"{WEIGHTS_DIR}/hustvl/vitmatte-small-composition-1k" in info.value.message


def test_lite_matte_container_runs_the_lite_step(app_module):
    hooks = _container(app_module, "LiteMatte", "ENTER_PRE_SNAPSHOT|ENTER_POST_SNAPSHOT")
    hooks["load"]()
    instance = hooks["__instance__"]
    assert instance.engine is LITE_STEPS["lite-matte"]
    instance.client.close()


def test_deploy_time_settings_are_honoured_and_nothing_heavy_is_imported():
    code = (
        "import json, sys\n"
        "import modal_workers.matte as matte\n"
        "from tests.support.modal_introspect import declared\n"
        "print(json.dumps({'gpu': declared(matte.app, 'ViTMatte').gpu,\n"
        "  'max': [declared(matte.app, c).max_containers for c in ('ViTMatte', 'LiteMatte')],\n"
        "  'heavy': sorted(m for m in ('torch', 'transformers', 'mediapipe', 'cv2') if m in sys.modules)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_TOKEN")}
    env.update({"TALKSTACK_MATTE_GPU": "A10G", "TALKSTACK_MATTE_MAX_CONTAINERS": "3"})
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"gpu": "A10G", "max": [3, 3], "heavy": []}


MATTE_ENTRIES = ["modal_workers.common", "talkstack.workers.runner", "talkstack.engines.lite.matte"]
"""What LiteMatte runs: the runner and lite-matte (LITE_STEPS' other steps never run there)."""
NOT_RUN_HERE = {"talkstack.compose.render"}
"""The compose step (LITE_STEPS' `compose`) runs on the talkstack-compose app's Composer only."""


def test_each_image_installs_everything_its_matte_code_imports(app_module):
    """Walked with talkstack's import graph (tests/unit/test_modal_worker_imports.py), checked against
    the pip installs of the Dockerfile Modal generates for each image."""
    from tests.unit.test_modal_worker_imports import missing_from, third_party_imports

    cpu = third_party_imports(MATTE_ENTRIES, NOT_RUN_HERE)
    assert {"cv2", "mediapipe", "av", "numpy"} <= set(cpu) and "torch" not in cpu
    assert missing_from(app_module.cpu_image, cpu) == {}
    gpu = third_party_imports([*MATTE_ENTRIES, "talkstack.engines.gpu.matte"], NOT_RUN_HERE)
    assert {"torch", "transformers", "mediapipe", "cv2"} <= set(gpu)
    assert missing_from(app_module.gpu_image, gpu) == {}


def test_the_segmentation_model_reaches_both_containers(app_module):
    """lite-matte's model file ships inside the talkstack source mount (Modal's default filter would
    leave non-Python files behind)."""
    import inspect

    from tests.support.modal_introspect import _impl

    for image in (app_module.cpu_image, app_module.gpu_image):
        mount = inspect.getclosurevars(_impl(image)._load).nonlocals["mount"]
        files = {str(remote) for entry in mount.entries for _local, remote in entry.get_files_to_upload()}
        assert "/root/talkstack/assets/models/selfie_segmentation.tflite" in files
        assert "/root/talkstack/assets/models/face_landmarker.task" in files
