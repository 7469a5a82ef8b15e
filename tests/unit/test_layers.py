"""The package's layers hold (`make lint` runs import-linter with [tool.importlinter] in pyproject.toml),
and the contracts really catch the imports they forbid: a copy of the package with one bad import
added must fail `lint-imports`, naming the broken contract."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The package, the Modal apps and the import-linter configuration, in a folder of their own."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("talkstack", "modal_workers"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(module: Path, statement: str) -> None:
    text = module.read_text()
    head, _, rest = text.partition("from __future__ import annotations\n")
    module.write_text(f"{head}from __future__ import annotations\n\n{statement}\n{rest}")


def test_the_repository_keeps_every_contract():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "statement", "contract"),
    [
        (
            "talkstack/engines/gpu/video.py",
            "import talkstack.workers.runner",
            "engines know nothing of workers",
        ),
        (
            "talkstack/engines/lite/avatar.py",
            "from talkstack.pipeline import dispatch",
            "engines know nothing of workers",
        ),
        (
            "talkstack/pipeline/dispatch.py",
            "from talkstack.local import stack",
            "the control plane imports no entry point",
        ),
        ("talkstack/pipeline/notify.py", "import talkstack.cli", "the control plane imports no entry point"),
        ("talkstack/contract/worker.py", "import talkstack.media.audio", "talkstack layers"),
        ("talkstack/settings/limits.py", "import talkstack.contract", "talkstack layers"),
        # media speaks the contract's word timings in alignment only (pyproject ignore_imports)
        ("talkstack/media/audio.py", "import talkstack.contract.captions", "talkstack layers"),
    ],
)
def test_a_forbidden_import_breaks_the_lint(copy: Path, module: str, statement: str, contract: str):
    add_import(copy / module, statement)
    result = lint_imports(copy)
    assert result.returncode != 0
    # "name BROKEN", or "name BROKEN (1 ignored import)" for a contract with ignore_imports
    broken = [line for line in result.stdout.splitlines() if " BROKEN" in line]
    assert any(contract in line for line in broken), result.stdout
