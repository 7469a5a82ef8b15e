"""Notify per tenant: an API job's webhook is signed with its key's secret, the key's registered
endpoints get the events their filter matches (each signed with its own secret), rotation sends
both signatures during the overlap, and a re-invoked notify sends nothing already reported. Real
HTTP to a receiver on 127.0.0.1, verified with the standardwebhooks library; DynamoDB is moto's."""

from __future__ import annotations

import time
from collections.abc import Iterator

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
from talkstack.pipeline.webhook_endpoints import SigningSecrets, WebhookEndpoints
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


def test_after_a_rotation_requests_carry_both_signatures_until_the_overlap_ends(
    config, store, sns, receiver, endpoints
):
    endpoint = endpoints.create("keya", receiver.url, None, None, 10)
    rotated = endpoints.rotate("keya", endpoint.id, overlap_s=2)
    assert rotated is not None and rotated.secrets.previous == endpoint.secrets.current
    record = api_job(store, "keya")

    notify(NotifyRequest.of(JobEvent.from_record(record, "job.queued")), config, store, sns)
    (during,) = receiver.received()
    assert verifies(endpoint.secrets.current, during) and verifies(rotated.secrets.current, during)

    # The overlap ends
    time.sleep(max(0.0, (rotated.secrets.previous_expires_at - utc_now()).total_seconds()) + 0.1)
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
