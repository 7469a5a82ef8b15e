"""Notify per tenant: an API job's webhook is signed with its key's secret, the key's registered
endpoints get the events their filter matches (each signed with its own secret), rotation sends
both signatures during the overlap, and a re-invoked notify sends nothing already reported. Real
HTTP to a receiver on 127.0.0.1, verified with the standardwebhooks library; DynamoDB is moto's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from talkstack.contract.events import JobEvent
from talkstack.contract.record import JobRecord, JobResult, JobSource, OutputFile, utc_now
from talkstack.contract.state import NotifyRequest
from talkstack.local.receiver import WebhookReceiver
from talkstack.pipeline.metrics import metrics
from talkstack.pipeline.notify import notify
from talkstack.pipeline.store import JobStore
from talkstack.pipeline.webhook_breaker import BreakerPolicy, WebhookBreaker, request_target
from talkstack.pipeline.webhook_endpoints import SigningSecrets, WebhookEndpoint, WebhookEndpoints
from tests.support.fakes import FakeSNS
from tests.support.steps import JOBS_TABLE, OUTPUT, avatar_request, make_config

STACK_SECRET = "whsec_dGVzdA=="  # make_config's


@pytest.fixture(autouse=True)
def no_metrics(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    yield
    metrics.clear_metrics()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(STACK_SECRET) as running:
        yield running


@pytest.fixture
def endpoints(ddb) -> WebhookEndpoints:
    return WebhookEndpoints(JOBS_TABLE, ddb)


@pytest.fixture
def config(no_pipeline_environment):
    return make_config(
        allow_loopback_webhooks=True,
        webhook_initial_backoff_s=0.01,
        webhook_max_backoff_s=0.02,
        webhook_timeout_s=5,
    )


@pytest.fixture
def sns(config) -> FakeSNS:
    return FakeSNS([config.events_topic_arn])


def api_job(store: JobStore, key_id: str | None, job_id: str = "job-1", **request: object) -> JobRecord:
    record = JobRecord.new(job_id, avatar_request(**request))
    if key_id is not None:
        record.source = JobSource(kind="api", api_key_id=key_id)
    assert store.create(record)
    return record


def complete(store: JobStore, job_id: str = "job-1") -> None:
    video = OutputFile(kind="video", bucket=OUTPUT, key=f"{job_id}/v.mp4", content_type="video/mp4", bytes=9)
    store.update(job_id, lambda r: r.mark_completed(JobResult(outputs=[video], duration_s=1.0)))


def verifies(secret: str, delivery) -> bool:
    try:
        Webhook(secret).verify(delivery.body, delivery.headers)
        return True
    except WebhookVerificationError:
        return False


def test_an_api_jobs_webhook_is_signed_with_its_keys_secret_not_the_stacks(
    config, store, sns, receiver, endpoints
):
    api_job(store, "keya", notify={"webhook_url": receiver.url, "events": ["job.completed"]})
    complete(store)

    notify(NotifyRequest(job_id="job-1", type="job.completed"), config, store, sns)

    (delivery,) = receiver.received()
    assert delivery.event["api_key_id"] == "keya"
    key_a = endpoints.key_secrets("keya").current  # created on first need, by notify
    assert verifies(key_a, delivery)
    assert not verifies(STACK_SECRET, delivery)
    assert not verifies(endpoints.key_secrets("keyb").current, delivery)


def test_a_job_without_a_key_keeps_the_stack_secret(config, store, sns, receiver):
    api_job(store, None, notify={"webhook_url": receiver.url})
    complete(store)

    notify(NotifyRequest(job_id="job-1", type="job.completed"), config, store, sns)

    (delivery,) = receiver.received()
    assert delivery.event["api_key_id"] is None and verifies(STACK_SECRET, delivery)


def test_each_matching_endpoint_of_the_key_gets_the_event_with_its_own_secret(
    config, store, sns, receiver, endpoints
):
    everything = endpoints.create("keya", receiver.url + "?to=all", None, None, 10)
    completed_only = endpoints.create("keya", receiver.url + "?to=done", ["job.completed"], None, 10)
    endpoints.create("keyb", receiver.url + "?to=other-tenant", None, None, 10)
    record = api_job(store, "keya")

    notify(NotifyRequest.of(JobEvent.from_record(record, "job.queued")), config, store, sns)
    complete(store)
    answer = notify(NotifyRequest(job_id="job-1", type="job.completed"), config, store, sns)

    got = sorted((d.event["type"], d.headers["webhook-id"][:4]) for d in receiver.received())
    assert got == [("job.completed", "evt_"), ("job.completed", "evt_"), ("job.queued", "evt_")]
    assert set(answer["endpoints"]) == {everything.id, completed_only.id}
    deliveries = receiver.received(type="job.completed")
    # Each request verifies with exactly one endpoint's secret; the other tenant's got nothing.
    assert sorted(verifies(everything.secrets.current, d) for d in deliveries) == [False, True]
    assert sorted(verifies(completed_only.secrets.current, d) for d in deliveries) == [False, True]
    # One report per (event, endpoint), the URL without its query string.
    reports = store.deliveries("job-1")
    assert len(reports) == 3 and {r["url"] for r in reports} == {receiver.url + "?redacted"}
    assert {r["endpoint_id"] for r in reports} == {everything.id, completed_only.id}


def end_the_overlap(ddb, key_id: str, endpoint: WebhookEndpoint) -> None:
    """Move the stored endpoint's overlap end into the past, as the clock would (no sleeping: a
    short overlap raced the clock under load). Written in the table layout webhook_endpoints
    documents, so notify reads it back as it would any rotated endpoint."""
    ended = endpoint.secrets.model_copy(update={"previous_expires_at": utc_now() - timedelta(seconds=1)})
    ddb.put_item(
        TableName=JOBS_TABLE,
        Item={
            "pk": {"S": f"WEBHOOKS#{key_id}"},
            "sk": {"S": f"ENDPOINT#{endpoint.id}"},
            "endpoint": {"S": endpoint.model_copy(update={"secrets": ended}).model_dump_json()},
        },
        ConditionExpression="attribute_exists(pk)",  # the endpoint as created, not a new item
    )


def test_after_a_rotation_requests_carry_both_signatures_until_the_overlap_ends(
    config, store, sns, receiver, endpoints, ddb
):
    endpoint = endpoints.create("keya", receiver.url, None, None, 10)
    rotated = endpoints.rotate("keya", endpoint.id, overlap_s=60)
    assert rotated is not None and rotated.secrets.previous == endpoint.secrets.current
    record = api_job(store, "keya")

    notify(NotifyRequest.of(JobEvent.from_record(record, "job.queued")), config, store, sns)
    (during,) = receiver.received()
    assert verifies(endpoint.secrets.current, during) and verifies(rotated.secrets.current, during)

    # The overlap ends
    end_the_overlap(ddb, "keya", rotated)
    store.update("job-1", lambda r: r.start_step("avatar"))
    notify(NotifyRequest.of(JobEvent.from_record(store.get("job-1"), "job.started")), config, store, sns)
    after = receiver.received(type="job.started")[0]
    assert verifies(rotated.secrets.current, after) and not verifies(endpoint.secrets.current, after)


def test_the_signing_secrets_of_a_rotation():
    old = SigningSecrets.new()
    new = old.rotated(overlap_s=60)
    assert new.active() == (new.current, old.current)
    assert new.active(new.previous_expires_at) == (new.current,)
    at_once = old.rotated(overlap_s=0)
    assert at_once.active() == (at_once.current,) and at_once.previous is None
    assert new.overlap_ends() == new.previous_expires_at


def test_a_redelivered_notify_for_a_reported_event_sends_nothing(config, store, sns, receiver, endpoints):
    endpoints.create("keya", receiver.url, ["job.completed"], None, 10)
    api_job(store, "keya", notify={"webhook_url": receiver.url, "events": ["job.completed"]})
    complete(store)
    request = NotifyRequest(job_id="job-1", type="job.completed")
    notify(request, config, store, sns)
    assert len(receiver.received()) == 2 and len(sns.called("Publish")) == 1

    # Lambda retries the async invocation (or the state machine sends the event again)
    again = notify(request, config, store, sns)

    assert len(receiver.received()) == 2 and len(sns.called("Publish")) == 1
    assert len(store.deliveries("job-1")) == 2 and len(store.events("job-1")) == 1
    assert again["webhook"] is None and again["endpoints"] == {} and len(again["already_sent"]) == 2


def test_a_claim_left_by_a_dead_invocation_is_taken_over_after_its_lease(config, store, sns, receiver):
    api_job(store, None, notify={"webhook_url": receiver.url})
    complete(store)
    event_id = JobEvent.make_event_id("job-1", "job.completed")
    # An invocation claimed the delivery and died before sending (its lease has run out)
    assert store.claim("job-1", f"DELIVERY#{event_id}#request", lease_s=-1)

    notify(NotifyRequest(job_id="job-1", type="job.completed"), config, store, sns)

    assert len(receiver.received()) == 1 and store.deliveries("job-1")[0]["delivered"]
    # while a live twin's claim is respected
    assert not store.claim("job-1", f"DELIVERY#{event_id}#request", lease_s=60)


# --- one tenant's dead receiver cannot hold notify: a circuit breaker per target -------------------


@pytest.fixture
def breaking_config(no_pipeline_environment):
    return make_config(
        allow_loopback_webhooks=True,
        webhook_max_attempts=1,
        webhook_timeout_s=5,
        webhook_pause_after_failures=2,
        webhook_pause_s=60,
        webhook_max_pause_s=3600,
    )


def queued(store: JobStore, key_id: str | None, job_id: str, **request: object) -> NotifyRequest:
    return NotifyRequest.of(JobEvent.from_record(api_job(store, key_id, job_id, **request), "job.queued"))


def test_a_target_failing_n_times_in_a_row_is_paused_and_other_tenants_are_not(
    breaking_config, store, sns, endpoints
):
    with WebhookReceiver(STACK_SECRET) as dead, WebhookReceiver(STACK_SECRET) as healthy:
        dead.fail_next([500] * 10)
        failing = endpoints.create("keya", dead.url, None, None, 10)
        other = endpoints.create("keyb", healthy.url, None, None, 10)
        healthy.tenant_secrets = lambda key: [other.secrets.current]
        for n in (1, 2):
            # The second failure trips the breaker: the pause is counted from that delivery's clock
            # (whole epoch seconds), so bracket it.
            tripped_from = utc_now().replace(microsecond=0)
            answer = notify(queued(store, "keya", f"job-a{n}"), breaking_config, store, sns)
            tripped_by = utc_now()
            assert answer["endpoints"][failing.id] == {"delivered": False, "attempts": 1}
            assert answer["paused"] == []

        answer = notify(queued(store, "keya", "job-a3"), breaking_config, store, sns)

        # Not attempted: the receiver saw two requests, and the report says why and until when.
        assert len(dead.received()) == 2
        assert answer["paused"] == [failing.id] and answer["endpoints"][failing.id]["attempts"] == 0
        (report,) = store.deliveries("job-a3")
        assert report["refused"].startswith("paused after 2 consecutive failed deliveries until ")
        assert report["attempts"] == [] and not report["delivered"]
        paused_until = datetime.fromisoformat(report["paused_until"])
        assert tripped_from + timedelta(seconds=60) <= paused_until <= tripped_by + timedelta(seconds=60)
        # The SNS event and the timeline are there as always
        assert len(sns.called("Publish")) == 3 and len(store.events("job-a3")) == 1

        # Another key's endpoint is delivered as before
        answer = notify(queued(store, "keyb", "job-b1"), breaking_config, store, sns)
        assert answer["endpoints"][other.id] == {"delivered": True, "attempts": 1}
        assert len(healthy.received()) == 1


def test_a_paused_per_request_webhook_is_known_by_its_host_and_its_url_is_not_stored(
    breaking_config, store, sns, ddb
):
    with WebhookReceiver(STACK_SECRET) as dead:
        dead.fail_next([503] * 10)
        for n, token in enumerate(("s3cr3t-1", "s3cr3t-2")):
            url = f"{dead.url}/path-{n}?token={token}"  # another path and token: the same host
            notify(
                queued(store, "keya", f"job-{n}", notify={"webhook_url": url}), breaking_config, store, sns
            )
        answer = notify(
            queued(store, "keya", "job-9", notify={"webhook_url": dead.url + "?token=s3cr3t-3"}),
            breaking_config,
            store,
            sns,
        )
        assert answer["paused"] == ["request"] and len(dead.received()) == 2

    items = ddb.scan(TableName=JOBS_TABLE)["Items"]
    health = [i for i in items if i["sk"]["S"].startswith("HEALTH#")]
    assert [i["pk"]["S"] for i in health] == ["WEBHOOKS#keya"]
    assert "s3cr3t" not in str(health) and "127.0.0.1" not in str(health)
    assert int(health[0]["expires_at"]["N"]) > time.time() + 3600  # a TTL past the longest pause


def test_pauses_double_up_to_the_cap_and_a_success_clears_the_history(ddb):
    breaker = WebhookBreaker(JOBS_TABLE, ddb, BreakerPolicy(failures=2, pause_s=60, max_pause_s=200))
    t = 1_000_000.0

    def until() -> float | None:
        pause = breaker.paused("keya", now=t).get("wh_x")
        return None if pause is None else pause.until.timestamp() - t

    breaker.record("keya", "wh_x", delivered=False, now=t)
    assert until() is None  # one failure: not yet
    breaker.record("keya", "wh_x", delivered=False, now=t)
    assert until() == 60
    t += 61  # the pause is over: the next delivery is tried, and its failure pauses at once, twice as long
    assert until() is None
    breaker.record("keya", "wh_x", delivered=False, now=t)
    assert until() == 120
    t += 121
    breaker.record("keya", "wh_x", delivered=False, now=t)
    assert until() == 200  # the cap
    assert breaker.paused("keyb", now=t) == {}  # another key's targets are apart

    t += 201
    breaker.record("keya", "wh_x", delivered=True, now=t)
    breaker.record("keya", "wh_x", delivered=False, now=t)
    assert until() is None  # history cleared: one failure after a success pauses nothing


def test_concurrent_failures_trip_a_target_once(ddb):
    breaker = WebhookBreaker(JOBS_TABLE, ddb, BreakerPolicy(failures=1, pause_s=60, max_pause_s=3600))
    for _ in range(3):  # three runs failing together: the first trips it, the others see the pause
        breaker.record(None, "url-abc", delivered=False, now=1000)
    item = ddb.get_item(
        TableName=JOBS_TABLE, Key={"pk": {"S": "WEBHOOKS#_stack"}, "sk": {"S": "HEALTH#url-abc"}}
    )
    assert item["Item"]["trips"]["N"] == "1" and item["Item"]["paused_until"]["N"] == "1060"


def test_a_breaker_set_to_zero_never_pauses(ddb):
    breaker = WebhookBreaker(JOBS_TABLE, ddb, BreakerPolicy(failures=0, pause_s=60, max_pause_s=60))
    for _ in range(5):
        breaker.record("keya", "wh_x", delivered=False)
    assert breaker.paused("keya") == {} and ddb.scan(TableName=JOBS_TABLE)["Items"] == []


def test_request_targets_hash_the_origin_only():
    a = request_target("https://Hooks.Example.com/a?token=1")
    assert a == request_target("https://hooks.example.com:443/b?token=2")
    assert a != request_target("https://hooks.example.com:8443/a")
    assert a != request_target("https://other.example.com/a")
    assert a.startswith("url-") and "example" not in a


def test_sns_and_the_timeline_are_written_before_any_webhook_is_sent(
    config, store, sns, receiver, endpoints, monkeypatch
):
    seen: list[tuple[int, int]] = []
    record = receiver._record

    def observing(handler, headers, body) -> None:  # what SNS and the timeline held at arrival
        seen.append((len(sns.called("Publish")), len(store.events("job-1"))))
        record(handler, headers, body)

    monkeypatch.setattr(receiver, "_record", observing)
    endpoints.create("keya", receiver.url, None, None, 10)

    notify(queued(store, "keya", "job-1", notify={"webhook_url": receiver.url}), config, store, sns)

    assert seen == [(1, 1), (1, 1)]


# --- a run that fails gives its claims back ---------------------------------------------------------


def test_a_run_that_fails_mid_delivery_leaves_the_delivery_to_the_retry(
    config, store, sns, receiver, monkeypatch
):
    import talkstack.pipeline.notify as notify_module

    request = queued(store, None, "job-1", notify={"webhook_url": receiver.url})

    def dies(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the run died mid-delivery")

    with monkeypatch.context() as patch:
        patch.setattr(notify_module, "deliver_webhooks", dies)
        with pytest.raises(RuntimeError, match="mid-delivery"):
            notify(request, config, store, sns)
    assert receiver.received() == [] and store.deliveries("job-1") == []

    # Lambda's retry (a minute later, well inside the old 3-minute lease) delivers it
    again = notify(request, config, store, sns)

    assert again["webhook"] == {"delivered": True, "attempts": 1} and again["already_sent"] == []
    assert len(receiver.received()) == 1 and len(sns.called("Publish")) == 1
    assert [r["delivered"] for r in store.deliveries("job-1")] == [True]


def test_a_failure_after_one_report_is_saved_redoes_only_the_others(
    config, store, sns, receiver, endpoints, monkeypatch
):
    endpoint = endpoints.create("keya", receiver.url + "?to=endpoint", None, None, 10)
    receiver.tenant_secrets = lambda key: [endpoint.secrets.current, endpoints.key_secrets(key).current]
    request = queued(store, "keya", "job-1", notify={"webhook_url": receiver.url})
    saved = store.add_delivery

    def second_write_fails(job_id, event_id, report, target="request"):
        if target != "request":
            raise RuntimeError("throttled")
        saved(job_id, event_id, report, target=target)

    with monkeypatch.context() as patch:
        patch.setattr(store, "add_delivery", second_write_fails)
        with pytest.raises(RuntimeError, match="throttled"):
            notify(request, config, store, sns)
    assert len(receiver.received()) == 2

    again = notify(request, config, store, sns)

    assert again["already_sent"] == ["request"] and again["endpoints"][endpoint.id]["delivered"]
    assert len(receiver.received()) == 3  # the endpoint again (its report was lost), not the request


def test_a_claim_held_by_a_live_twin_is_in_progress_not_already_sent(config, store, sns, receiver):
    request = queued(store, None, "job-1", notify={"webhook_url": receiver.url})
    assert store.claim("job-1", f"DELIVERY#{request.event.event_id}#request", lease_s=60)

    answer = notify(request, config, store, sns)

    assert answer["in_progress"] == ["request"] and answer["already_sent"] == []
    assert receiver.received() == []
