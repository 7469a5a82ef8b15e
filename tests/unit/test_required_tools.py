"""No quiet skips for a missing required tool: scripts/install-system-deps.sh (`make sysdeps`, run
before `make test`) stops the build when a required program is still missing after its install
attempt, and the test session (tests/conftest.py) refuses to start without one, each naming the fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install-system-deps.sh"


def _run(path: list[Path]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.pathsep.join(str(p) for p in path), "HOME": os.environ.get("HOME", "/")}
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run([bash, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def _bin(folder: Path, *programs: str) -> Path:
    """A PATH folder holding only these programs (links to the real ones)."""
    folder.mkdir()
    for program in programs:
        real = shutil.which(program)
        assert real is not None, f"{program} is needed to run this test"
        (folder / program).symlink_to(real)
    return folder


def test_a_required_program_that_cannot_be_installed_fails_the_build_naming_the_fix(tmp_path):
    # No espeak-ng and no apt-get on this PATH: nothing can install it.
    result = _run([_bin(tmp_path / "bin", "id", "cat")])
    assert result.returncode != 0
    assert "espeak-ng is not installed" in result.stderr
    assert "apt-get install -y espeak-ng" in result.stderr


def test_nothing_to_do_when_the_required_programs_are_there(tmp_path):
    result = _run([_bin(tmp_path / "bin", "id", "cat", "espeak-ng")])
    assert (result.returncode, result.stderr) == (0, "")


def test_the_test_session_refuses_to_start_without_a_required_tool_and_names_it():
    """A pytest run on a machine whose espeak-ng is missing (the engine's setting names a program
    that is not there): the session ends before any test, with what to install, instead of the
    lite-voice tests skipping or failing one by one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["TALKSTACK_ESPEAK"] = "talkstack-no-such-espeak-ng"
    this = f"{Path(__file__).relative_to(REPO)}::test_nothing_to_do_when_the_required_programs_are_there"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", this, "-p", "no:cacheprovider", "-q"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert "required tools are missing" in output
    assert "lite-voice: espeak-ng is not installed: apt-get install espeak-ng" in output
    assert "passed" not in output  # not one test ran
