"""GPU task slots (admission → JobSource.gpu_slots → Plan.max_concurrency) and the upload storage
quota, on moto's in-process DynamoDB with the stack's table layout. The end-to-end proofs over HTTP
are tests/integration/test_gpu_slots.py and test_upload_quota.py."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from talkstack.api.keys import TIER_LIMITS, Principal
from talkstack.api.limits import DAY_S, Admission, UploadQuota
from talkstack.api.uploads import Uploads, derived_upload_id
from talkstack.contract.composition import JOB_REQUEST_ADAPTER
from talkstack.contract.record import JobRecord, JobSource
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.jobs_table import create_table_request
from talkstack.pipeline.plan import plan_job
from talkstack.pipeline.store import JobStore
from talkstack.settings import MediaLimits
from tests.support.steps import avatar_request, make_config

TABLE = "unit-jobs"
GB = 1_000_000_000


@pytest.fixture
def ddb():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**create_table_request(TABLE))
        yield client


def voice_job(job_id: str, owner: str = "k1") -> JobRecord:
    record = JobRecord.new(
        job_id, JOB_REQUEST_ADAPTER.validate_python({"task": "voice", "inputs": {"text": "hi"}})
    )
    record.source = JobSource(kind="api", api_key_id=owner)
    return record


def parallel_job(job_id: str, owner: str = "k1") -> JobRecord:
    record = JobRecord.new(job_id, avatar_request(options={"long_audio": "parallel"}))
    record.source = JobSource(kind="api", api_key_id=owner)
    return record


def test_every_tier_has_at_least_as_many_gpu_tasks_as_jobs():
    # so ordinary (one-task) jobs meet the job limit first, and the task limit binds fan-out only
    assert TIER_LIMITS["free"].gpu_tasks == 1
    for limits in TIER_LIMITS.values():
        assert limits.gpu_tasks >= limits.concurrent_jobs


def test_a_parallel_job_gets_the_slots_its_tier_has_left_and_holds_them(ddb):
    store = JobStore(TABLE, ddb)
    admission = Admission(TABLE, ddb, store)
    pro = Principal("k1", "pro", "k1")  # 5 jobs, 8 GPU tasks
    assert admission.admit(pro, voice_job("one")) == 1
    assert admission.admit(pro, voice_job("two")) == 1
    # a parallel avatar takes what is left (8 - 2), never more than the operator's cap
    assert admission.admit(pro, parallel_job("wide"), parallel=True, most=16) == 6
    assert store.get("wide").source.gpu_slots == 6  # what the Plan state turns into the Map's concurrency
    assert admission.active(pro)[0] == {"one": 1, "two": 1, "wide": 6}

    # every slot is held: even a one-task job waits, though the job limit (5) has room
    with pytest.raises(TalkstackError) as caught:
        admission.admit(pro, voice_job("three"))
    assert caught.value.code == ErrorCode.RATE_LIMITED
    assert caught.value.details["limit"] == "gpu_tasks" and caught.value.details["allowed"] == 8
    assert store.get("three") is None

    store.update("one", lambda r: r.mark_cancelled())  # a finished job frees its slot
    assert admission.admit(pro, parallel_job("narrow"), parallel=True, most=16) == 1


def test_a_parallel_job_never_gets_more_than_the_cap(ddb):
    admission = Admission(TABLE, ddb, JobStore(TABLE, ddb))
    enterprise = Principal("k2", "enterprise", "k2")
    assert admission.admit(enterprise, parallel_job("big", "k2"), parallel=True, most=16) == 16


def test_a_free_key_runs_one_gpu_task_whatever_the_job(ddb):
    store = JobStore(TABLE, ddb)
    admission = Admission(TABLE, ddb, store)
    free = Principal("k3", "free", "k3")
    assert admission.admit(free, parallel_job("long", "k3"), parallel=True, most=16) == 1
    assert store.get("long").source.gpu_slots == 1


def test_jobs_listed_before_slots_were_recorded_hold_one(ddb):
    store = JobStore(TABLE, ddb)
    for i in range(7):
        store.create(voice_job(f"old-{i}", "k4"))
    ddb.put_item(  # the item as the previous release wrote it: job ids, no slots
        TableName=TABLE,
        Item={
            "pk": {"S": "ACTIVE#k4"},
            "sk": {"S": "ACTIVE"},
            "jobs": {"L": [{"S": f"old-{i}"} for i in range(4)]},
            "version": {"N": "4"},
        },
    )
    admission = Admission(TABLE, ddb, store)
    assert (
        admission.admit(Principal("k4", "pro", "k4"), parallel_job("new", "k4"), parallel=True, most=16) == 4
    )


@pytest.mark.parametrize(
    ("source", "setting", "expected"),
    [
        (JobSource(kind="api", api_key_id="k1", gpu_slots=1), 16, 1),
        (JobSource(kind="api", api_key_id="k1", gpu_slots=6), 16, 6),
        (JobSource(kind="api", api_key_id="k1", gpu_slots=32), 16, 16),  # the setting caps everyone
        (JobSource(kind="s3", bucket="inputs-bucket", key="inputs/a/job.json"), 16, 16),
        (JobSource(kind="execution"), 3, 3),
    ],
)
def test_the_plan_carries_the_jobs_gpu_slots_or_the_setting(
    ddb, no_pipeline_environment, source, setting, expected
):
    store = JobStore(TABLE, ddb)
    record = parallel_job("job-1")
    record.source = source
    store.create(record)
    config = make_config(parallel_max_concurrency=setting, jobs_table=TABLE)
    assert plan_job("job-1", config, store).max_concurrency == expected


# --- the upload quota --------------------------------------------------------------------------------


def upload_item(upload_id: str) -> dict:
    return {"pk": {"S": f"UPLOAD#{upload_id}"}, "sk": {"S": "UPLOAD"}, "owner": {"S": "k1"}}


def test_the_quota_refuses_what_does_not_fit_and_frees_it_when_the_uploads_expire(ddb):
    now = [100 * DAY_S + 3600.0]  # 01:00 UTC on day 100
    quota = UploadQuota(TABLE, ddb, clock=lambda: now[0])
    free = Principal("k1", "free", "k1")
    expires = int(now[0]) + 7 * DAY_S  # on day 107
    assert quota.reserve(free, 600, 1000, expires, upload_item("upl_a"))
    now[0] += DAY_S  # a day later: another upload, expiring on day 108
    assert quota.reserve(free, 300, 1000, expires + DAY_S, upload_item("upl_b"))
    with pytest.raises(TalkstackError) as caught:
        quota.reserve(free, 101, 1000, expires + DAY_S, upload_item("upl_c"))
    error = caught.value
    assert error.code == ErrorCode.STORAGE_QUOTA_EXCEEDED and "quota" in error.message
    assert (error.details["quota_bytes"], error.details["used_bytes"], error.details["requested_bytes"]) == (
        1000,
        900,
        101,
    )
    # the first upload stops counting at the end of its expiry day (day 107): that is the retry time
    assert error.details["retry_after_s"] == 108 * DAY_S - now[0]
    assert "Item" not in ddb.get_item(
        TableName=TABLE, Key={"pk": {"S": "UPLOAD#upl_c"}, "sk": {"S": "UPLOAD"}}
    )
    assert quota.reserve(free, 100, 1000, expires + DAY_S, upload_item("upl_c"))  # it fits exactly

    now[0] = 107 * DAY_S + DAY_S - 1  # the last second of day 107: upl_a still counts
    with pytest.raises(TalkstackError):
        quota.reserve(free, 1, 1000, int(now[0]) + 7 * DAY_S, upload_item("upl_d"))
    now[0] += 1  # day 108: its 600 bytes are free, whether or not TTL has deleted its record yet
    assert quota.held(free)[0] == {108: 400}
    assert quota.reserve(free, 600, 1000, int(now[0]) + 7 * DAY_S, upload_item("upl_d"))


def test_an_existing_upload_record_is_not_counted_twice(ddb):
    quota = UploadQuota(TABLE, ddb, clock=lambda: 50 * DAY_S)
    pro = Principal("k1", "pro", "k1")
    assert quota.reserve(pro, 10, 1000, 57 * DAY_S, upload_item("upl_same"))
    assert not quota.reserve(pro, 10, 1000, 57 * DAY_S, upload_item("upl_same"))
    assert quota.held(pro)[0] == {57: 10}


def test_quotas_are_per_key(ddb):
    quota = UploadQuota(TABLE, ddb, clock=lambda: 50 * DAY_S)
    assert quota.reserve(Principal("k1", "free", "k1"), 1000, 1000, 57 * DAY_S, upload_item("upl_1"))
    assert quota.reserve(Principal("k2", "free", "k2"), 1000, 1000, 57 * DAY_S, upload_item("upl_2"))


class NoS3:
    def put_object(self, **kw):
        raise AssertionError("nothing may be stored")


def test_pending_files_are_checked_and_named_without_any_io(ddb):
    uploads = Uploads(TABLE, ddb, NoS3(), "in", MediaLimits(), quota_bytes=lambda tier: GB)
    pro = Principal("k1", "pro", "k1")
    first = uploads.pending(pro, "image", "a.png", "image/png", b"png", idempotency_key="idem-1")
    again = uploads.pending(pro, "image", "a.png", "image/png; q=1", b"png", idempotency_key="idem-1")
    assert (
        first.upload_id
        == again.upload_id
        == derived_upload_id("k1", "idem-1", "image", "a.png", "image/png", b"png")
    )
    others = {
        uploads.pending(pro, "image", "a.png", "image/png", b"PNG", idempotency_key="idem-1").upload_id,
        uploads.pending(pro, "audio", "a.png", "image/png", b"png", idempotency_key="idem-1").upload_id,
        uploads.pending(pro, "image", "a.png", "image/png", b"png", idempotency_key="idem-2").upload_id,
        uploads.pending(
            Principal("k2", "pro", "k2"), "image", "a.png", "image/png", b"png", "idem-1"
        ).upload_id,
        uploads.pending(pro, "image", "a.png", "image/png", b"png").upload_id,  # no key: a fresh id
    }
    assert first.upload_id not in others and len(others) == 5
    with pytest.raises(TalkstackError) as caught:
        uploads.pending(pro, "image", "a.exe", "application/x-msdos", b"MZ")
    assert caught.value.code == ErrorCode.UNSUPPORTED_MEDIA
    assert ddb.scan(TableName=TABLE)["Items"] == []


class MemoryS3:
    def __init__(self) -> None:
        self.puts: list[str] = []

    def put_object(self, Bucket, Key, Body, ContentType):
        self.puts.append(Key)


def test_storing_the_same_pending_file_twice_counts_it_once(ddb):
    s3 = MemoryS3()
    uploads = Uploads(TABLE, ddb, s3, "in", MediaLimits(), quota_bytes=lambda tier: 5)
    free = Principal("k1", "free", "k1")
    file = uploads.pending(free, "audio", "a.wav", "audio/wav", b"1234", idempotency_key="idem")
    first = uploads.store(free, file)
    second = uploads.store(free, file)  # a retry after a failed attempt: same id, same object key
    assert first == second and s3.puts == [first.key, first.key]
    assert sum(uploads.quota.held(free)[0].values()) == 4
    with pytest.raises(TalkstackError) as caught:  # 4 + 2 > 5
        uploads.store(free, uploads.pending(free, "image", "b.png", "image/png", b"12"))
    assert caught.value.code == ErrorCode.STORAGE_QUOTA_EXCEEDED and len(s3.puts) == 2
