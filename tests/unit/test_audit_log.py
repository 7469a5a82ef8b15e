"""The audit trail on moto's DynamoDB and S3 (the table layout the stack creates): append-only
entries under the key's and the day's partitions, a key's trail in time order and only its own,
key creation and revocation logged in the same transaction, the daily JSON Lines export, and each
key's idempotency records in a partition of their own."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import ClientError

from talkstack.api.keys import KeyStore, Principal
from talkstack.api.service import ApiService
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.audit import (
    Actor,
    AuditLog,
    day_shard,
    decode_audit_cursor,
    encode_audit_cursor,
    export_day_for,
    export_key,
)
from talkstack.pipeline.store import JobStore
from tests.support.steps import make_config
from tests.unit.test_api_access import TABLE, ddb  # noqa: F401 - the moto jobs table fixture

A = Actor("keyaaaaaaaaa", "203.0.113.7", "req-1")
B = Actor("keybbbbbbbbb", "198.51.100.9", "req-2")


def _partition(ddb, pk: str) -> list[dict]:  # noqa: F811
    return ddb.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": pk}},
    )["Items"]


def test_an_entry_is_written_under_its_key_and_its_day_and_never_overwritten(ddb):  # noqa: F811
    log = AuditLog(TABLE, ddb, retention_days=365)
    before = int(time.time())
    entry = log.record(A, "job.submitted", "job", "avatar-1", task="avatar")

    mine = _partition(ddb, f"AUDIT#{A.key_id}")
    day = _partition(ddb, f"AUDITDAY#{day_shard(entry.time.date().isoformat(), entry)}")
    assert len(mine) == len(day) == 1
    assert mine[0]["entry"] == day[0]["entry"]
    stored = json.loads(mine[0]["entry"]["S"])
    assert stored["key_id"] == A.key_id and stored["source_ip"] == "203.0.113.7"
    assert stored["request_id"] == "req-1" and stored["object"] == {"type": "job", "id": "avatar-1"}
    assert stored["details"] == {"task": "avatar"}
    expires = int(mine[0]["expires_at"]["N"])
    assert before + 365 * 86400 <= expires <= before + 365 * 86400 + 60
    # no `owner`: audit items never reach the by-owner index that lists a key's jobs
    assert "owner" not in mine[0] and "owner" not in day[0]
    assert JobStore(TABLE, ddb).list_owned(A.key_id) == ([], None)

    # append-only: the same entry cannot be written over itself
    with pytest.raises(ClientError) as caught:
        ddb.transact_write_items(TransactItems=log.puts(entry))
    assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"


def test_a_trail_is_one_keys_entries_in_time_order_filtered_and_paged(ddb):  # noqa: F811
    log = AuditLog(TABLE, ddb)
    actions = ["upload.created", "job.submitted", "output.url_issued", "job.cancelled"]
    for i, action in enumerate(actions):
        log.record(A, action, "job", f"job-{i}")  # type: ignore[arg-type]
        log.record(B, action, "job", f"theirs-{i}")  # type: ignore[arg-type]

    oldest, _ = log.trail(A.key_id, newest_first=False)
    assert [e.action for e in oldest] == actions
    assert {e.key_id for e in oldest} == {A.key_id}
    newest, _ = log.trail(A.key_id)
    assert [e.action for e in newest] == actions[::-1]

    only, _ = log.trail(A.key_id, actions=frozenset({"job.submitted", "job.cancelled"}), newest_first=False)
    assert [e.object.id for e in only] == ["job-1", "job-3"]

    first, next_key = log.trail(A.key_id, limit=3, newest_first=False)
    cursor = encode_audit_cursor(next_key)
    assert [e.object.id for e in first] == ["job-0", "job-1", "job-2"] and cursor
    rest, end = log.trail(A.key_id, limit=3, newest_first=False, cursor=decode_audit_cursor(cursor, A.key_id))
    assert [e.object.id for e in rest] == ["job-3"] and end is None
    # a cursor is bound to the key whose trail it pages
    with pytest.raises(TalkstackError) as caught:
        decode_audit_cursor(cursor, B.key_id)
    assert caught.value.code == ErrorCode.INVALID_REQUEST

    # [start, end): by the entries' own times
    middle = oldest[1].time
    window, _ = log.trail(A.key_id, start=middle, end=oldest[3].time, newest_first=False)
    assert [e.object.id for e in window] == ["job-1", "job-2"]


def test_a_failed_audit_write_fails_the_action(ddb):  # noqa: F811
    broken = AuditLog("no-such-table", ddb)
    with pytest.raises(TalkstackError) as caught:
        broken.record(A, "job.submitted", "job", "x")
    assert caught.value.code == ErrorCode.GENERATION_FAILED and "audit trail" in caught.value.message
    # a key is created in the same transaction as its entry: no entry, no key
    with pytest.raises(TalkstackError):
        KeyStore(TABLE, ddb, broken).create("pro", "unlogged")
    keys = ddb.scan(TableName=TABLE)["Items"]
    assert not [i for i in keys if i["pk"]["S"].startswith("APIKEY#")]


def test_key_creation_and_revocation_are_in_the_keys_trail(ddb):  # noqa: F811
    keys = KeyStore(TABLE, ddb)
    new = keys.create("pro", "acme")
    key_id = new.principal.key_id
    keys.revoke(key_id)
    with pytest.raises(TalkstackError) as caught:
        keys.authenticate({"x-api-key": new.key})
    assert caught.value.code == ErrorCode.UNAUTHORIZED
    with pytest.raises(TalkstackError) as caught:
        keys.revoke("nosuchkey000")
    assert caught.value.code == ErrorCode.NOT_FOUND

    trail, _ = AuditLog(TABLE, ddb).trail(key_id, newest_first=False)
    assert [(e.action, e.object.id, e.source_ip) for e in trail] == [
        ("key.created", key_id, "cli"),
        ("key.revoked", key_id, "cli"),
    ]
    assert trail[0].details == {"tier": "pro", "name": "acme"}
    assert AuditLog(TABLE, ddb).trail("nosuchkey000") == ([], None)


def test_the_daily_export_writes_the_days_entries_as_json_lines_idempotently(ddb):  # noqa: F811
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="audit-exports")
    log = AuditLog(TABLE, ddb)
    written = [log.record(actor, "job.submitted", "job", f"j{i}") for i, actor in enumerate((A, B, A))]
    today = written[0].time.date()

    key, count = log.export_day(s3, "audit-exports", today)
    assert key == f"audit/{today:%Y/%m/%d}.jsonl" and count == 3
    body = s3.get_object(Bucket="audit-exports", Key=key)["Body"].read()
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert [line["entry_id"] for line in lines] == [e.entry_id for e in written]  # oldest first
    assert lines[1]["key_id"] == B.key_id

    again, _ = log.export_day(s3, "audit-exports", today)
    assert again == key and s3.get_object(Bucket="audit-exports", Key=key)["Body"].read() == body
    quiet = today - timedelta(days=400)
    key, count = log.export_day(s3, "audit-exports", quiet)
    assert count == 0 and s3.get_object(Bucket="audit-exports", Key=key)["Body"].read() == b""


def test_a_days_entries_are_spread_over_shards_and_exported_in_time_order(ddb):  # noqa: F811
    # One partition for every tenant's day would throttle (and audit writes fail closed).
    log = AuditLog(TABLE, ddb)
    written = [log.record(A if i % 2 else B, "output.url_issued", "job", f"j{i}") for i in range(40)]
    today = written[0].time.date().isoformat()
    shards = {day_shard(today, entry) for entry in written}
    assert len(shards) > 4
    assert sum(len(_partition(ddb, f"AUDITDAY#{shard}")) for shard in shards) == 40
    exported = [entry.entry_id for entry in log.day(written[0].time.date())]
    assert exported == [entry.entry_id for entry in written]


def test_the_export_covers_yesterday_unless_told_a_day():
    assert export_day_for({"time": "2026-03-01T00:15:00Z"}) == date(2026, 2, 28)
    assert export_day_for({"day": "2025-12-31"}) == date(2025, 12, 31)
    assert export_day_for({}, now=datetime(2026, 1, 1, 0, 15, tzinfo=UTC)) == date(2025, 12, 31)
    assert export_key(date(2026, 2, 3)) == "audit/2026/02/03.jsonl"
    with pytest.raises(TalkstackError):
        export_day_for({"day": "yesterday"})


def test_each_keys_idempotency_records_have_their_own_partition_and_replays_work(
    ddb,  # noqa: F811
    no_pipeline_environment,
):
    s3 = boto3.client("s3", region_name="us-east-1")
    services = SimpleNamespace(
        config=make_config(jobs_table=TABLE), store=JobStore(TABLE, ddb), s3=s3, presign=s3
    )
    service = ApiService(services, ddb, backends=None)
    calls: list[str] = []

    def submit_ticket(ticket, files=()):  # the real submit needs a state machine; the records are what matter
        calls.append(ticket["owner"])
        return {
            "job_id": f"voice-{len(calls)}",
            "task": "voice",
            "status": "queued",
            "created_at": "2026-01-01T00:00:00Z",
            "links": {
                "self": f"/v1/jobs/voice-{len(calls)}",
                "cancel": f"/v1/jobs/voice-{len(calls)}/cancel",
            },
        }

    service._submit_ticket = submit_ticket  # type: ignore[method-assign]
    body = {"inputs": {"text": "hello"}}
    a, b = Principal("keyaaaaaaaaa", "pro", "a"), Principal("keybbbbbbbbb", "pro", "b")
    first, replayed = service.submit(a, "voice", body, "order-1")
    again, replayed_again = service.submit(a, "voice", body, "order-1")
    theirs, _ = service.submit(b, "voice", body, "order-1")  # the same Idempotency-Key, another tenant

    assert (replayed, replayed_again) == (False, True) and again.job_id == first.job_id
    assert theirs.job_id != first.job_id and calls == [a.key_id, b.key_id]
    assert len(_partition(ddb, f"IDEMPOTENCY#{a.key_id}")) == 1
    assert len(_partition(ddb, f"IDEMPOTENCY#{b.key_id}")) == 1
    assert _partition(ddb, "IDEMPOTENCY") == []  # the one shared partition of before
    with pytest.raises(TalkstackError) as caught:
        service.submit(a, "voice", {"inputs": {"text": "changed"}}, "order-1")
    assert caught.value.code == ErrorCode.IDEMPOTENCY_KEY_REUSED


def test_a_submission_whose_entry_cannot_be_written_starts_nothing(ddb, no_pipeline_environment):  # noqa: F811
    s3 = boto3.client("s3", region_name="us-east-1")
    store = JobStore(TABLE, ddb)
    started: list[dict] = []
    sfn = SimpleNamespace(start_execution=lambda **kw: started.append(kw))
    services = SimpleNamespace(
        config=make_config(jobs_table=TABLE), store=store, s3=s3, presign=s3, sfn=sfn, emit=lambda *a: None
    )
    service = ApiService(services, ddb, backends=None)
    service.audit = AuditLog("no-such-table", ddb)  # the audit write fails
    caller = Principal("keyaaaaaaaaa", "pro", "a", "203.0.113.7", "req-9")

    with pytest.raises(TalkstackError) as caught:
        service.submit(caller, "voice", {"inputs": {"text": "Never said."}}, None)

    assert caught.value.code == ErrorCode.GENERATION_FAILED and "audit trail" in caught.value.message
    assert started == []  # no execution without its entry
    (record,), _ = store.list_owned(caller.key_id)
    assert record.status == "failed" and record.error is not None and "audit" in record.error.message

    service.audit = AuditLog(TABLE, ddb)  # with the trail back, the same request goes through
    accepted, _ = service.submit(caller, "voice", {"inputs": {"text": "Said."}}, None)
    assert [call["name"] for call in started] == [accepted.job_id]
    (entry,), _ = service.audit.trail(caller.key_id)
    assert (entry.action, entry.object.id, entry.source_ip, entry.request_id) == (
        "job.submitted",
        accepted.job_id,
        "203.0.113.7",
        "req-9",
    )
