"""The synthesized roles, enforced: the pipeline's own S3 code runs on moto with IAM checking every
request against exactly one role's S3 statements, taken from the template.

moto evaluates actions and object ARNs (not conditions, and it answers 404 for a missing key
whenever s3:GetObject is allowed, where AWS also wants s3:ListBucket: test_template.py asserts
those statements). What this shows is that each handler's real calls — finalize's HEAD of its
targets and its conditional copy, validate's and the API's HEAD of a key's own outputs and of a
granted location, segment's download, dispatch's reads (a pre-signed URL carries dispatch's
credentials), a cancel's take-back — are allowed by the role that makes them, and that a role
without a read of a target never publishes over it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import moto.settings
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from talkstack.contract.parse import parse_job_request
from talkstack.contract.record import JobRecord
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.outputs import (
    JOB_ID_METADATA,
    check_targets,
    publish,
    remove_published,
    write_result_json,
)
from talkstack.pipeline.tenancy import Namespace
from talkstack.pipeline.validate import check_media
from talkstack.settings import get_limits
from tests.support.cdk_synth import synth

KEY = "k1"
SHARED, CUSTOMER = "shared-assets", "customer-out"
CONTEXT = {
    "talkstack:readGrants": f"*=s3://{SHARED}/library/",
    "talkstack:writeGrants": f"{KEY}=s3://{CUSTOMER}/{KEY}/",
}
NAMES = {"inputs": "ts-inputs", "work": "ts-work", "outputs": "ts-outputs", "audit": "ts-audit"}
ROLES = ("api", "validate", "segment", "dispatch", "finalize", "fail", "complete")
WAV = b"RIFF" + b"\0" * 60


def _resolve(value: Any, buckets: dict[str, str]) -> str:
    """A statement's resource with the stack's buckets named (CloudFormation would do this)."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_resolve(part, buckets) for part in parts)
    if value == {"Ref": "AWS::Partition"}:
        return "aws"
    logical_id, attribute = value["Fn::GetAtt"]
    assert attribute == "Arn", value
    return f"arn:aws:s3:::{buckets[logical_id]}"


def s3_statements(name: str) -> list[dict[str, Any]]:
    """The S3 statements of `name`'s role in the synthesized template, buckets resolved."""
    s = synth(**CONTEXT)
    storage = s.stack.storage
    buckets = {
        s.logical_id(bucket): NAMES[label]
        for bucket, label in [
            (storage.input_bucket, "inputs"),
            (storage.work_bucket, "work"),
            (storage.output_bucket, "outputs"),
            (storage.audit_bucket, "audit"),
        ]
    }
    role = s.logical_id(s.stack.functions.roles[name])
    statements = []
    for policy in s.resources("AWS::IAM::Policy").values():
        if {"Ref": role} not in policy["Properties"]["Roles"]:
            continue
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if not all(a.startswith("s3:") for a in actions):
                continue
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            statements.append(
                {
                    "Effect": st["Effect"],
                    "Action": actions,
                    "Resource": [_resolve(r, buckets) for r in resources],
                }
            )
    return statements


