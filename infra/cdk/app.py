"""CDK entry point (`cdk.json`: `.venv/bin/python infra/cdk/app.py`).

Settings come from context (`-c talkstack:stackName=…`) or `TALKSTACK_CDK_*` variables; see
docs/deploy.md. cdk-nag's AwsSolutions checks run on every synth: an unsuppressed finding is an
error, and the synth fails (cdk-nag 3 runs as a CDK validation plugin).
"""

from __future__ import annotations

import sys
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]  # talkstack_cdk, and talkstack from the checkout

from talkstack_cdk.settings import load_settings  # noqa: E402
from talkstack_cdk.stack import TalkstackStack  # noqa: E402


def build(app: cdk.App) -> TalkstackStack:
    settings = load_settings(app.node.get_all_context())
    stack = TalkstackStack(app, settings.stack_name, settings=settings)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return stack


if __name__ == "__main__":
    app = cdk.App()
    build(app)
    app.synth()
