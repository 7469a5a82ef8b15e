"""One pipeline step at a time: its real code, the real JobStore on moto's in-process DynamoDB, and
in-memory fakes for S3, Step Functions, SQS, SNS and the worker backends (tests/support/fakes.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.store import JobStore
from tests.support.fakes import (
    REGION,
    EmittedEvents,
    FakeS3,
    FakeSNS,
    FakeSQS,
    FakeStepFunctions,
    create_jobs_table,
)
from tests.support.steps import DLQ, INPUT, JOBS_TABLE, OUTPUT, STATE_MACHINE, WORK, make_config


@pytest.fixture(autouse=True)
def unsigned_outputs(monkeypatch: pytest.MonkeyPatch, no_pipeline_environment: None) -> Iterator[None]:
    """The fakes' outputs are placeholder bytes, not media: finalize publishes them unsigned here.
    Content credentials are tested on real media in test_provenance.py."""
    from talkstack.settings import get_provenance_settings

    monkeypatch.setenv("TALKSTACK_C2PA", "false")
    get_provenance_settings.cache_clear()
    yield
    get_provenance_settings.cache_clear()


@pytest.fixture
def config(no_pipeline_environment: None) -> PipelineConfig:
    return make_config()


@pytest.fixture
def ddb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_jobs_table(client, JOBS_TABLE)
        yield client


@pytest.fixture
def store(ddb: Any) -> JobStore:
    return JobStore(JOBS_TABLE, ddb)


@pytest.fixture
def s3() -> FakeS3:
    return FakeS3([INPUT, OUTPUT, WORK])


@pytest.fixture
def sfn() -> FakeStepFunctions:
    return FakeStepFunctions([STATE_MACHINE])


@pytest.fixture
def sqs() -> FakeSQS:
    return FakeSQS([DLQ])


@pytest.fixture
def emit() -> EmittedEvents:
    return EmittedEvents()


@pytest.fixture
def sns(config: PipelineConfig) -> FakeSNS:
    return FakeSNS([config.events_topic_arn])