@pytest.fixture
def stack(monkeypatch, no_pipeline_environment):
    """moto with the stack's buckets, the granted ones, and one IAM user per role holding exactly
    that role's S3 statements; `stack.enforced()` turns IAM checking on."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        admin = boto3.client("s3", region_name="us-east-1")
        for bucket in [*NAMES.values(), SHARED, CUSTOMER]:
            admin.create_bucket(Bucket=bucket)
        iam = boto3.client("iam", region_name="us-east-1")
        clients = {}
        for name in ROLES:
            iam.create_user(UserName=name)
            document = {"Version": "2012-10-17", "Statement": s3_statements(name)}
            iam.put_user_policy(UserName=name, PolicyName="role", PolicyDocument=json.dumps(document))
            key = iam.create_access_key(UserName=name)["AccessKey"]
            clients[name] = boto3.client(
                "s3",
                region_name="us-east-1",
                aws_access_key_id=key["AccessKeyId"],
                aws_secret_access_key=key["SecretAccessKey"],
            )

        @contextmanager
        def enforced() -> Iterator[None]:
            monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
            try:
                yield
            finally:
                monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))

        yield type("Stack", (), {"admin": admin, "role": clients, "enforced": staticmethod(enforced)})


def config() -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "input_bucket": NAMES["inputs"],
            "output_bucket": NAMES["outputs"],
            "work_bucket": NAMES["work"],
            "jobs_table": "t",
            "events_topic_arn": "arn:aws:sns:us-east-1:123456789012:t",
            "ingest_dlq_url": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
            "state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:t",
            "notify_function": "t-notify",
            "webhook_secret": "whsec_dGVzdA==",
            "read_grants": CONTEXT["talkstack:readGrants"],
            "write_grants": CONTEXT["talkstack:writeGrants"],
        }
    )


# Where an API job of key k1 publishes: its folder of the output bucket, and its write grant.
TARGETS = [(NAMES["outputs"], f"tenants/{KEY}/voice-1"), (CUSTOMER, f"{KEY}/voice-1")]


@pytest.mark.parametrize(("bucket", "prefix"), TARGETS)
def test_finalize_reads_its_targets_then_publishes_and_never_over_another_job(stack, bucket, prefix):
    stack.admin.put_object(Bucket=NAMES["work"], Key="work/voice-1/voice/speech.wav", Body=WAV)
    request = parse_job_request(
        {"task": "voice", "inputs": {"text": "hi"}, "output": {"bucket": bucket, "prefix": prefix}}
    )
    key, result = request.output_key("voice-1"), request.sibling_key("voice-1", "result")
    record = JobRecord.new("voice-1", request)
    s3 = stack.role["finalize"]
    with stack.enforced():
        check_targets(s3, bucket, [key, result], "voice-1")  # HEADs: both free
        publish(
            s3, NAMES["work"], "work/voice-1/voice/speech.wav", bucket, key, "audio/wav", "voice-1", len(WAV)
        )
        write_result_json(s3, record, bucket)
        # A rerun of the same job may write again (If-Match on its own object) ...
        publish(
            s3, NAMES["work"], "work/voice-1/voice/speech.wav", bucket, key, "audio/wav", "voice-1", len(WAV)
        )
        # ... another job at the same key is refused after reading the owner (metadata) back.
        with pytest.raises(TalkstackError) as refused:
            check_targets(s3, bucket, [key], "voice-2")
    assert refused.value.code == ErrorCode.OUTPUT_EXISTS
    head = stack.admin.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"][JOB_ID_METADATA] == "voice-1"


def test_a_role_that_cannot_read_a_target_publishes_nothing_there(stack):
    """A 403 is never taken for a free key: `complete` (work bucket only) cannot HEAD the output."""
    bucket, prefix = TARGETS[0]
    key = f"{prefix}/speech.wav"
    with stack.enforced(), pytest.raises(ClientError) as denied:
        check_targets(stack.role["complete"], bucket, [key], "voice-1")
    assert denied.value.response["Error"]["Code"] in ("403", "AccessDenied")
    assert "Contents" not in stack.admin.list_objects_v2(Bucket=bucket)


@pytest.mark.parametrize("role", ["api", "validate"])
def test_api_and_validate_head_a_keys_own_outputs_and_its_grants(stack, role):
    own = f"s3://{NAMES['outputs']}/tenants/{KEY}/voice-0/speech.wav"
    granted = f"s3://{SHARED}/library/portrait.png"
    published = f"s3://{CUSTOMER}/{KEY}/voice-0/speech.wav"
    for ref in (own, granted, published):
        bucket, _, key = ref.removeprefix("s3://").partition("/")
        stack.admin.put_object(Bucket=bucket, Key=key, Body=WAV)
    namespace = Namespace.for_key(KEY, config())
    with stack.enforced():
        for image, audio in ((granted, own), (granted, published)):
            request = parse_job_request({"task": "avatar", "inputs": {"image": image, "audio": audio}})
            check_media(request, namespace, stack.role[role], get_limits())
        # A key of its own folder that does not exist is the uniform "not found".
        missing = parse_job_request(
            {"task": "avatar", "inputs": {"image": granted, "audio": own.replace("voice-0", "nope")}}
        )
        with pytest.raises(TalkstackError) as absent:
            check_media(missing, namespace, stack.role[role], get_limits())
    assert absent.value.code == ErrorCode.INPUT_NOT_FOUND


@pytest.mark.parametrize("role", ["segment", "dispatch"])
def test_segment_and_dispatch_read_a_keys_own_outputs_and_its_grants(stack, role, tmp_path):
    """segment downloads the speech; dispatch pre-signs GETs, which S3 checks against dispatch's
    own permissions when the worker uses them (so a GET with its credentials is the same test)."""
    keys = [
        (NAMES["outputs"], f"tenants/{KEY}/voice-0/speech.wav"),
        (SHARED, "library/speech.wav"),
        (CUSTOMER, f"{KEY}/voice-0/speech.wav"),
    ]
    for bucket, key in keys:
        stack.admin.put_object(Bucket=bucket, Key=key, Body=WAV)
    s3 = stack.role[role]
    with stack.enforced():
        for i, (bucket, key) in enumerate(keys):
            if role == "segment":
                s3.download_file(bucket, key, str(tmp_path / f"{i}.wav"))
                assert (tmp_path / f"{i}.wav").read_bytes() == WAV
            else:
                assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == WAV
        # Another tenant's folder is refused by the code first (tenancy.py); it is not IAM's job,
        # but IAM still keeps these roles out of everything besides what a namespace may name.
        stack_only = ("ts-audit", "audit/2026/01/01.jsonl")
        with pytest.raises(ClientError):
            s3.get_object(Bucket=stack_only[0], Key=stack_only[1])


@pytest.mark.parametrize("role", ["api", "fail"])
@pytest.mark.parametrize(("bucket", "prefix"), TARGETS)
def test_a_cancel_or_a_failure_takes_back_what_was_published(stack, role, bucket, prefix):
    request = parse_job_request(
        {"task": "voice", "inputs": {"text": "hi"}, "output": {"bucket": bucket, "prefix": prefix}}
    )
    key = request.output_key("voice-1")
    stack.admin.put_object(Bucket=bucket, Key=key, Body=WAV, Metadata={JOB_ID_METADATA: "voice-1"})
    record = JobRecord.new("voice-1", request).mark_cancelled()
    with stack.enforced():
        removed = remove_published(record, config(), stack.role[role])  # HEADs 3 keys, 2 missing
    assert removed == [key]
