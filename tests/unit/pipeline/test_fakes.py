"""The fakes answer as AWS does where the steps depend on it: each case runs the same calls against a
fake and against moto's in-process service and compares what a step would see (results, error codes).
This keeps tests/support/fakes.py honest; the step tests themselves never assert on a fake."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ParamValidationError
from moto import mock_aws

from tests.support.fakes import ACCOUNT, REGION, FakeS3, FakeSQS, FakeStepFunctions

BUCKET = "probe-bucket"


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        yield


def outcome(call: Callable[[], Any]) -> Any:
    """What the caller sees: the result, or the error code."""
    try:
        return call()
    except ClientError as exc:
        return ("error", exc.response["Error"]["Code"])


def s3_story(s3: Any) -> list[Any]:
    seen: list[Any] = []
    seen.append(outcome(lambda: s3.head_object(Bucket=BUCKET, Key="missing")))
    seen.append(outcome(lambda: s3.get_object(Bucket=BUCKET, Key="missing")))
    seen.append(outcome(lambda: s3.get_object(Bucket="no-such-bucket", Key="k")))
    seen.append(outcome(lambda: s3.put_object(Bucket="no-such-bucket", Key="k", Body=b"")))
    seen.append(
        outcome(lambda: s3.copy_object(Bucket=BUCKET, Key="c", CopySource={"Bucket": BUCKET, "Key": "x"}))
    )
    put = s3.put_object(Bucket=BUCKET, Key="a/k", Body=b"abc", Metadata={"Talkstack-Job-Id": "j"})
    head = s3.head_object(Bucket=BUCKET, Key="a/k")
    seen.append((put["ETag"], head["ETag"], head["ContentLength"], head["Metadata"], head["ContentType"]))
    got = s3.get_object(Bucket=BUCKET, Key="a/k")
    seen.append((got["Body"].read(), got["ContentLength"], got["Metadata"]))
    s3.copy_object(Bucket=BUCKET, Key="a/same", CopySource={"Bucket": BUCKET, "Key": "a/k"})
    s3.copy_object(
        Bucket=BUCKET,
        Key="b/new",
        CopySource={"Bucket": BUCKET, "Key": "a/k"},
        Metadata={"x": "1"},
        MetadataDirective="REPLACE",
        ContentType="video/mp4",
    )
    for key in ("a/same", "b/new"):
        head = s3.head_object(Bucket=BUCKET, Key=key)
        seen.append((head["Metadata"], head["ContentType"]))
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="a/")
    seen.append(([c["Key"] for c in listing["Contents"]], listing["KeyCount"], listing["IsTruncated"]))
    seen.append("Contents" in s3.list_objects_v2(Bucket=BUCKET, Prefix="zzz"))
    seen.append(outcome(lambda: [s3.delete_object(Bucket=BUCKET, Key="never-there"), "deleted"][1]))
    s3.delete_object(Bucket=BUCKET, Key="a/k")
    seen.append(outcome(lambda: s3.head_object(Bucket=BUCKET, Key="a/k")))
    return seen


def test_fake_s3_answers_as_s3_does(moto: None) -> None:
    real = boto3.client("s3", region_name=REGION)
    real.create_bucket(Bucket=BUCKET)
    assert s3_story(FakeS3([BUCKET])) == s3_story(real)


def test_fake_s3_refuses_parameters_a_client_refuses() -> None:
    with pytest.raises(ParamValidationError):
        FakeS3([BUCKET]).put_object(Bucket=BUCKET, Key="k", Body=b"", Metadta={})


def sfn_story(sfn: Any, machine: str) -> list[Any]:
    execution = machine.replace(":stateMachine:", ":execution:") + ":n1"
    seen: list[Any] = []
    seen.append(outcome(lambda: sfn.describe_execution(executionArn=execution)))
    seen.append(outcome(lambda: sfn.describe_execution(executionArn="nonsense")))
    seen.append(outcome(lambda: sfn.stop_execution(executionArn=execution)))
    seen.append(sfn.start_execution(stateMachineArn=machine, name="n1", input="{}")["executionArn"])
    # the same name and input while running: the same execution; other input: the name is taken
    seen.append(
        outcome(lambda: sfn.start_execution(stateMachineArn=machine, name="n1", input="{}")["executionArn"])
    )
    seen.append(outcome(lambda: sfn.start_execution(stateMachineArn=machine, name="n1", input='{"a": 1}')))
    seen.append(sfn.describe_execution(executionArn=execution)["status"])
    sfn.stop_execution(executionArn=execution, cause="c")
    seen.append(outcome(lambda: [sfn.stop_execution(executionArn=execution, cause="again"), "stopped"][1]))
    seen.append(sfn.describe_execution(executionArn=execution)["status"])
    seen.append(outcome(lambda: sfn.start_execution(stateMachineArn=machine, name="n1", input="{}")))
    return seen


def test_fake_step_functions_answers_as_step_functions_does(moto: None) -> None:
    real = boto3.client("stepfunctions", region_name=REGION)
    definition = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    machine = real.create_state_machine(
        name="jobs", definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/r"
    )["stateMachineArn"]
    assert sfn_story(FakeStepFunctions([machine]), machine) == sfn_story(real, machine)


def test_fake_sqs_answers_as_sqs_does(moto: None) -> None:
    real = boto3.client("sqs", region_name=REGION)
    url = real.create_queue(QueueName="dlq")["QueueUrl"]
    missing = url.replace("/dlq", "/nope")
    for sqs in (FakeSQS([url]), real):
        assert outcome(lambda sqs=sqs: sqs.send_message(QueueUrl=missing, MessageBody="x")) == (
            "error",
            "AWS.SimpleQueueService.NonExistentQueue",
        )
        assert "MessageId" in sqs.send_message(QueueUrl=url, MessageBody='{"a": 1}')
