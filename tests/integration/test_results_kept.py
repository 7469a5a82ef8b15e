"""Never lose a finished result (issue 15, findings 7 and 9), on the running local stack: the real
state machine (its Finalize Retry, its Catch into RecordFailure), the real handlers, moto's S3 and
DynamoDB, the worker pool and the webhook receiver.

Failures are injected inside the finalize Lambda (it runs in this process): a patch that raises once,
for one job only, at the moment the test is about; everything around it is the stack as it runs.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from talkstack.contract.record import JobRecord, utc_now
from talkstack.contract.worker import OutputObject, ResultMarker, StepAddress, marker_key, work_key
from talkstack.pipeline import finalize
from talkstack.pipeline.provenance import signed_key
from talkstack.pipeline.store import JobStore

pytestmark = pytest.mark.slow
AVATAR = StepAddress(step="avatar")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def avatar_job(pipeline, media, job_id: str) -> None:
    manifest = {
        "task": "avatar",
        "job_id": job_id,
        "inputs": {"image": "portrait.png", "audio": "speech.wav"},
        "notify": {"webhook_url": pipeline.hooks.url},
    }
    pipeline.drop(manifest, {"portrait.png": media["portrait"], "speech.wav": media["speech_5s"]}, job_id)


class InjectedFailure(RuntimeError):
    """The failure a test injects (a throttled request, a Lambda dying mid-way)."""


class Once:
    """Raise InjectedFailure the first time `when(job_id)` is met for this job, never again."""

    def __init__(self, job_id: str) -> None:
        self.job_id, self.fired = job_id, 0
        self._lock = threading.Lock()

    def fire(self, job_id: str) -> None:
        with self._lock:
            if job_id != self.job_id or self.fired:
                return
            self.fired += 1
        raise InjectedFailure(f"injected failure in finalize of {job_id}")


@pytest.fixture
def result_json_fails_once(monkeypatch) -> Callable[[str], Once]:
    """The first write of this job's result.json fails (S3 throttled it)."""

    def arm(job_id: str) -> Once:
        once, write = Once(job_id), finalize.write_result_json

        def flaky(s3: Any, record: JobRecord, bucket: str) -> str:
            once.fire(record.job_id)
            return write(s3, record, bucket)

        monkeypatch.setattr(finalize, "write_result_json", flaky)
        return once

    return arm


@pytest.fixture
def dies_after_completing(monkeypatch) -> Callable[[str], Once]:
    """Finalize's conditional write that completes this job lands, then the Lambda fails (its
    response lost, a timeout): the failure comes after the record says completed."""

    def arm(job_id: str) -> Once:
        once, update = Once(job_id), JobStore.update

        def then_fail(self: JobStore, job: str, change: Callable[[JobRecord], Any]) -> JobRecord:
            record = update(self, job, change)
            if change.__qualname__.startswith("finalize_job.") and record.status == "completed":
                once.fire(job)
            return record

        monkeypatch.setattr(JobStore, "update", then_fail)
        return once

    return arm


@pytest.fixture(params=["result_json_fails_once", "dies_after_completing"])
def injected(request) -> Iterator[Callable[[str], Once]]:
    yield request.getfixturevalue(request.param)


