"""Every third-party module talkstack's own worker code imports is installed in the Modal image that
runs it.

The avatar quality report brought MediaPipe, OpenCV and librosa into the avatar workers and the
stitcher; an image without them fails only on Modal (a GPU container, minutes into a cold start).
This walks talkstack's import graph with `ast` from what each image runs — every import in each
first-party file, function bodies included, since the workers call them — and checks each
third-party module against the pip installs in the Dockerfile Modal itself generates for the image
(tests/unit/test_modal_images.py reads it). Module → distribution comes from the metadata of this
environment, where the test suite runs the same code. The talkstack source must reach the
container with its assets (the landmarker's model file), which Modal's default filter leaves out.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.support.modal_introspect import _impl
from tests.unit.test_modal_images import _norm, dockerfile, installed

REPO = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"talkstack", "modal_workers"}
PROVIDED = {
    "modal": "Modal's container runtime installs its own client",
    "wan": "the upstream checkouts (test_modal_images.py checks what they import)",
}
STITCH_ENTRIES = [
    "modal_workers.common",
    "talkstack.workers.runner",
    # what lite_steps.stitch imports in its body (the other lite steps never run on the stitcher)
    "talkstack.engines.quality",
    "talkstack.media.image",
    "talkstack.media.segments",
    "talkstack.media.stitch",
    "talkstack.media.video",
]
LOCAL_ONLY = {"talkstack.engines.lite.avatar", "talkstack.engines.lite.voice"}
"""The lite engines run in the local stack only; their steps share a module with the stitch step."""
ELSEWHERE = {"talkstack.compose.render", "talkstack.engines.lite.matte"}
"""Steps that share LITE_STEPS with the stitch step but run in their own apps: compose on the
talkstack-compose Composer, lite-matte on the talkstack-matte LiteMatte (their images are tested in
test_modal_compose_app.py and test_modal_matte_app.py)."""


def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


class _Imports(ast.NodeVisitor):
    """(module, name) for every import in a file, resolving relative ones; skips TYPE_CHECKING blocks."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.package = module.split(".") if is_package else module.split(".")[:-1]
        self.found: list[tuple[str, str | None]] = []

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(alias.name, None) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            base = self.package[: len(self.package) - node.level + 1]
            module = ".".join([*base, *([node.module] if node.module else [])])
        self.found += [(module, alias.name) for alias in node.names]


def third_party_imports(entries: Iterable[str], skip: set[str] = frozenset()) -> dict[str, set[str]]:
    """Top-level third-party module → the first-party modules that import it."""
    seen: set[str] = set()
    found: dict[str, set[str]] = {}
    queue = list(entries)
    while queue:
        module = queue.pop()
        path = _module_file(module)
        if module in seen or module in skip or path is None:
            continue
        seen.add(module)
        parts = module.split(".")
        queue += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
        visitor = _Imports(module, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text()))
        for imported, name in visitor.found:
            top = imported.split(".")[0]
            if top in FIRST_PARTY:
                queue += [imported, f"{imported}.{name}"] if name else [imported]
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, set()).add(module)
    return found


def missing_from(image: object, modules: dict[str, set[str]]) -> dict[str, str]:
    """Modules whose distribution (as this environment's metadata says) the image does not install,
    directly or as a requirement of a package it installs."""
    packages = installed(dockerfile(image))
    required = set()
    for name in packages:
        try:
            required |= {_norm(Requirement(r).name) for r in importlib.metadata.requires(name) or []}
        except importlib.metadata.PackageNotFoundError:
            continue
    owners = importlib.metadata.packages_distributions()
    missing = {}
    for module, importers in sorted(modules.items()):
        if module in PROVIDED:
            continue
        dists = {_norm(d) for d in owners.get(module, [])}
        assert dists, f"{module} (imported by {sorted(importers)}) is not installed here either"
        if not dists & (set(packages) | required):
            missing[module] = f"{sorted(dists)} for {sorted(importers)[:3]}"
    return missing


@pytest.fixture(scope="module")
def avatar_app():
    sys.modules.pop("modal_workers.avatar", None)
    yield importlib.import_module("modal_workers.avatar")
    sys.modules.pop("modal_workers.avatar", None)


def test_the_walk_finds_the_quality_reports_tools_where_the_workers_import_them():
    found = third_party_imports(["talkstack.engines.quality"])
    assert {"cv2", "mediapipe", "librosa", "av", "numpy"} <= set(found)
    assert "talkstack.engines.lite.face" in found["mediapipe"]  # followed through first-party code
    assert "boto3" not in third_party_imports(["modal_workers.avatar"])  # workers hold no AWS client


def test_the_gpu_avatar_image_installs_everything_its_code_imports(avatar_app):
    modules = third_party_imports(["modal_workers.avatar"], skip=ELSEWHERE)
    assert {"torch", "transformers", "mediapipe", "cv2", "librosa"} <= set(modules)
    assert missing_from(avatar_app.image, modules) == {}


def test_the_stitch_image_installs_everything_the_stitch_step_imports(avatar_app):
    modules = third_party_imports(STITCH_ENTRIES, skip=LOCAL_ONLY | ELSEWHERE)
    assert {"cv2", "mediapipe", "librosa"} <= set(modules)  # colour matching + the joined video's report
    assert "torch" not in modules  # a CPU image
    assert missing_from(avatar_app.stitch_image, modules) == {}


def test_the_talkstack_source_reaches_the_containers_with_its_assets(avatar_app):
    """The mount `add_local_python_source` adds, listed the way Modal uploads it."""
    for image in (avatar_app.image, avatar_app.stitch_image):
        load = _impl(image)._load
        mount = inspect.getclosurevars(load).nonlocals["mount"]
        files = {str(remote) for entry in mount.entries for _local, remote in entry.get_files_to_upload()}
        assert "/root/talkstack/assets/models/face_landmarker.task" in files
        assert "/root/talkstack/assets/samples/portrait.png" in files
        assert "/root/talkstack/engines/quality.py" in files
        assert not any(name.endswith(".pyc") for name in files)


@pytest.mark.parametrize(
    "variable",
    ["TALKSTACK_QUALITY_MIN_LIPSYNC", "TALKSTACK_SCAN_THRESHOLD", "TALKSTACK_WATERMARK_KEY"],
)
def test_worker_settings_set_where_modal_deploy_runs_reach_the_workers(monkeypatch, variable):
    """The workers judge, scan and mark their own renders: TALKSTACK_QUALITY_*, TALKSTACK_SCAN_* and
    TALKSTACK_WATERMARK* of the deploying shell become the image's environment, in a layer after the
    heavy ones."""
    monkeypatch.setenv(variable, "0.45")
    sys.modules.pop("modal_workers.avatar", None)
    try:
        app = importlib.import_module("modal_workers.avatar")
        for image in (app.image, app.stitch_image):
            commands = dockerfile(image)
            env = [i for i, c in enumerate(commands) if c.startswith(f"ENV {variable}")]
            assert env, commands[-3:]
            assert env[0] > max(i for i, c in enumerate(commands) if " pip install " in c)
    finally:
        sys.modules.pop("modal_workers.avatar", None)
