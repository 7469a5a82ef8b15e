"""Fixtures of the CLI's unit tests: moto's in-process AWS behind the CLI's own clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from talkstack.pipeline import aws
from talkstack.pipeline.jobs_table import create_table_request

TABLE = "cli-unit-jobs"
BUCKET = "cli-unit-out"


@pytest.fixture
def moto_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A jobs table and an output bucket in moto; the CLI's cached AWS clients are made afresh for
    it (a local stack started earlier in the process leaves its endpoint in the environment)."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        aws.reset_clients()
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(**create_table_request(TABLE))
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield {"ddb": ddb, "s3": s3, "table": TABLE, "bucket": BUCKET}
    aws.reset_clients()