def test_a_failure_injected_in_finalize_leaves_a_completed_job_with_all_its_outputs(
    pipeline, media, injected
):
    # Given a job whose finalize fails once (writing result.json / right after completing the record)
    job_id = unique("kept")
    once = injected(job_id)
    avatar_job(pipeline, media, job_id)

    record = pipeline.wait(job_id)

    # Then the failure happened, Finalize was retried, and the execution succeeded
    assert once.fired == 1
    (execution,) = pipeline.executions(job_id)
    assert execution["status"] == "SUCCEEDED"
    # and the job is completed, every output in its record downloadable with the bytes the worker made
    # (the video as finalize signed its content credentials into it: signed_key)
    assert record.status == "completed" and record.error is None and record.result is not None
    rendered = pipeline.store.get_step_result(job_id, AVATAR, ResultMarker)
    made = {
        role: pipeline.s3.get_object(
            Bucket=pipeline.r.work_bucket, Key=signed_key(obj.key) if role == "video" else obj.key
        )["Body"].read()
        for role, obj in rendered.outputs.items()
    }
    assert {o.kind for o in record.result.outputs} == {"video", "thumbnail"}
    for output in record.result.outputs:
        body = pipeline.s3.get_object(Bucket=output.bucket, Key=output.key)["Body"].read()
        assert body == made[output.kind] and len(body) == output.bytes
    # and result.json is there, and is the record
    result_key = record.request.sibling_key(job_id, "result")
    body = pipeline.s3.get_object(Bucket=pipeline.r.output_bucket, Key=result_key)["Body"].read()
    assert JobRecord.model_validate_json(body) == record
    # and the job was announced once, as completed, and never as failed
    assert len(pipeline.sns.for_job(job_id, "job.completed")) == 1
    assert pipeline.sns.for_job(job_id, "job.failed") == []
    pipeline.hooks.wait_for(job_id, "job.completed")
    assert pipeline.hooks.received(job_id, "job.failed") == []
    assert [e.type for e in pipeline.store.events(job_id)].count("job.completed") == 1


def attempts_of(pipeline, job_id: str) -> list[str]:
    """The attempt ids dispatch recorded for the job (its TOKEN# items), in order."""
    items = pipeline.store.ddb.query(
        TableName=pipeline.r.jobs_table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :t)",
        ExpressionAttributeValues={":pk": {"S": f"JOB#{job_id}"}, ":t": {"S": "TOKEN#"}},
        ConsistentRead=True,
    )["Items"]
    return sorted((item["sk"]["S"].removeprefix("TOKEN#") for item in items), key=lambda a: a.split("-")[1])


def test_a_late_result_of_an_attempt_that_timed_out_changes_nothing(pipeline, media):
    # Given the first avatar attempt went silent: Step Functions timed it out (heartbeat) and retried
    job_id = unique("late-result")
    pipeline.stack.faults.add(job_id, "avatar", "silent")
    avatar_job(pipeline, media, job_id)
    record = pipeline.wait(job_id, timeout_s=120)
    assert record.status == "completed", record.error
    first, second = attempts_of(pipeline, job_id)
    kept = pipeline.store.get_step_result(job_id, AVATAR, ResultMarker)
    assert kept.attempt_id == second
    published = {
        o.key: pipeline.s3.get_object(Bucket=o.bucket, Key=o.key)["Body"].read()
        for o in record.result.outputs
    }

    # When the silent worker delivers after all: its outputs uploaded, then its result marker
    outputs = {}
    for role, name, content_type in (
        ("video", "video.mp4", "video/mp4"),
        ("thumbnail", "thumbnail.jpg", "image/jpeg"),
    ):
        body = f"{role} of the abandoned attempt {first}".encode()
        key = work_key(job_id, first, name)
        pipeline.s3.put_object(Bucket=pipeline.r.work_bucket, Key=key, Body=body, ContentType=content_type)
        outputs[role] = OutputObject(key=key, bytes=len(body), content_type=content_type)
    now = utc_now()
    late = ResultMarker(
        attempt_id=first,
        outputs=outputs,
        duration_s=5.0,
        width=256,
        height=256,
        fps=25.0,
        engine_s=1.0,
        worker="late-worker:1",
        started_at=now,
        at=now,
    )
    pipeline.s3.put_object(
        Bucket=pipeline.r.work_bucket,
        Key=marker_key(job_id, first, "result"),
        Body=late.model_dump_json().encode(),
    )

    # Then the complete Lambda closes that attempt and the step result stays the retry's
    token = pipeline.wait_until(
        lambda: (t := pipeline.store.get_token(job_id, first)) is not None and t.state != "waiting" and t
    )
    assert token and token.state == "closed"
    assert pipeline.store.get_step_result(job_id, AVATAR, ResultMarker) == kept
    assert pipeline.store.current_attempt(job_id, AVATAR) == second
    # and the published outputs are the same bytes
    for key, body in published.items():
        now_there = pipeline.s3.get_object(Bucket=pipeline.r.output_bucket, Key=key)["Body"].read()
        assert hashlib.sha256(now_there).digest() == hashlib.sha256(body).digest()
