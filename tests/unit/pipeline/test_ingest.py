"""Ingest: an S3 manifest → one execution, named deterministically; what cannot become an execution
input → a failed record, a job.failed event and a dead letter; anything else is ignored."""

from __future__ import annotations

import json

import pytest

from talkstack.contract.fields import MAX_REQUEST_BYTES
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.ingest import Ingestor
from talkstack.pipeline.jobids import job_id_for_object
from talkstack.pipeline.store import JobStore
from tests.support.fakes import EmittedEvents, FakeS3, FakeSQS, FakeStepFunctions, client_error
from tests.support.steps import DLQ, INPUT, STATE_MACHINE

MANIFEST = {"task": "avatar", "inputs": {"image": "portrait.png", "audio": "speech.wav"}}


@pytest.fixture
def ingestor(
    config: PipelineConfig,
    store: JobStore,
    s3: FakeS3,
    sfn: FakeStepFunctions,
    sqs: FakeSQS,
    emit: EmittedEvents,
) -> Ingestor:
    return Ingestor(config, store, s3, sfn, sqs, emit)


def drop(s3: FakeS3, key: str, body: bytes | dict) -> str:
    """Put a manifest; the job id ingest must derive from it."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    etag = s3.put_object(Bucket=INPUT, Key=key, Body=data)["ETag"]
    return job_id_for_object(INPUT, key, etag, key.split("/")[1])


def test_a_manifest_starts_one_execution_named_by_its_job_id(ingestor, s3, sfn, sqs, store):
    # Given a manifest under the input prefix
    job_id = drop(s3, "inputs/Démo 1/job.json", MANIFEST)

    # When its S3 event arrives
    outcome = ingestor.handle(INPUT, "inputs/Démo 1/job.json")

    # Then one execution of the job state machine starts, named by the derived id, with the request
    # and where it came from as input (validate creates the record, not ingest)
    assert outcome.action == "started" and outcome.job_id == job_id and job_id.startswith("demo-1-")
    (start,) = sfn.called("StartExecution")
    assert start["stateMachineArn"] == STATE_MACHINE and start["name"] == job_id
    payload = json.loads(start["input"])
    assert payload["request"] == MANIFEST
    assert payload["source"] == {
        "kind": "s3",
        "bucket": INPUT,
        "key": "inputs/Démo 1/job.json",
        "etag": s3.objects[(INPUT, "inputs/Démo 1/job.json")].etag.strip('"'),
    }
    assert store.get(job_id) is None and sqs.queues[DLQ] == []


def test_a_redelivered_event_starts_nothing_new(ingestor, s3, sfn):
    # Given a manifest whose execution was started by the first delivery
    job_id = drop(s3, "inputs/dup/job.json", MANIFEST)
    assert ingestor.handle(INPUT, "inputs/dup/job.json").action == "started"

    # When the same event is delivered twice more, once after the execution has finished
    again = ingestor.handle(INPUT, "inputs/dup/job.json")
    sfn.finish(job_id)
    late = ingestor.handle(INPUT, "inputs/dup/job.json")

    # Then both are duplicates of the same job and no second StartExecution was made
    assert (again.action, again.job_id) == ("duplicate", job_id)
    assert (late.action, late.job_id) == ("duplicate", job_id)
    assert len(sfn.called("StartExecution")) == 1 and len(sfn.executions) == 1


def test_a_start_that_loses_the_race_is_a_duplicate(ingestor, s3, sfn):
    # Given two deliveries that both found no execution: the other one started it in between
    job_id = drop(s3, "inputs/race/job.json", MANIFEST)
    sfn.start_execution(stateMachineArn=STATE_MACHINE, name=job_id, input='{"other": "input"}')
    sfn.describe_execution = _never_found  # the describe ran before the other start landed

    # When this one starts the same name
    outcome = ingestor.handle(INPUT, "inputs/race/job.json")

    # Then ExecutionAlreadyExists is a duplicate, not an error
    assert (outcome.action, outcome.job_id) == ("duplicate", job_id)


def _never_found(**params: object) -> dict:
    raise client_error("DescribeExecution", "ExecutionDoesNotExist", "Execution Does Not Exist")


def test_a_changed_manifest_is_a_new_job(ingestor, s3, sfn):
    # Given a started manifest that is then overwritten with different bytes
    first = drop(s3, "inputs/edit/job.json", MANIFEST)
    ingestor.handle(INPUT, "inputs/edit/job.json")
    second = drop(s3, "inputs/edit/job.json", {**MANIFEST, "callback_id": "v2"})

    # When the second upload's event arrives
    outcome = ingestor.handle(INPUT, "inputs/edit/job.json")

    # Then it starts its own execution (the id follows the object's ETag)
    assert second != first and (outcome.action, outcome.job_id) == ("started", second)
    assert [c["name"] for c in sfn.called("StartExecution")] == [first, second]


def test_the_manifests_own_job_id_names_the_execution(ingestor, s3, sfn):
    drop(s3, "inputs/chosen/job.json", {**MANIFEST, "job_id": "my-job_1"})

    outcome = ingestor.handle(INPUT, "inputs/chosen/job.json")

    assert (outcome.action, outcome.job_id) == ("started", "my-job_1")
    assert sfn.called("StartExecution")[0]["name"] == "my-job_1"


@pytest.mark.parametrize(
    ("bucket", "key"),
    [
        ("another-bucket", "inputs/a/job.json"),  # another bucket's notification
        (INPUT, "inputs/a/portrait.png"),  # media beside the manifest
        (INPUT, "elsewhere/a/job.json"),  # a manifest outside the input prefix
        (INPUT, "inputs/a/job.json.bak"),
    ],
)
def test_objects_that_are_not_manifests_under_the_prefix_are_ignored(
    ingestor, s3, sfn, sqs, store, emit, bucket, key
):
    # Given such an object (even with a valid manifest in it)
    s3.buckets.add(bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(MANIFEST).encode())

    outcome = ingestor.handle(bucket, key)

    # Then nothing is read, started, recorded, emitted or dead-lettered
    assert outcome.action == "ignored" and outcome.job_id is None
    assert s3.called("GetObject") == [] and sfn.calls == [] and sqs.queues[DLQ] == [] and emit.events == []


def test_a_manifest_deleted_before_it_was_read_goes_to_the_dead_letter_queue(ingestor, s3, sfn, emit):
    # Given an event for a manifest that no longer exists
    outcome = ingestor.handle(INPUT, "inputs/gone/job.json")

    # Then no job exists, but the dead-letter queue says what happened
    assert outcome.action == "ignored" and sfn.calls == [] and emit.events == []
    (letter,) = ingestor.sqs.messages(DLQ)
    assert letter["key"] == "inputs/gone/job.json" and letter["job_id"] is None
    assert "disappeared" in letter["reason"]


REJECTED = {
    "invalid JSON": (b'{"task": "avatar", "inputs": {', "invalid JSON"),
    "unusable job_id": (json.dumps({**MANIFEST, "job_id": "../evil"}).encode(), "job_id:"),
    "too large": (b" " * (MAX_REQUEST_BYTES + 1) + b"{}", "larger than"),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_a_manifest_that_cannot_become_an_execution_is_rejected(ingestor, s3, sfn, sqs, store, emit, case):
    # Given a manifest that is not a usable execution input
    body, mention = REJECTED[case]
    job_id = drop(s3, "inputs/bad/job.json", body)

    # When it is ingested
    outcome = ingestor.handle(INPUT, "inputs/bad/job.json")

    # Then no execution starts; the derived job id gets a failed record (INVALID_REQUEST, at validate)
    # and one job.failed event; the dead-letter queue gets the reason; the manifest stays in place
    assert (outcome.action, outcome.job_id) == ("rejected", job_id) and mention in outcome.reason
    assert sfn.called("StartExecution") == []
    record = store.get(job_id)
    assert record.status == "failed" and record.error.code == "INVALID_REQUEST"
    assert record.error.step == "validate" and mention in record.error.message
    assert record.source.key == "inputs/bad/job.json" and record.source.kind == "s3"
    assert emit.events == [(job_id, "job.failed", "failed")]
    (letter,) = sqs.messages(DLQ)
    assert (
        letter["job_id"] == job_id and letter["key"] == "inputs/bad/job.json" and mention in letter["reason"]
    )
    assert s3.objects[(INPUT, "inputs/bad/job.json")].body == body
    assert s3.called("DeleteObject") == []


def test_a_redelivered_bad_manifest_fails_its_job_once(ingestor, s3, store, emit):
    job_id = drop(s3, "inputs/bad-twice/job.json", b"not json")
    ingestor.handle(INPUT, "inputs/bad-twice/job.json")
    first = store.get_versioned(job_id)

    outcome = ingestor.handle(INPUT, "inputs/bad-twice/job.json")

    # The record is not written again and no second job.failed goes out
    assert outcome.action == "rejected"
    assert store.get_versioned(job_id) == first
    assert emit.types(job_id) == ["job.failed"]
