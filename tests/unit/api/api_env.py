"""The API service free of HTTP, on moto's in-process AWS: the jobs table the stack creates, the
three buckets, and a state machine whose StartExecution really starts an execution. Only `emit` (the
async hand-off to the notify Lambda) is a recorder: moto cannot run a Lambda without Docker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from talkstack.api.keys import Principal
from talkstack.api.service import ApiService
from talkstack.pipeline.aws import RegionalPresigner
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.store import JobStore
from talkstack.settings import MediaLimits
from tests.support.fakes import ACCOUNT, REGION, EmittedEvents, FakeBackends, create_jobs_table
from tests.support.steps import INPUT, JOBS_TABLE, OUTPUT, STATE_MACHINE, WORK, make_config

A = Principal("keyaaaaaaaaa", "pro", "tenant a")
B = Principal("keybbbbbbbbb", "pro", "tenant b")


@pytest.fixture
def aws(no_pipeline_environment: None) -> Iterator[SimpleNamespace]:
    # Executions stay RUNNING (moto's default), said explicitly: a local stack started earlier in the
    # same process (the CLI tests start one) turns moto's global `execute_state_machine` on, and the
    # Pass machine would then finish before a test can cancel it.
    with mock_aws(config={"stepfunctions": {"execute_state_machine": False}}):
        ddb = boto3.client("dynamodb", region_name=REGION)
        create_jobs_table(ddb, JOBS_TABLE)
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (INPUT, OUTPUT, WORK):
            s3.create_bucket(Bucket=bucket)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(
            name=STATE_MACHINE.rsplit(":", 1)[1],
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/jobs",
        )
        assert machine["stateMachineArn"] == STATE_MACHINE
        yield SimpleNamespace(ddb=ddb, s3=s3, sfn=sfn)


def make_service(aws: SimpleNamespace, config: PipelineConfig | None = None, **changes: Any) -> ApiService:
    services = SimpleNamespace(
        config=config or make_config(**changes),
        store=JobStore(JOBS_TABLE, aws.ddb),
        s3=aws.s3,
        # The stack's pre-signer: a client of each bucket's region signs (SigV4, as deployed).
        presign=RegionalPresigner(aws.s3, lambda region: boto3.client("s3", region_name=region)),
        sfn=aws.sfn,
        emit=EmittedEvents(),
    )
    # Limits read now, not the process-wide cached ones: a test that sets a limit in the
    # environment gets it, and tests size their files from `api.limits`, the very limits in force.
    return ApiService(services, aws.ddb, backends=FakeBackends(), limits=MediaLimits())


@pytest.fixture
def api(aws: SimpleNamespace) -> ApiService:
    return make_service(aws)


def executions(aws: SimpleNamespace) -> list[str]:
    """The names of the executions Step Functions (moto) really started."""
    return sorted(e["name"] for e in aws.sfn.list_executions(stateMachineArn=STATE_MACHINE)["executions"])
