"""GET /v1/usage's arithmetic (buckets by UTC day or month, totals, one key's jobs only), the models
list's limits, and the request checks submit runs before anything is written: on moto's DynamoDB."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from talkstack.api.keys import TIER_LIMITS, Principal
from talkstack.api.service import MAX_PAGE, ApiService
from talkstack.contract.fields import MAX_AVATAR_SECONDS
from talkstack.contract.record import JobRecord, JobResult, JobSource, OutputFile
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.settings import MediaLimits
from tests.support.steps import OUTPUT, avatar_request
from tests.unit.api.api_env import A, B, executions, make_service


def refusal(call: Callable[[], object]) -> TalkstackError:
    with pytest.raises(TalkstackError) as caught:
        call()
    return caught.value


def stored(
    api: ApiService, job_id: str, owner: Principal, at: datetime, ending: str, cost: float = 0.0
) -> None:
    """A job of `owner` created at `at`, ended as `ending` (completed ones rendered 2.5 s at `cost`)."""
    record = JobRecord.new(job_id, avatar_request())
    record.source = JobSource(kind="api", api_key_id=owner.key_id)
    record.created_at = at
    if ending == "completed":
        video = OutputFile(
            kind="video", bucket=OUTPUT, key=f"{job_id}/v.mp4", content_type="video/mp4", bytes=9
        )
        record.mark_completed(JobResult(outputs=[video], duration_s=2.5, estimated_cost_usd=cost))
    elif ending == "failed":
        record.mark_failed(TalkstackError(ErrorCode.GENERATION_FAILED, "boom"), step="avatar")
    elif ending == "cancelled":
        record.mark_cancelled()
    assert api.svc.store.create(record)


def test_usage_counts_one_keys_jobs_per_utc_day_and_totals_them(aws, api):
    day1, day2 = datetime(2026, 3, 1, 23, 30, tzinfo=UTC), datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
    stored(api, "j1", A, day1, "completed", cost=0.25)
    stored(api, "j2", A, day1 + timedelta(minutes=1), "failed")
    stored(api, "j3", A, day2, "completed", cost=0.5)
    stored(api, "j4", A, day2 + timedelta(minutes=1), "cancelled")
    stored(api, "j5", A, day2 + timedelta(minutes=2), "queued")
    stored(api, "theirs", B, day2, "completed", cost=9.0)  # another key's: never counted

    usage = api.usage(A, "day", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))

    first, second = usage.buckets
    assert (first.start, first.end) == (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))
    assert (first.jobs, first.completed, first.failed, first.cancelled, first.active) == (2, 1, 1, 0, 0)
    assert (second.jobs, second.completed, second.failed, second.cancelled, second.active) == (3, 1, 0, 1, 1)
    assert (first.seconds_rendered, first.estimated_cost_usd) == (2.5, 0.25)
    totals = usage.totals
    assert (totals.jobs, totals.completed, totals.failed, totals.cancelled, totals.active) == (5, 2, 1, 1, 1)
    assert (totals.seconds_rendered, totals.estimated_cost_usd) == (5.0, 0.75)
    assert usage.limits == {
        "requests_per_minute": TIER_LIMITS["pro"].requests_per_minute,
        "concurrent_jobs": TIER_LIMITS["pro"].concurrent_jobs,
        "gpu_tasks": TIER_LIMITS["pro"].gpu_tasks,
        "upload_bytes": api.config.upload_quota_pro_bytes,
    }


def test_usage_by_month_rolls_over_the_year_and_leaves_out_jobs_outside_the_window(aws, api):
    stored(api, "dec", A, datetime(2025, 12, 31, 12, tzinfo=UTC), "completed", cost=1.0)
    stored(api, "jan", A, datetime(2026, 1, 1, 12, tzinfo=UTC), "completed", cost=2.0)
    stored(api, "later", A, datetime(2026, 2, 1, 12, tzinfo=UTC), "completed", cost=4.0)

    usage = api.usage(A, "month", datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))

    assert [(b.start.date().isoformat(), b.end.date().isoformat(), b.jobs) for b in usage.buckets] == [
        ("2025-12-01", "2026-01-01", 1),
        ("2026-01-01", "2026-02-01", 1),
    ]
    assert usage.totals.estimated_cost_usd == 3.0


def test_usage_windows_default_to_30_days_or_a_year_of_months_and_are_bounded(aws, api):
    end = datetime(2026, 5, 17, 8, tzinfo=UTC)
    assert api.usage(A, "day", None, end).start == end - timedelta(days=30)
    assert api.usage(A, "month", None, end).start == datetime(2025, 5, 1, tzinfo=UTC)
    assert api.usage(A, "day", end - timedelta(days=400), end).start == end - timedelta(days=400)
    for start in (end, end + timedelta(seconds=1), end - timedelta(days=400, seconds=1)):
        assert refusal(lambda start=start: api.usage(A, "day", start, end)).code == ErrorCode.INVALID_REQUEST


def test_the_models_list_gives_each_task_its_limits(aws):
    api = make_service(aws)
    api.limits = MediaLimits(max_audio_seconds=MAX_AVATAR_SECONDS + 100)
    models = {m.id: m for m in api.models().models}
    by_task = {m.task: m for m in models.values() if m.default}

    assert set(by_task) == {"avatar", "voice", "video", "matte"}
    assert by_task["matte"].id == "lite-matte" and by_task["matte"].available  # compositions' cut-outs
    assert by_task["matte"].limits.max_duration_s is None  # a scene's own limits apply
    assert by_task["avatar"].limits.max_audio_seconds == MAX_AVATAR_SECONDS  # the avatar's own cap
    assert by_task["voice"].limits.max_audio_seconds == MAX_AVATAR_SECONDS + 100
    assert by_task["voice"].limits.max_image_bytes is None
    assert by_task["video"].limits.max_duration_s == 60.0
    assert by_task["avatar"].available and by_task["voice"].available  # the lite engines run here
    gpu = models["multitalk"]  # a GPU model on a stack whose local workers cannot run it
    assert not gpu.available and gpu.unavailable_reason is not None
    assert gpu.unavailable_reason.startswith("multitalk is a GPU model")  # the field's prefix cut off


def test_submit_checks_the_request_before_anything_is_written(aws):
    api = make_service(aws)
    too_long = "x" * (api.limits.max_text_chars + 1)
    for body, code in (
        ({"inputs": {"text": too_long}}, ErrorCode.TEXT_TOO_LONG),
        (
            {"inputs": {"text": "hi"}, "notify": {"webhook_url": "https://127.0.0.1/hook"}},
            ErrorCode.INVALID_REQUEST,
        ),
        ({"task": "avatar", "inputs": {"text": "hi"}}, ErrorCode.INVALID_REQUEST),
        (["not", "an", "object"], ErrorCode.INVALID_REQUEST),
    ):
        assert refusal(lambda body=body: api.submit(A, "voice", body, None)).code == code
    assert api.svc.store.list_owned(A.key_id)[0] == [] and executions(aws) == []
    # A local-mode stack takes the loopback webhook the cloud refused
    local = make_service(aws, allow_loopback_webhooks=True)
    accepted, _ = local.submit(
        A, "voice", {"inputs": {"text": "hi"}, "notify": {"webhook_url": "https://127.0.0.1/hook"}}, None
    )
    assert executions(aws) == [accepted.job_id]


def test_a_key_at_its_concurrent_job_limit_is_refused_and_nothing_starts(aws):
    api = make_service(aws)
    free = Principal("keyfffffffff", "free", "free")
    first, _ = api.submit(free, "voice", {"inputs": {"text": "one"}}, None)

    caught = refusal(lambda: api.submit(free, "voice", {"inputs": {"text": "two"}}, None))

    assert caught.code == ErrorCode.RATE_LIMITED and caught.details["limit"] == "concurrent_jobs"
    assert executions(aws) == [first.job_id]
    api.cancel(free, first.job_id)  # a finished job frees its slot
    second, _ = api.submit(free, "voice", {"inputs": {"text": "two"}}, None)
    assert executions(aws) == sorted([first.job_id, second.job_id])


def test_usage_reads_every_page_of_the_keys_jobs(aws, api):
    start = datetime(2026, 4, 1, tzinfo=UTC)
    for i in range(MAX_PAGE + 1):  # one more than a page holds
        stored(api, f"j{i:03d}", A, start + timedelta(minutes=i), "completed", cost=0.01)

    usage = api.usage(A, "day", start, start + timedelta(days=1))

    assert usage.totals.jobs == usage.totals.completed == MAX_PAGE + 1
    assert usage.totals.estimated_cost_usd == round((MAX_PAGE + 1) * 0.01, 6)
