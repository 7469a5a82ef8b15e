"""The avatar image as Modal would build it: the Dockerfile commands Modal's own image objects
generate offline (each layer's `dockerfile_function`, walked from the base), checked against what
the upstream code imports (modal_workers/upstream_imports.json, from scripts/upstream_imports.py)
and what its packages need. Nothing is built or deployed."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.support.modal_introspect import _impl

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "modal_workers" / "upstream_imports.json"
BUILDER_VERSION = "2025.06"
"""A Modal image builder version (modal/builder/base-images.json: python 3.11.12 on bookworm)."""
MIRRORS = {
    "multitalk": Path("/work/.mirror/MeiGen-AI+MultiTalk/repo"),
    "infinitetalk": Path("/work/.mirror/MeiGen-AI+InfiniteTalk/repo"),
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(\S+)$")

sys.path.insert(0, str(REPO / "scripts"))
upstream_imports = importlib.import_module("upstream_imports")


@pytest.fixture(scope="module")
def avatar() -> Iterator[ModuleType]:
    sys.modules.pop("modal_workers.avatar", None)
    yield importlib.import_module("modal_workers.avatar")
    sys.modules.pop("modal_workers.avatar", None)


def dockerfile(image: Any, version: str = BUILDER_VERSION) -> list[str]:
    """The Dockerfile commands of every layer of `image`, base first, as Modal generates them."""
    load = _impl(image)._load if not type(image).__name__.startswith("_") else image._load
    captured = inspect.getclosurevars(load).nonlocals
    bases = list((captured.get("base_images") or {}).values())
    if captured.get("base_image") is not None:
        bases.append(captured["base_image"])
    commands: list[str] = []
    for base in bases:
        commands += dockerfile(base, version)
    if captured.get("dockerfile_function") is not None:
        commands += captured["dockerfile_function"](version).commands
    assert bases or captured.get("dockerfile_function"), "modal internals changed: no layer found"
    return commands


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_steps(commands: list[str]) -> list[dict[str, str]]:
    """One {distribution: version} per `uv pip install` RUN, in build order."""
    steps = []
    for command in commands:
        if command.startswith("RUN ") and " pip install " in command:
            pins = {}
            for token in shlex.split(command.removeprefix("RUN ")):
                match = PIN.match(token)
                if match:
                    pins[_norm(match.group(1))] = match.group(3)
            steps.append(pins | ({"--no-build-isolation": ""} if "--no-build-isolation" in command else {}))
    return steps


def installed(commands: list[str]) -> dict[str, str]:
    """Distribution → version the image ends with (a later pin replaces an earlier one)."""
    final: dict[str, str] = {}
    for step in pip_steps(commands):
        final.update({k: v for k, v in step.items() if not k.startswith("--")})
    return final


def apt_packages(commands: list[str]) -> set[str]:
    return {
        word
        for command in commands
        if command.startswith("RUN apt-get install")
        for word in shlex.split(command)[3:]
        if not word.startswith("-")
    }


def required_imports() -> dict[str, set[str]]:
    """Third-party module → the upstream repositories that import it at import time."""
    manifest = json.loads(MANIFEST.read_text())
    needed: dict[str, set[str]] = {}
    for model, repo in manifest["repos"].items():
        for module in repo["required"]:
            needed.setdefault(module, set()).add(model)
    return needed


# --- the manifest is what the pinned code imports ------------------------------------------------


def test_the_manifest_covers_the_pinned_commits_and_what_our_engine_imports(avatar):
    manifest = json.loads(MANIFEST.read_text())["repos"]
    assert manifest["multitalk"]["commit"] == avatar.MULTITALK_REPO[1]
    assert manifest["infinitetalk"]["commit"] == avatar.INFINITETALK_REPO[1]
    for repo in manifest.values():
        tops = {m.split(".")[0] for m in repo["modules_visited"]}
        assert repo["entry"] == upstream_imports.engine_entry_modules(upstream_imports.ENGINE, tops)
    # The finding behind this file: InfiniteTalk's wan/utils/utils.py imports decord at import time.
    assert manifest["infinitetalk"]["required"]["decord"] == ["wan/utils/utils.py"]


@pytest.mark.skipif(not all(p.is_dir() for p in MIRRORS.values()), reason="upstream mirrors not here")
def test_the_manifest_is_what_the_script_finds_in_the_pinned_checkouts():
    assert upstream_imports.manifest(MIRRORS) == json.loads(MANIFEST.read_text())


def _git_repo(root: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    run = {"cwd": root, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **run)  # type: ignore[call-overload]
    subprocess.run(["git", "add", "."], **run)  # type: ignore[call-overload]
    subprocess.run(  # type: ignore[call-overload]
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], **run
    )
    return subprocess.run(["git", "rev-parse", "HEAD"], text=True, **run).stdout.strip()  # type: ignore[call-overload]


def test_the_scanner_follows_import_time_imports_only(tmp_path):
    commit = _git_repo(
        tmp_path,
        {
            "pkg/__init__.py": "from . import sub\nfrom .mod import thing\nimport os\n",
            "pkg/sub.py": "import numpy as np\nclass C:\n    import yaml\n"
            "def f():\n    import lazyonly\n    from .never import x\n",
            "pkg/mod.py": "from .inner.deep import w\nfrom helper.tool import z\n"
            "try:\n    import fancy\nexcept ImportError:\n    fancy = None\n",
            "pkg/never.py": "import unreachable\n",
            "pkg/inner/__init__.py": "",
            "pkg/inner/deep.py": "from ..other import y\n",
            "pkg/other.py": "import requests.adapters\n",
            "helper/__init__.py": "import cv2\n",
            "helper/tool.py": "",
            "unused.py": "import notimported\n",
        },
    )
    found = upstream_imports.scan(upstream_imports.Source(tmp_path, commit), ["pkg"])
    assert found.required == {
        "numpy": {"pkg/sub.py"},
        "yaml": {"pkg/sub.py"},  # class bodies run at import time
        "cv2": {"helper/__init__.py"},  # importing helper.tool runs helper/__init__.py first
        "requests": {"pkg/other.py"},  # reached by a relative import two levels up
    }
    assert found.optional == {"fancy": {"pkg/mod.py"}}
    assert found.lazy == {"lazyonly": {"pkg/sub.py"}}
    assert "pkg.never" not in found.visited and "unused" not in found.visited


# --- the image provides it -----------------------------------------------------------------------


def test_every_module_the_upstream_code_imports_at_import_time_is_installed_by_the_image(avatar):
    packages = installed(dockerfile(avatar.image))
    missing = {
        module: repos
        for module, repos in required_imports().items()
        if _norm(avatar.UPSTREAM_IMPORT_PROVIDERS.get(module, "?")) not in packages
    }
    assert missing == {}, f"the avatar image lacks what the upstream `wan` package imports: {missing}"


def test_the_import_to_package_mapping_agrees_with_the_packages_installed_here(avatar):
    """Where this environment has the module, its real distribution is the mapped package or one of
    that package's own requirements (e.g. regex comes with transformers)."""
    real = importlib.metadata.packages_distributions()
    checked = 0
    for module, provider in avatar.UPSTREAM_IMPORT_PROVIDERS.items():
        dists = {_norm(d) for d in real.get(module, [])}
        if not dists or _norm(provider) in dists:
            checked += bool(dists)
            continue
        try:
            requires = importlib.metadata.requires(provider) or []
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{module} is {dists} here; cannot check that {provider} provides it")
        deps = {_norm(Requirement(r).name) for r in requires if "extra ==" not in r}
        assert dists & deps, f"{module} comes from {dists}, which {provider} does not require"
        checked += 1
    # most of the mapping is checked against real metadata, not taken on trust (14 modules in the
    # environment `make venv` builds; more where the avatar-smoke extra is installed)
    assert checked >= 14


