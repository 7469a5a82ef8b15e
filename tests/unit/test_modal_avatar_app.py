"""The `talkstack-avatar` Modal app as declared: imported with no Modal credentials and read back
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

import pytest

from modal_workers.common import WEIGHTS_DIR, WEIGHTS_VOLUME
from talkstack.contract.request import AvatarOptions, VideoOptions
from talkstack.engines.registry import modal_parameters, modal_target
from tests.support.modal_introspect import declared, method_names

GPU_CLASSES = {"MultiTalk": "multitalk", "InfiniteTalk": "infinitetalk"}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "TALKSTACK_AVATAR_GPU"):
        monkeypatch.delenv(name, raising=False)
    sys.modules.pop("modal_workers.avatar", None)
    yield importlib.import_module("modal_workers.avatar")
    sys.modules.pop("modal_workers.avatar", None)


@pytest.mark.parametrize("cls_name", GPU_CLASSES)
def test_gpu_classes_declare_gpu_host_memory_volume_and_time_limits(app_module, cls_name):
    fn = declared(app_module.app, cls_name)
    assert app_module.app.name == "talkstack-avatar"
    assert fn.gpu == "H100"
    assert fn.memory >= 96 * 1024  # 64 GB hosts are OOM-killed while the 14B model loads
    assert fn.volumes == {WEIGHTS_DIR: WEIGHTS_VOLUME}
    assert fn.secrets == []  # no credentials: every transfer is a pre-signed URL
    assert fn.timeout == 3 * 3600 and fn.startup_timeout == 30 * 60
    assert fn.scaledown_window == 10 * 60
    assert method_names(app_module.app, cls_name) == {"run"}
    model = GPU_CLASSES[cls_name]
    assert modal_target(model) == ("talkstack-avatar", cls_name)
    assert getattr(app_module, cls_name)._get_user_cls().model == model


def test_turbo_is_a_class_parameter_so_turbo_jobs_get_their_own_containers(app_module):
    user_cls = app_module.MultiTalk._get_user_cls()
    assert "turbo" in vars(user_cls) or "turbo" in vars(user_cls.__mro__[1])
    assert modal_parameters("multitalk", AvatarOptions(model="multitalk", turbo=True)) == {"turbo": True}
    assert modal_parameters("ltx-video", VideoOptions()) == {}


def test_the_stitcher_is_a_cpu_class(app_module):
    fn = declared(app_module.app, "Stitcher")
    assert fn.gpu is None and fn.cpu == 4 and fn.volumes == {}
    assert modal_target("stitch") == ("talkstack-avatar", "Stitcher")


def test_the_official_code_is_pinned_to_commits(app_module):
    for url, commit in (app_module.MULTITALK_REPO, app_module.INFINITETALK_REPO):
        assert url.startswith("https://github.com/MeiGen-AI/") and len(commit) == 40
        assert any(f"checkout {commit}" in c for c in app_module._checkout((url, commit), "/opt/x"))


def test_the_deploy_time_gpu_setting_is_honoured_and_nothing_heavy_is_imported():
    code = (
        "import json, sys\n"
        "import modal_workers.avatar as avatar\n"
        "from tests.support.modal_introspect import declared\n"
        "print(json.dumps({'gpu': [declared(avatar.app, c).gpu for c in ('MultiTalk', 'InfiniteTalk')],\n"
        "  'heavy': sorted(m for m in ('torch', 'transformers', 'wan') if m in sys.modules)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_TOKEN")}
    env["TALKSTACK_AVATAR_GPU"] = "A100-80GB"
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
