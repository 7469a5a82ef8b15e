"""Job items expire `record_retention_days` after their last write (DynamoDB TTL on `expires_at`)."""

from __future__ import annotations

import time

from talkstack.api.keys import Principal
from talkstack.api.limits import Admission
from talkstack.contract.record import JobError
from talkstack.contract.state import Plan
from talkstack.contract.worker import StepAddress
from talkstack.errors import ErrorCode
from talkstack.pipeline.store import JobStore
from tests.unit.test_api_access import TABLE, _record, ddb  # noqa: F401 - the moto jobs table fixture

DAY = 86400


def _expiries(ddb, job_id: str) -> dict[str, int | None]:  # noqa: F811
    items = ddb.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": f"JOB#{job_id}"}},
    )["Items"]
    return {
        i["sk"]["S"].split("#")[0]: int(i["expires_at"]["N"]) if "expires_at" in i else None for i in items
    }


def _write_a_job(store: JobStore, ddb, job_id: str) -> None:  # noqa: F811
    record = _record(job_id, "k1")
    Admission(TABLE, ddb, store).admit(Principal("k1", "pro", "k1"), record)  # the API's transaction
    store.update(job_id, lambda r: r.start_step("voice", backend="local", model="lite-voice"))
    voice = StepAddress(step="voice")
    store.put_token(job_id, "voice-1-abc", voice, "token", ttl_s=3600)
    store.put_step_result(
        job_id, "plan", Plan(steps=["voice"], voice=True, main="none", segment=False, timeouts={})
    )
    store.put_worker_error(job_id, voice, JobError(code=ErrorCode.GENERATION_FAILED, message="x"), True)
    store.add_delivery(job_id, "evt_1", {"attempts": 1})


def test_with_a_retention_every_job_item_expires_and_tokens_keep_their_own_ttl(ddb):  # noqa: F811
    before = int(time.time())
    _write_a_job(JobStore(TABLE, ddb, retention_days=30), ddb, "job-kept-30d")
    expiries = _expiries(ddb, "job-kept-30d")
    assert set(expiries) == {"RECORD", "TOKEN", "STEP", "WERR", "DELIVERY"}
    for sk, expires_at in expiries.items():
        if sk == "TOKEN":
            assert before + 3600 <= expires_at <= before + 3600 + 60  # the token's own, shorter TTL
        else:
            assert before + 30 * DAY <= expires_at <= before + 30 * DAY + 60, sk


def test_with_retention_0_job_items_are_kept(ddb):  # noqa: F811
    _write_a_job(JobStore(TABLE, ddb, retention_days=0), ddb, "job-kept-forever")
    expiries = _expiries(ddb, "job-kept-forever")
    assert {sk for sk, at in expiries.items() if at is not None} == {"TOKEN"}


def test_by_default_records_expire_after_30_days_and_audit_entries_after_a_year(no_pipeline_environment):
    from tests.support.steps import make_config

    config = make_config()
    assert config.record_retention_days == 30  # finding 11: nothing is kept forever by default
    assert config.audit_retention_days == 365
    assert config.audit_export_bucket == config.output_bucket  # unless an audit bucket is set
