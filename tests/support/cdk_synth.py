"""Synthesize the CDK stack in process (no CLI, no AWS credentials, no Docker), once per settings.

Bundling is skipped (`aws:cdk:bundling-stacks: []`): asset hashes are computed from the inputs,
so the template is the one `cdk synth` writes (same cdk.json context), minus the pip downloads.
tests/infra/test_bundling.py runs the bundlers themselves, through the CDK CLI.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "infra" / "cdk"))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


@dataclass(frozen=True)
class Synth:
    app: Any
    stack: Any
    template: dict[str, Any]

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == type_}

    def logical_id(self, construct: Any) -> str:
        stack = self.stack
        return str(stack.resolve(stack.get_logical_id(construct.node.default_child)))


@cache
def synth(**context: str) -> Synth:
    import aws_cdk as cdk
    from talkstack_cdk.settings import load_settings
    from talkstack_cdk.stack import TalkstackStack

    # cdk.json's context (feature flags, defaults) as the CLI passes it, then the test's own.
    defaults = json.loads((REPO / "cdk.json").read_text(encoding="utf-8"))["context"]
    app = cdk.App(context={**defaults, "aws:cdk:bundling-stacks": [], **context})
    settings = load_settings(app.node.get_all_context(), environ={})
    stack = TalkstackStack(app, settings.stack_name, settings=settings)
    template = app.synth().get_stack_by_name(stack.stack_name).template
    return Synth(app, stack, template)
