"""Deletion on request through the API service, on moto's in-process S3, DynamoDB and Step Functions:
a job's uploads, outputs, held outputs, work files and table items go, and nothing of another job or
key; a key's erasure takes everything of the key and the key itself, keeps the audit trail, and can
be resumed. Also: the upload records' TTL follows the retention setting."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from talkstack.api.keys import KeyStore, Principal
from talkstack.api.models import UploadRequest
from talkstack.api.service import ApiService
from talkstack.contract.events import JobEvent
from talkstack.contract.record import JobResult, OutputFile
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.audit import AuditLog
from talkstack.pipeline.outputs import JOB_ID_METADATA
from talkstack.settings import retention
from tests.support.consent import consent_block
from tests.support.steps import INPUT, JOBS_TABLE, OUTPUT, WORK
from tests.unit.api.api_env import A, B, make_service
from tests.unit.api.test_api_uploads_service import PNG, WAV, uploaded


def everything(aws: SimpleNamespace) -> list[str]:
    """Every object (`bucket/key`) and every table item (`pk|sk|attributes`) there is (a test may Scan)."""
    found = []
    for bucket in (INPUT, OUTPUT, WORK):
        for page in aws.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            found += [f"{bucket}/{o['Key']}" for o in page.get("Contents", [])]
    for page in aws.ddb.get_paginator("scan").paginate(TableName=JOBS_TABLE):
        found += [f"{i['pk']['S']}|{i['sk']['S']}|{i}" for i in page["Items"]]
    return found


def mentions(aws: SimpleNamespace, *needles: str) -> list[str]:
    return [thing for thing in everything(aws) if any(n in thing for n in needles)]


def a_completed_job(
    api: ApiService, aws: SimpleNamespace, who, image: str, audio: str, clip: str | None = None
) -> str:
    """A job of `who` that ran: its work files, a held output, events, and published outputs (and,
    given a consent clip's upload id, a consent attestation that brings it)."""
    body: dict = {"inputs": {"image": image, "audio": audio}}
    if clip:
        body["consent"] = consent_block("likeness", clip=clip)
    accepted, _ = api.submit(who, "avatar", body, "idem-" + audio)
    job_id = accepted.job_id
    for key in (f"work/{job_id}/avatar-1-x/video.mp4", f"markers/{job_id}/avatar-1-x/result.json"):
        aws.s3.put_object(Bucket=WORK, Key=key, Body=b"x")
    aws.s3.put_object(Bucket=WORK, Key=f"control/{job_id}/cancel.json", Body=b"{}")
    aws.s3.put_object(Bucket=WORK, Key=f"held/{job_id}/video.mp4", Body=b"x")
    record = api.svc.store.get(job_id)
    assert record is not None and record.request is not None
    outputs = []
    for kind, name in (("video", "video.mp4"), ("thumbnail", "thumbnail.jpg"), ("result", "result.json")):
        key = record.request.output_key(job_id, name)
        aws.s3.put_object(Bucket=OUTPUT, Key=key, Body=b"x", Metadata={JOB_ID_METADATA: job_id})
        if kind != "result":
            outputs.append(OutputFile(kind=kind, bucket=OUTPUT, key=key, content_type="video/mp4", bytes=1))

    def complete(r):
        r.status = "completed"
        r.result = JobResult(outputs=outputs)

    api.svc.store.update(job_id, complete)
    api.svc.store.add_event(JobEvent.from_record(record, "job.queued"))  # the timeline notify keeps
    aws.sfn.stop_execution(executionArn=_arn(job_id))  # the execution has ended
    return job_id


def _arn(job_id: str) -> str:
    from tests.support.steps import STATE_MACHINE

    return STATE_MACHINE.replace(":stateMachine:", ":execution:") + f":{job_id}"


def test_deleting_a_job_removes_everything_it_left_and_nothing_of_another_job_or_key(aws, api):
    face, voice = uploaded(api, A, "face.png", "image/png", PNG), uploaded(api, A, "me.wav", "audio/wav", WAV)
    clip = uploaded(api, A, "consent.wav", "audio/wav", WAV)  # the consent clip is an input too
    job = a_completed_job(api, aws, A, face, voice, clip)
    other_voice = uploaded(api, A, "other.wav", "audio/wav", WAV)
    other = a_completed_job(api, aws, A, face, other_voice)  # A's second job, sharing the photo
    b_face, b_voice = uploaded(api, B, "b.png", "image/png", PNG), uploaded(api, B, "b.wav", "audio/wav", WAV)
    b_job = a_completed_job(api, aws, B, b_face, b_voice)
    before = set(everything(aws))

    receipt = api.delete_job(A, job)

    after = set(everything(aws))
    # Only the job's own things went (and its id left A's active-job list); only audit entries came.
    assert all(any(n in t for n in (job, voice, face, clip, f"ACTIVE#{A.key_id}|")) for t in before - after)
    assert all(t.startswith(("AUDIT", f"ACTIVE#{A.key_id}|")) for t in after - before)
    assert mentions(aws, clip) and not [t for t in mentions(aws, clip) if not t.startswith("AUDIT")]
    left = [t for t in mentions(aws, job, voice, face) if not t.startswith("AUDIT")]
    assert [t for t in left if other not in t] == []  # (the other job's record names the photo it used)
    assert mentions(aws, other) and mentions(aws, b_job) and mentions(aws, other_voice)
    kinds = {o.kind for o in receipt.objects}
    assert kinds == {"uploads", "outputs", "work", "held"}
    assert receipt.counts["outputs"] == 3 and receipt.counts["held"] == 1 and receipt.counts["work"] == 3
    assert receipt.counts["table_items"] >= 3  # record, event, idempotency record
    trail, _ = AuditLog(JOBS_TABLE, aws.ddb).trail(A.key_id, actions=frozenset({"job.deleted"}))
    assert [(e.object.id, e.details["outputs"]) for e in trail] == [(job, 3)]

    # Again, or by another key: the job is not there (the same answer as a job that never was).
    for who in (A, B):
        with pytest.raises(TalkstackError) as caught:
            api.delete_job(who, job)
        assert caught.value.code == ErrorCode.NOT_FOUND
    with pytest.raises(TalkstackError) as caught:
        api.delete_job(B, other)
    assert caught.value.code == ErrorCode.NOT_FOUND and mentions(aws, other)


def test_a_running_job_is_cancelled_first_and_an_upload_an_unfinished_job_uses_is_kept(aws, api):
    face, voice = uploaded(api, A, "face.png", "image/png", PNG), uploaded(api, A, "me.wav", "audio/wav", WAV)
    running, _ = api.submit(A, "avatar", {"inputs": {"image": face, "audio": voice}}, None)
    other_voice = uploaded(api, A, "other.wav", "audio/wav", WAV)
    still_running, _ = api.submit(A, "avatar", {"inputs": {"image": face, "audio": other_voice}}, None)

    receipt = api.delete_job(A, running.job_id)

    assert receipt.cancelled
    status = aws.sfn.describe_execution(executionArn=_arn(running.job_id))["status"]
    assert status == "ABORTED"
    assert any(face in note for note in receipt.kept)  # the other unfinished job reads the photo
    assert mentions(aws, f"{face}/") and not mentions(aws, f"{voice}/")
    assert not [t for t in mentions(aws, running.job_id) if not t.startswith("AUDIT")]
    assert api.svc.store.get(still_running.job_id) is not None
    assert "job.cancelled" not in api.svc.emit.types(running.job_id)  # a deleted job announces nothing


def test_a_job_whose_execution_is_still_finishing_is_refused_with_retry_after(aws, api):
    accepted, _ = api.submit(A, "voice", {"inputs": {"text": "hello"}}, None)
    failure = TalkstackError(ErrorCode.GENERATION_FAILED, "boom")
    api.svc.store.update(accepted.job_id, lambda r: r.mark_failed(failure, step="voice"))  # NotifyFailed next

    with pytest.raises(TalkstackError) as caught:
        api.delete_job(A, accepted.job_id)

    assert caught.value.code == ErrorCode.CONFLICT and caught.value.details["retry_after_s"] >= 1
    assert api.svc.store.get(accepted.job_id) is not None  # nothing was removed


def test_erasing_a_key_removes_all_its_data_and_the_key_and_nothing_of_another_key(aws, api):
    keys = KeyStore(JOBS_TABLE, aws.ddb)
    a_key = keys.create("pro", "tenant a").principal
    b_key = keys.create("pro", "tenant b").principal
    a, b = Principal(a_key.key_id, "pro", "tenant a"), Principal(b_key.key_id, "pro", "tenant b")
    for who in (a, b):
        face, voice = (
            uploaded(api, who, "f.png", "image/png", PNG),
            uploaded(api, who, "v.wav", "audio/wav", WAV),
        )
        a_completed_job(api, aws, who, face, voice)
        api.submit(who, "voice", {"inputs": {"text": "still running"}}, None)
        uploaded(api, who, "unused.wav", "audio/wav", WAV)
        aws.ddb.put_item(
            TableName=JOBS_TABLE,
            Item={"pk": {"S": f"WEBHOOKS#{who.key_id}"}, "sk": {"S": "ENDPOINT#wh_x"}},
        )
    before_b = [t for t in mentions(aws, b.key_id) if not t.startswith("AUDIT")]

    # A deadline already past: nothing is deleted yet, and the receipt says so.
    partial = api.deleter.erase_key(a.key_id, a.actor, deadline=time.monotonic() - 1)
    assert not partial.complete and partial.jobs == [] and not partial.key_removed

    receipt = api.erase_data(a)

    assert receipt.complete and receipt.key_removed and len(receipt.jobs) == 2
    assert receipt.counts["uploads"] == 3 and receipt.counts["webhooks"] == 1 and receipt.counts["key"] == 1
    assert [t for t in mentions(aws, a.key_id) if not t.startswith("AUDIT")] == []
    for job_id in receipt.jobs:
        assert [t for t in mentions(aws, job_id) if not t.startswith("AUDIT")] == []
    assert [t for t in mentions(aws, b.key_id) if not t.startswith("AUDIT")] == before_b
    assert keys.get(a.key_id) is None and keys.get(b.key_id) is not None
    trail, _ = AuditLog(JOBS_TABLE, aws.ddb).trail(a.key_id, actions=frozenset({"data.erased"}))
    assert [e.details["complete"] for e in trail] == [True, False]  # newest first

    again = api.erase_data(a)  # idempotent: nothing more to do
    assert again.complete and again.jobs == [] and again.counts.get("key", 0) == 0


def test_upload_records_live_as_long_as_the_upload_retention_setting(aws):
    for days in (retention.UPLOAD_RETENTION_DAYS, 2):
        api = make_service(aws, upload_retention_days=days)
        upload_id = uploaded(api, A, "v.wav", "audio/wav", WAV)
        item = aws.ddb.get_item(
            TableName=JOBS_TABLE, Key={"pk": {"S": f"UPLOAD#{upload_id}"}, "sk": {"S": "UPLOAD"}}
        )["Item"]
        assert abs(int(item["expires_at"]["N"]) - (time.time() + days * 86400)) < 60


def test_erasing_a_key_removes_upload_records_whose_bytes_never_arrived(aws, api):
    # A ticket whose URL was never used leaves a record (owner, file name) and no object: the
    # erasure cannot find it by listing the bucket.
    for who in (A, B):
        api.uploads.create(who, UploadRequest(filename="never sent.wav", content_type="audio/wav", bytes=99))
    used = uploaded(api, A, "v.wav", "audio/wav", WAV)
    api.delete_job(A, a_completed_job(api, aws, A, uploaded(api, A, "f.png", "image/png", PNG), used))
    assert [t for t in mentions(aws, used) if not t.startswith("AUDIT")] == []  # nor its index entry
    before_b = [t for t in mentions(aws, B.key_id) if not t.startswith("AUDIT")]

    receipt = api.erase_data(A)

    assert receipt.complete
    assert [t for t in mentions(aws, A.key_id) if not t.startswith("AUDIT")] == []
    assert [t for t in mentions(aws, B.key_id) if not t.startswith("AUDIT")] == before_b


def test_an_erasure_skips_a_listed_job_that_is_gone_meanwhile(aws, api, monkeypatch):
    # The by-owner index is eventually consistent (and a DELETE of one job may run beside the
    # erasure): a job it still lists may have been deleted already.
    accepted, _ = api.submit(A, "voice", {"inputs": {"text": "still running"}}, None)
    stale = api.svc.store.get(accepted.job_id)
    api.delete_job(A, accepted.job_id)
    listed = iter([([stale], None)])
    monkeypatch.setattr(api.svc.store, "list_owned", lambda *a, **k: next(listed, ([], None)))

    receipt = api.erase_data(A)

    assert receipt.complete and receipt.jobs == []
    trail, _ = AuditLog(JOBS_TABLE, aws.ddb).trail(A.key_id, actions=frozenset({"job.deleted"}))
    assert len(trail) == 1


def test_a_job_that_ends_between_the_read_and_the_cancel_is_deleted_as_it_is_now(aws, api):
    accepted, _ = api.submit(A, "voice", {"inputs": {"text": "hello"}}, None)
    queued = api.svc.store.get(accepted.job_id)  # the caller's read, before the job finished
    api.svc.store.update(accepted.job_id, lambda r: r.mark_completed(JobResult(outputs=[])))
    aws.sfn.stop_execution(executionArn=_arn(accepted.job_id))

    receipt = api.deleter.delete_job(queued, A.actor)

    assert not receipt.cancelled and api.svc.store.get(accepted.job_id) is None
