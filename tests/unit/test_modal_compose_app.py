"""The `talkstack-compose` Modal app as declared: imported with no Modal credentials and read back
through Modal's own objects (nothing is deployed); its `run` answers a real compose task document
through the worker runner and the compositor, its image installs what that code imports."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from talkstack.contract.composition import COMPOSE_OUTPUTS, scene_thumbnail_role
from talkstack.contract.worker import ComposeTask, Markers, OutputUrl, ResultMarker
from talkstack.engines.registry import modal_target
from talkstack.media.video import probe_video
from tests.support.modal_introspect import declared, method_names
from tests.unit.test_modal_worker_imports import LOCAL_ONLY, missing_from, third_party_imports

REPO = Path(__file__).resolve().parents[2]
COMPOSE_MODULES = sorted(f"talkstack.compose.{p.stem}" for p in (REPO / "talkstack" / "compose").glob("*.py"))
COMPOSE_ENTRIES = ["modal_workers.common", "talkstack.workers.runner", *COMPOSE_MODULES]
"""What the Composer runs (as test_modal_worker_imports.py lists the stitcher's: the container's
`run` reaches the image-safety app only through Modal, never by importing its classifier)."""
NOT_RUN_HERE = {*LOCAL_ONLY, "talkstack.engines.quality", "talkstack.engines.lite.matte"}
"""lite_steps holds every CPU step; the stitch step's quality report never runs on the Composer, nor
the lite-matte step (the talkstack-matte app's LiteMatte class runs it)."""


@pytest.fixture
def app_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path / "no-modal.toml"))
    monkeypatch.setenv("TALKSTACK_COMPOSE_TIMEOUT_S", "1234")
    sys.modules.pop("modal_workers.compose", None)
    yield importlib.import_module("modal_workers.compose")
    sys.modules.pop("modal_workers.compose", None)


def test_the_composer_is_a_cpu_class_the_pipeline_finds_by_the_compose_model(app_module):
    fn = declared(app_module.app, "Composer")
    assert fn.gpu is None and fn.volumes == {} and fn.secrets == []  # no GPU, no weights, no credentials
    assert fn.timeout == 1234  # TALKSTACK_COMPOSE_TIMEOUT_S where `modal deploy` runs
    assert method_names(app_module.app, "Composer") == {"run"}
    assert modal_target("compose") == ("talkstack-compose", "Composer")


def test_the_compose_image_installs_everything_the_compose_step_imports(app_module):
    modules = third_party_imports(COMPOSE_ENTRIES, NOT_RUN_HERE)
    assert {"cv2", "librosa", "PIL", "av", "numpy"} <= set(modules)
    assert "torch" not in modules and "boto3" not in modules  # a CPU image; workers hold no AWS client
    assert missing_from(app_module.image, modules) == {}


class _S3:
    def __init__(self) -> None:
        self.written: dict[str, bytes] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            self.written[request.url.path] = request.read()
            return httpx.Response(200)
        return httpx.Response(404)  # the job's cancel flag: not set


def test_run_composes_a_task_document_through_the_runner(app_module, tmp_path):
    from modal._partial_function import _find_callables_for_obj, _PartialFunctionFlags

    def put(name: str) -> OutputUrl:
        return OutputUrl(url=f"https://s3.test/{name}", key=name, content_type="application/octet-stream")

    scenes = [
        {"rendered": False, "scene": {"source": {"type": "title", "title": "One"}, "duration_s": 1}},
        {"rendered": False, "scene": {"source": {"type": "title", "title": "Two"}, "duration_s": 1}},
    ]
    roles = ["video", "thumbnail", "preview", scene_thumbnail_role(0), scene_thumbnail_role(1)]
    task = ComposeTask(
        job_id="job-1",
        attempt_id="compose-1-abc",
        attempt=1,
        model="compose",
        options={
            "scenes": scenes,
            "options": {"captions": {"sidecar": False}},
            "preview": True,
            "width": 640,
            "height": 360,
        },
        outputs={role: put(role) for role in roles},
        markers=Markers(progress=put("progress.json"), result=put("result.json"), error=put("error.json")),
        heartbeat_interval_s=30,
        deadline=datetime.now(UTC) + timedelta(hours=1),
        watermark=False,
    )
    instance = app_module.Composer._get_user_cls()()
    methods = _find_callables_for_obj(
        instance, _PartialFunctionFlags.CALLABLE_INTERFACE | _PartialFunctionFlags.EXIT
    )
    s3 = _S3()
    instance.client = httpx.Client(transport=httpx.MockTransport(s3))

    assert methods["run"](task.model_dump(mode="json")) is True, s3.written.get("/error.json")
    video = tmp_path / COMPOSE_OUTPUTS["video"]
    video.write_bytes(s3.written["/video"])
    info = probe_video(video)
    assert (info.width, info.height, info.frames) == (640, 360, 50)
    assert s3.written["/preview"][8:12] == b"WEBP" and s3.written["/scene_thumbnail_1"][:2] == b"\xff\xd8"
    assert ResultMarker.model_validate_json(s3.written["/result.json"]).attempt_id == "compose-1-abc"
    methods["close"]()
    assert instance.client.is_closed


def test_the_fonts_the_compositor_draws_with_reach_the_container(app_module):
    """Titles, overlays and burnt-in captions are drawn with talkstack's bundled fonts: they ship in
    the talkstack source mount (Modal's default filter would leave non-Python files behind)."""
    import inspect

    from talkstack.compose.text import FONT_FILES
    from tests.support.modal_introspect import _impl

    mount = inspect.getclosurevars(_impl(app_module.image)._load).nonlocals["mount"]
    files = {str(remote) for entry in mount.entries for _local, remote in entry.get_files_to_upload()}
    for name in FONT_FILES.values():
        assert f"/root/talkstack/assets/fonts/{name}" in files
