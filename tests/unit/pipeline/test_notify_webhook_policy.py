"""Notify follows TALKSTACK_ALLOW_LOOPBACK_WEBHOOKS both ways: off (the cloud), a loopback receiver
is refused over plain http and over https, and nothing is sent; on (local mode), a loopback
receiver over plain http gets the event, byte for byte as signed. (Plain http to any other host
never reaches a job record: the contract refuses it; tests/unit/test_webhooks.py tests the guard.)
The receiver is a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from standardwebhooks import Webhook

from talkstack.contract.events import JobEvent
from talkstack.contract.record import JobRecord, JobResult, OutputFile
from talkstack.contract.state import NotifyRequest
from talkstack.local.receiver import WebhookReceiver
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.metrics import metrics
from talkstack.pipeline.notify import notify
from talkstack.pipeline.store import JobStore
from tests.support.fakes import FakeSNS
from tests.support.steps import OUTPUT, avatar_request, make_config

SECRET = "whsec_dGVzdA=="  # make_config's webhook secret


@pytest.fixture(autouse=True)
def no_metrics(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    yield
    metrics.clear_metrics()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as running:
        yield running


def stack(allow_loopback: bool) -> PipelineConfig:
    return make_config(
        allow_loopback_webhooks=allow_loopback,
        webhook_max_attempts=1,
        webhook_timeout_s=10,
        webhook_delivery_deadline_s=20,
    )


def completed_job(store: JobStore, url: str) -> None:
    record = JobRecord.new("job-1", avatar_request(notify={"webhook_url": url}))
    assert store.create(record)
    audio = OutputFile(kind="audio", bucket=OUTPUT, key="job-1/speech.wav", content_type="audio/wav", bytes=4)
    store.update("job-1", lambda r: r.mark_completed(JobResult(outputs=[audio], duration_s=1.0)))


def send(config: PipelineConfig, store: JobStore) -> dict:
    sns = FakeSNS([config.events_topic_arn])
    answer = notify(NotifyRequest(job_id="job-1", type="job.completed"), config, store, sns)
    assert len(sns.called("Publish")) == 1  # the topic gets the event whatever the webhook's fate
    return answer


def https_to(receiver: WebhookReceiver) -> str:
    return receiver.url.replace("http://", "https://", 1)


@pytest.mark.parametrize(
    ("url_of", "because"),
    [
        (lambda receiver: receiver.url, "must use https"),  # loopback over plain http
        (https_to, "loopback"),  # loopback, even over https
    ],
)
def test_with_the_setting_off_loopback_and_plain_http_are_refused_and_nothing_is_sent(
    no_pipeline_environment, store, receiver, url_of, because
):
    completed_job(store, url_of(receiver))

    answer = send(stack(allow_loopback=False), store)

    assert answer["webhook"] == {"delivered": False, "attempts": 0}
    (report,) = store.deliveries("job-1")
    assert because in report["refused"] and report["attempts"] == []
    assert receiver.received() == []


def test_with_the_setting_on_a_loopback_receiver_gets_the_bytes_that_were_signed(
    no_pipeline_environment, store, receiver
):
    completed_job(store, receiver.url)

    answer = send(stack(allow_loopback=True), store)

    assert answer["webhook"] == {"delivered": True, "attempts": 1}
    (delivery,) = receiver.received()
    # Verified over the raw body the server read, as any Standard Webhooks receiver does; and that
    # body is the event exactly as notify serialised it (no re-encoding on the way)
    event = JobEvent.model_validate(Webhook(SECRET).verify(delivery.body, delivery.headers))
    assert delivery.body == event.model_dump_json() == store.events("job-1")[0].model_dump_json()
    assert json.loads(delivery.body)["type"] == "job.completed"
