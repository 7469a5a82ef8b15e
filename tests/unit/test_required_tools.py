"""No quiet skips for a missing required tool: scripts/install-system-deps.sh (`make sysdeps`, run
before `make test`) stops the build when a required program is still missing after its install
attempt, and the test session (tests/conftest.py) refuses to start without one, each naming the fix."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from talkstack.settings import get_settings
from tests import conftest as suite_conftest

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
    result = _run([_bin(tmp_path / "bin", "id", "cat", "espeak-ng", "curl", "jq")])
    assert (result.returncode, result.stderr) == (0, "")


@pytest.fixture
def no_espeak(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The engine's setting names a program that is not there; the settings are read afresh for it
    and again after (the cache is cleared before monkeypatch puts the environment back, and nothing
    reads the settings in between)."""
    monkeypatch.setenv("TALKSTACK_ESPEAK", "talkstack-no-such-espeak-ng")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_test_session_refuses_to_start_without_a_required_tool_and_names_it(no_espeak: None) -> None:
    """The session hook of tests/conftest.py, called as pytest calls it on a machine whose espeak-ng
    is missing: the run ends before any test, with what to install, instead of the lite-voice tests
    skipping or failing one by one."""
    session = SimpleNamespace(config=SimpleNamespace())  # no `workerinput`: not an xdist worker

    with pytest.raises(pytest.exit.Exception) as stopped:
        suite_conftest.pytest_sessionstart(session)  # type: ignore[arg-type]

    assert stopped.value.returncode == pytest.ExitCode.USAGE_ERROR
    assert "required tools are missing" in stopped.value.msg
    assert "lite-voice: espeak-ng is not installed: apt-get install espeak-ng" in stopped.value.msg
