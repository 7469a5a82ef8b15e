"""Every handler traces its AWS calls with powertools' Tracer, and only those: X-Ray's default patch
list includes httpx, which would put an `X-Amzn-Trace-Id` header on every webhook POST to a
customer's endpoint and record webhook URLs in the traces."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from talkstack.pipeline.aws import TRACED_MODULES

HANDLERS = sorted((Path(__file__).resolve().parents[2] / "aws" / "lambda").glob("*.py"))


def _patched(patch_modules: str) -> list[str]:
    """What X-Ray has patched after a Tracer starts as it would in Lambda (LAMBDA_TASK_ROOT set)."""
    code = (
        "import json\n"
        "from aws_lambda_powertools import Tracer\n"
        "from aws_xray_sdk.core import patcher\n"
        f"Tracer(service='talkstack', patch_modules={patch_modules})\n"
        "print(json.dumps(sorted(patcher._PATCHED_MODULES)))\n"
    )
    env = {**os.environ, "LAMBDA_TASK_ROOT": "/var/task", "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR"}
    env.pop("POWERTOOLS_TRACE_DISABLED", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("handler", HANDLERS, ids=lambda p: p.stem)
def test_each_handler_builds_its_tracer_with_the_traced_modules(handler: Path):
    calls = [
        node
        for node in ast.walk(ast.parse(handler.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Tracer"
    ]
    assert len(calls) == 1, f"{handler.name}: one module-level Tracer"
    keywords = {k.arg: ast.unparse(k.value) for k in calls[0].keywords}
    assert keywords.get("patch_modules") == "TRACED_MODULES"


def test_the_traced_modules_leave_webhook_requests_alone():
    assert "httpx" in _patched("None")  # X-Ray's default: why the handlers must not use it
    assert _patched(repr(TRACED_MODULES)) == ["botocore"]