def test_misaki_is_gone_because_nothing_the_engine_imports_needs_it(avatar):
    assert "misaki" not in required_imports()
    assert not any(name.startswith("misaki") for name in installed(dockerfile(avatar.image)))


def test_flash_attn_builds_with_its_setup_requirements_installed_first(avatar):
    """flash-attn 2.7.4.post1 is an sdist; with --no-build-isolation its setup.py imports torch,
    packaging and wheel.bdist_wheel (which current `wheel` takes from setuptools ≥ 70.1) from the
    image, and psutil + ninja for a source build."""
    steps = pip_steps(dockerfile(avatar.image))
    at = next(i for i, step in enumerate(steps) if "flash-attn" in step)
    assert "--no-build-isolation" in steps[at]
    before: dict[str, str] = {}
    for step in steps[:at]:
        before.update(step)
    assert {"torch", "setuptools", "wheel", "packaging", "psutil", "ninja"} <= set(before)
    assert Version(before["setuptools"]) >= Version("70.1")
    assert before["torch"].startswith("2.4.")  # the prebuilt wheel its setup.py looks for: torch2.4


def test_opencv_python_from_xfuser_can_load_libgl_and_glib(avatar):
    """xfuser 0.4.1's METADATA has `Requires-Dist: opencv-python` (the GUI build, linked to libGL.so.1
    and libglib-2.0); it and the headless build share the cv2 folder, so either may be the one that
    imports."""
    commands = dockerfile(avatar.image)
    assert "xfuser" in installed(commands)
    assert {"libgl1", "libglib2.0-0"} <= apt_packages(commands)


def test_the_build_order_keeps_talkstack_source_last(avatar):
    commands = dockerfile(avatar.image)
    checkout = max(i for i, c in enumerate(commands) if "git -C /opt/InfiniteTalk checkout" in c)
    flash = max(i for i, c in enumerate(commands) if "flash-attn==" in c)
    assert flash < checkout  # heavy layers first; the talkstack source is a mount added at start-up
    assert commands[0].startswith("FROM python:3.11")
