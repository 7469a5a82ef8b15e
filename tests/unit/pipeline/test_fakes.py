"""The fakes answer as AWS does where the steps depend on it: each case runs the same calls against a
fake and against moto's in-process service and compares what a step would see (results, error codes).
This keeps tests/support/fakes.py honest; the step tests themselves never assert on a fake."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ParamValidationError, UnknownClientMethodError
from moto import mock_aws
from pydantic import ValidationError

from tests.support.fakes import ACCOUNT, REGION, FakeBackends, FakeS3, FakeSNS, FakeSQS, FakeStepFunctions

BUCKET = "probe-bucket"


@pytest.fixture
def moto() -> Iterator[None]:
    # Executions stay RUNNING (moto's default) so the story can meet a running execution. Said
    # explicitly: a local stack started earlier in the same process turns moto's global
    # `execute_state_machine` on, and a Pass machine would then finish before the second start.
    with mock_aws(config={"stepfunctions": {"execute_state_machine": False}}):
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


def sns_story(sns: Any, topic: str) -> list[Any]:
    missing = topic.replace(":events", ":nope")
    seen: list[Any] = [outcome(lambda: sns.publish(TopicArn=missing, Message="{}"))]
    attributes = {"type": {"DataType": "String", "StringValue": "job.queued"}}
    seen.append("MessageId" in sns.publish(TopicArn=topic, Message="{}", MessageAttributes=attributes))
    return seen


def test_fake_sns_answers_as_sns_does(moto: None) -> None:
    real = boto3.client("sns", region_name=REGION)
    topic = real.create_topic(Name="events")["TopicArn"]
    assert sns_story(FakeSNS([topic]), topic) == sns_story(real, topic)


def test_fake_presigned_urls_refuse_what_a_client_refuses(moto: None) -> None:
    # A real client signs locally (no request is sent): the same refusals, whatever the URL looks like.
    real = boto3.client("s3", region_name=REGION, config=Config(signature_version="s3v4"))  # as aws.client
    for s3 in (FakeS3([BUCKET]), real):
        with pytest.raises(UnknownClientMethodError):
            s3.generate_presigned_url("get_objects", Params={"Bucket": BUCKET, "Key": "k"})
        with pytest.raises(ParamValidationError):
            s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": "k", "ContentTyp": "x"})
        url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "a/k"}, ExpiresIn=60)
        assert "X-Amz-Expires=60" in url and "/a/k?" in url


@pytest.mark.parametrize("operation", ["send_task_success", "send_task_failure", "send_task_heartbeat"])
def test_a_closed_token_is_refused_with_a_documented_code(operation: str) -> None:
    # moto accepts any token; the codes are the ones botocore's model documents for each operation.
    sfn = FakeStepFunctions([])
    sfn.closed_tokens["t"] = "TaskTimedOut"
    extra = {"output": "{}"} if operation == "send_task_success" else {}
    assert outcome(lambda: getattr(sfn, operation)(taskToken="t", **extra)) == ("error", "TaskTimedOut")
    assert getattr(sfn, operation)(taskToken="open", **extra) == {}


def test_fake_backends_hand_the_worker_the_task_it_would_parse() -> None:
    # A task that cannot survive its JSON form (as Modal and a worker see it) is refused at submit.
    class NotATask:
        def model_dump_json(self) -> str:
            return json.dumps({"step": "avatar"})

    with pytest.raises(ValidationError):
        FakeBackends().submit(NotATask())  # type: ignore[arg-type]
