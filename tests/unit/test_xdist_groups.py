"""`make test`'s two pytest-xdist processes really are the two groups tests/conftest.py assigns: the
tests that run moto in the worker's own process in one, the rest in the other. pytest 9.2 with
pytest-xdist 3.8.0 silently dropped the grouping (every test went to whichever worker was free, both
workers started a local stack and unit tests' `mock_aws` ran beside it), which only a real run shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = "tests/unit/test_required_tools.py"
STACK = "tests/integration/test_presigned_real_s3.py::test_an_upload_ticket_takes_exactly_the_declared_file"


def test_make_test_runs_each_group_in_one_worker():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            "2",
            "--dist",
            "loadgroup",
            "-v",
            "-p",
            "no:cacheprovider",
            OFFLINE,
            STACK,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ran = re.findall(r"^\[(gw\d)\] \[\s*\d+%\] PASSED (\S+)@(\w+)", done.stdout, re.M)
    assert {(node.split("::")[0], group) for _, node, group in ran} == {
        (OFFLINE, "offline"),
        (STACK.split("::")[0], "stack"),
    }, done.stdout[-3000:]
    workers = {group: {worker for worker, _, g in ran if g == group} for group in ("offline", "stack")}
    assert all(len(w) == 1 for w in workers.values()), workers
