"""The TypeScript SDK (clients/typescript) against this stack's REST API, over real HTTP.

`npm test` there checks that src/schema.d.ts matches schemas/openapi.json, builds the SDK and its
tests with tsc, and runs them with Node's own test runner against the URL and the two keys (two
tenants) given here. The npm packages come from `make test` (the `node_modules/.installed` stamp);
run alone, this test installs them with `npm ci` first. Without node and npm it fails: it never
skips.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "clients" / "typescript"
SAMPLES = ROOT / "talkstack" / "assets" / "samples"
STAMP = SDK / "node_modules" / ".installed"
NPM_TEST_TIMEOUT_S = 300
NPM_CI_TIMEOUT_S = 240
MIN_NODE = 20


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH: the TypeScript SDK tests need Node {MIN_NODE}+ and npm "
            "(https://nodejs.org, or your system's nodejs package)",
            pytrace=False,
        )
    return path


def run(command: list[str], env: dict[str, str], timeout_s: int) -> tuple[int, str]:
    """(exit status, stdout and stderr together); on timeout the whole process group is killed."""
    proc = subprocess.Popen(
        command,
        cwd=SDK,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # npm's children (tsc, node --test) share this group
    )
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        print(output)
        pytest.fail(f"`{' '.join(command)}` ran over {timeout_s} s; its output:\n{output[-8000:]}")
    print(output)  # shown with the failure (captured stdout) or with -s / -rP
    return proc.returncode, output


def ensure_packages(npm: str, env: dict[str, str]) -> None:
    lock = SDK / "package-lock.json"
    if STAMP.exists() and STAMP.stat().st_mtime >= lock.stat().st_mtime:
        return
    rc, output = run([npm, "ci", "--no-audit", "--no-fund"], env, NPM_CI_TIMEOUT_S)
    assert rc == 0, f"npm ci in {SDK} failed ({rc}):\n{output[-8000:]}"
    STAMP.touch()


def counts(output: str) -> dict[str, int]:
    """The summary node's spec reporter ends with: `ℹ tests 28`, `ℹ pass 28`, `ℹ fail 0`, …"""
    return {name: int(n) for name, n in re.findall(r"^ℹ (\w+) (\d+)$", output, re.MULTILINE)}


@pytest.mark.timeout(NPM_TEST_TIMEOUT_S + NPM_CI_TIMEOUT_S + 60)
def test_typescript_sdk_suite_passes_against_the_local_api(pipeline):
    node, npm = tool("node"), tool("npm")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    major = int(version.lstrip("v").split(".")[0])
    assert major >= MIN_NODE, f"node {version}: the TypeScript SDK needs Node {MIN_NODE}+ (global fetch)"

    env = {
        **os.environ,
        "TALKSTACK_API_URL": pipeline.api_url,
        "TALKSTACK_API_KEY": pipeline.api_key("enterprise", "typescript-sdk"),
        # another tenant: the webhook and audit tests check that neither key sees the other's things
        "TALKSTACK_OTHER_API_KEY": pipeline.api_key("enterprise", "typescript-sdk-other"),
        "TALKSTACK_SAMPLES": str(SAMPLES),
        "NO_COLOR": "1",
    }
    ensure_packages(npm, env)

    rc, output = run([npm, "test"], env, NPM_TEST_TIMEOUT_S)
    assert rc == 0, f"`npm test` in {SDK} failed ({rc}):\n{output[-8000:]}"
    summary = counts(output)
    assert summary.get("pass", 0) > 0, f"no passing tests reported:\n{output[-4000:]}"
    assert summary.get("fail") == 0 and summary.get("cancelled") == 0, summary
    assert summary.get("skipped") == 0 and summary.get("todo") == 0, f"nothing may be skipped: {summary}"
