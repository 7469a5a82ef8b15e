"""The ingest job id is the S3 object's identity (bucket, key, and its version or ETag): every delivery
of one upload names one execution, and any other object (another key, another bucket, new bytes, a
new version) names another. On moto's in-process S3 and Step Functions, so the ETags, the version
ids and the "execution already exists" answers are theirs, not a fake's."""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import pytest

from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.ingest import Ingestor
from talkstack.pipeline.jobids import job_id_for_object
from talkstack.pipeline.store import JobStore
from tests.support.fakes import ACCOUNT, REGION, EmittedEvents, FakeSQS
from tests.support.steps import INPUT, make_config

MANIFEST = {"task": "avatar", "inputs": {"image": "portrait.png", "audio": "speech.wav"}}
VERSIONED = "versioned-in-bucket"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/jobs"


@pytest.fixture
def aws(ddb: Any) -> tuple[Any, Any]:
    """moto S3 and Step Functions inside the ddb fixture's mock_aws; the state machine is the one
    make_config names (`jobs`)."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=INPUT)
    s3.create_bucket(Bucket=VERSIONED)
    s3.put_bucket_versioning(Bucket=VERSIONED, VersioningConfiguration={"Status": "Enabled"})
    sfn = boto3.client("stepfunctions", region_name=REGION)
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
    sfn.create_state_machine(name="jobs", definition=json.dumps(definition), roleArn=ROLE)
    return s3, sfn


def ingestor(config: PipelineConfig, store: JobStore, aws: tuple[Any, Any], emit: EmittedEvents) -> Ingestor:
    """A fresh one each time: a redelivery may reach another Lambda container."""
    s3, sfn = aws
    return Ingestor(config, store, s3, sfn, FakeSQS([config.ingest_dlq_url]), emit)


def put(s3: Any, key: str, body: dict[str, Any], bucket: str = INPUT) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())


def executions(aws: tuple[Any, Any], config: PipelineConfig) -> list[str]:
    _, sfn = aws
    return sorted(
        e["name"] for e in sfn.list_executions(stateMachineArn=config.state_machine_arn)["executions"]
    )


def test_every_delivery_of_one_upload_names_the_same_execution(config, store, aws, emit):
    # Given a manifest uploaded once
    s3, _ = aws
    put(s3, "inputs/Démo 1/job.json", MANIFEST)

    # When its event is delivered three times, each to a new container
    outcomes = [ingestor(config, store, aws, emit).handle(INPUT, "inputs/Démo 1/job.json") for _ in range(3)]

    # Then one execution runs, named `<slug>-<16 hex>`, and the redeliveries are duplicates of it
    assert [o.action for o in outcomes] == ["started", "duplicate", "duplicate"]
    job_id = outcomes[0].job_id
    assert re.fullmatch(r"demo-1-[0-9a-f]{16}", job_id)
    assert {o.job_id for o in outcomes} == {job_id} and executions(aws, config) == [job_id]


def test_new_bytes_at_the_same_key_are_a_new_job_and_the_same_bytes_are_not(config, store, aws, emit):
    # Given a started manifest (an unversioned bucket: the ETag tells uploads apart)
    s3, _ = aws
    put(s3, "inputs/edit/job.json", MANIFEST)
    first = ingestor(config, store, aws, emit).handle(INPUT, "inputs/edit/job.json")

    # When the same bytes are uploaded again, then different bytes
    put(s3, "inputs/edit/job.json", MANIFEST)
    same = ingestor(config, store, aws, emit).handle(INPUT, "inputs/edit/job.json")
    put(s3, "inputs/edit/job.json", {**MANIFEST, "callback_id": "v2"})
    edited = ingestor(config, store, aws, emit).handle(INPUT, "inputs/edit/job.json")

    # Then identical bytes are the same job; the edit is a job of its own
    assert (same.action, same.job_id) == ("duplicate", first.job_id)
    assert edited.action == "started" and edited.job_id != first.job_id
    assert executions(aws, config) == sorted([first.job_id, edited.job_id])


def test_in_a_versioned_bucket_every_new_version_is_a_new_job(no_pipeline_environment, store, aws, emit):
    # Given an input bucket with versioning: the same bytes uploaded twice are two versions
    config = make_config(input_bucket=VERSIONED)
    s3, _ = aws
    put(s3, "inputs/again/job.json", MANIFEST, bucket=VERSIONED)
    first = ingestor(config, store, aws, emit).handle(VERSIONED, "inputs/again/job.json")
    redelivered = ingestor(config, store, aws, emit).handle(VERSIONED, "inputs/again/job.json")
    put(s3, "inputs/again/job.json", MANIFEST, bucket=VERSIONED)

    # When the second version's event arrives
    second = ingestor(config, store, aws, emit).handle(VERSIONED, "inputs/again/job.json")

    # Then it starts its own execution (the version, not the ETag, names it), while a redelivery of
    # the first version's event was a duplicate
    versions = s3.list_object_versions(Bucket=VERSIONED, Prefix="inputs/again/job.json")["Versions"]
    assert len(versions) == 2 and len({v["ETag"] for v in versions}) == 1
    assert (redelivered.action, redelivered.job_id) == ("duplicate", first.job_id)
    assert second.action == "started" and second.job_id != first.job_id
    assert executions(aws, config) == sorted([first.job_id, second.job_id])


def test_the_same_bytes_in_two_folders_whose_names_slug_alike_are_two_jobs(config, store, aws, emit):
    # Given identical manifests (one ETag) in folders that both slug to "demo"
    s3, _ = aws
    put(s3, "inputs/Demo/job.json", MANIFEST)
    put(s3, "inputs/démo/job.json", MANIFEST)

    # When both are ingested
    a = ingestor(config, store, aws, emit).handle(INPUT, "inputs/Demo/job.json")
    b = ingestor(config, store, aws, emit).handle(INPUT, "inputs/démo/job.json")

    # Then each starts its own execution: the key is part of the identity
    assert a.action == b.action == "started" and a.job_id != b.job_id
    assert a.job_id.startswith("demo-") and b.job_id.startswith("demo-")


def test_the_same_key_and_etag_in_another_bucket_is_another_object():
    # The bucket is part of the identity (a stack whose input bucket changes names new jobs)
    one = job_id_for_object("bucket-a", "inputs/x/job.json", '"0123abcd"', "x")
    other = job_id_for_object("bucket-b", "inputs/x/job.json", '"0123abcd"', "x")

    assert one != other
    # and the ETag's quotes are S3's spelling, not part of it (an event's ETag has none)
    assert job_id_for_object("bucket-a", "inputs/x/job.json", "0123abcd", "x") == one
