"""Notify: every event goes to the SNS topic (with the attributes subscription filters match on) and
into the job's timeline; the events a job subscribed to are POSTed to its webhook, signed per
Standard Webhooks; a webhook that fails is logged and never fails notify. The webhook receiver is a
real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from standardwebhooks import Webhook

from talkstack.contract.events import JobEvent
from talkstack.contract.quality import QualityReport
from talkstack.contract.record import JobRecord, JobResult, OutputFile
from talkstack.contract.state import NotifyRequest
from talkstack.local.receiver import WebhookReceiver
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.metrics import metrics
from talkstack.pipeline.notify import notify
from talkstack.pipeline.store import JobStore
from tests.support.fakes import FakeSNS
from tests.support.steps import OUTPUT, avatar_request, make_config, quality_report

EVENT_SCHEMA = json.loads(
    (Path(__file__).resolve().parents[3] / "schemas" / "job-event.schema.json").read_text()
)

SECRET = "whsec_dGVzdA=="  # make_config's webhook secret


@pytest.fixture(autouse=True)
def no_metrics(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # notify adds CloudWatch metrics to powertools' module-level Metrics: keep them out of the output
    # and out of later tests.
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    yield
    metrics.clear_metrics()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as running:
        yield running


def loopback_config(**changes: object) -> PipelineConfig:
    """A local-mode stack: webhooks to 127.0.0.1 allowed, retries without long waits."""
    fields: dict[str, object] = {
        "allow_loopback_webhooks": True,
        "webhook_initial_backoff_s": 0.01,
        "webhook_max_backoff_s": 0.02,
        "webhook_timeout_s": 5,
    }
    return make_config(**{**fields, **changes})


def job(store: JobStore, **request: object) -> JobRecord:
    record = JobRecord.new("job-1", avatar_request(**request))
    assert store.create(record)
    return record


def completed(store: JobStore, quality: QualityReport | None = None) -> JobRecord:
    video = OutputFile(kind="video", bucket=OUTPUT, key="job-1/video.mp4", content_type="video/mp4", bytes=9)
    result = JobResult(outputs=[video], duration_s=2.0, quality=quality)
    return store.update("job-1", lambda r: r.mark_completed(result))


def test_an_event_a_handler_raised_is_published_as_it_was(config, store, sns):
    # Given validate raised job.queued when the job was queued, and the job has started since
    # (handlers invoke notify asynchronously)
    record = job(store)
    event = JobEvent.from_record(record, "job.queued")
    store.update("job-1", lambda r: r.start_step("avatar"))

    answer = notify(NotifyRequest.of(event), config, store, sns)

    # Then the topic gets the event as it was raised, with the attributes filters match on
    ((message, attributes),) = sns.messages(config.events_topic_arn)
    assert JobEvent.model_validate(message) == event and message["status"] == "queued"
    assert attributes == {"type": "job.queued", "job_id": "job-1", "status": "queued", "task": "avatar"}
    # and the job's timeline has it
    assert store.events("job-1") == [event]
    assert answer["event_id"] == event.event_id and answer["type"] == "job.queued"
    assert answer["webhook"] is None  # the job has no webhook


def test_the_state_machine_names_the_event_and_notify_builds_it_from_the_record(config, store, sns):
    # Given finalize completed the job, and NotifyCompleted sends {job_id, type}
    job(store, callback_id="cb-7", metadata={"customer": "acme"})
    completed(store)

    notify(NotifyRequest(job_id="job-1", type="job.completed"), config, store, sns)

    ((message, attributes),) = sns.messages(config.events_topic_arn)
    event = JobEvent.model_validate(message)
    assert (event.type, event.status, event.progress) == ("job.completed", "completed", 1.0)
    assert (event.result.bucket, event.result.key, event.result.duration_s) == (
        OUTPUT,
        "job-1/video.mp4",
        2.0,
    )
    assert event.callback_id == "cb-7" and event.metadata == {"customer": "acme"}
    assert attributes["status"] == "completed" and store.events("job-1") == [event]


def test_a_cancelled_jobs_other_endings_are_not_announced(config, store, sns):
    # Given the job was cancelled (which announced job.cancelled), and a step still in flight at the
    # cancel ended in the failure path, whose NotifyFailed arrives now
    job(store)
    store.update("job-1", lambda r: r.mark_cancelled())

    answer = notify(NotifyRequest(job_id="job-1", type="job.failed"), config, store, sns)

    assert "skipped" in answer and sns.calls == [] and store.events("job-1") == []

    # The cancel's own announcement goes out
    notify(NotifyRequest(job_id="job-1", type="job.cancelled"), config, store, sns)
    assert [m["type"] for m, _ in sns.messages(config.events_topic_arn)] == ["job.cancelled"]


def test_a_failure_after_completion_announces_the_completion(config, store, sns):
    # Given finalize marked the job completed and then failed (its result.json write, say): the Catch
    # ran the failure path, which kept the outputs, and NotifyCompleted never ran
    job(store)
    completed(store)

    answer = notify(NotifyRequest(job_id="job-1", type="job.failed"), config, store, sns)

    # Then the one announcement is the truth the record holds
    assert answer["type"] == "job.completed"
    assert [m["type"] for m, _ in sns.messages(config.events_topic_arn)] == ["job.completed"]
    assert [e.type for e in store.events("job-1")] == ["job.completed"]


def test_an_event_for_a_job_without_a_record_is_an_error(config, store, sns):
    with pytest.raises(KeyError, match="job-1"):
        notify(NotifyRequest(job_id="job-1", type="job.completed"), config, store, sns)
    assert sns.calls == []


def test_a_subscribed_event_is_posted_to_the_webhook_signed(no_pipeline_environment, store, receiver):
    # Given a job that subscribed its webhook to job.completed only
    config = loopback_config()
    sns = FakeSNS([config.events_topic_arn])
    job(store, notify={"webhook_url": receiver.url, "events": ["job.completed"]})
    completed(store)

    answer = notify(NotifyRequest(job_id="job-1", type="job.completed"), config, store, sns)

    # Then the receiver got one POST, verified with the stack's secret by standardwebhooks
    (delivery,) = receiver.received()
    event = JobEvent.model_validate(Webhook(SECRET).verify(delivery.body, delivery.headers))
    assert event == store.events("job-1")[0] and event.type == "job.completed"
    assert delivery.headers["webhook-id"] == event.event_id  # stable across retries: receivers dedupe
    # and the delivery is in the job's delivery log
    (report,) = store.deliveries("job-1")
    assert report["delivered"] and report["event_id"] == event.event_id and len(report["attempts"]) == 1
    assert answer["webhook"] == {"delivered": True, "attempts": 1}


def test_an_event_the_job_did_not_subscribe_to_is_not_posted(no_pipeline_environment, store, receiver):
    config = loopback_config()
    sns = FakeSNS([config.events_topic_arn])
    record = job(store, notify={"webhook_url": receiver.url, "events": ["job.completed"]})

    answer = notify(NotifyRequest.of(JobEvent.from_record(record, "job.queued")), config, store, sns)

    # It still goes to the topic and the timeline
    assert receiver.received() == [] and store.deliveries("job-1") == [] and answer["webhook"] is None
    assert len(sns.called("Publish")) == 1 and len(store.events("job-1")) == 1


def test_a_failing_webhook_is_logged_and_never_fails_notify(no_pipeline_environment, store, receiver):
    # Given a receiver that answers 503 to every attempt
    config = loopback_config(webhook_max_attempts=3)
    sns = FakeSNS([config.events_topic_arn])
    job(store, notify={"webhook_url": receiver.url})
    completed(store)
    receiver.fail_next([503, 503, 503])

    answer = notify(NotifyRequest(job_id="job-1", type="job.completed"), config, store, sns)

    # Then notify returns normally; each attempt is in the delivery log
    assert answer["webhook"] == {"delivered": False, "attempts": 3}
    (report,) = store.deliveries("job-1")
    assert not report["delivered"] and [a["status_code"] for a in report["attempts"]] == [503, 503, 503]
    assert len(receiver.received()) == 3
    # and the event went to the topic and the timeline all the same
    assert len(sns.called("Publish")) == 1 and [e.type for e in store.events("job-1")] == ["job.completed"]


def test_a_loopback_webhook_is_refused_on_a_cloud_stack(config, store, sns, receiver):
    # Given a stack that does not allow loopback webhooks (the cloud), and a job whose URL is one
    job(store, notify={"webhook_url": receiver.url})
    completed(store)

    answer = notify(NotifyRequest(job_id="job-1", type="job.completed"), config, store, sns)

    # Then nothing is sent; the refusal is in the delivery log, and the job's event goes out anyway
    assert receiver.received() == [] and answer["webhook"] == {"delivered": False, "attempts": 0}
    (report,) = store.deliveries("job-1")
    assert "loopback" in report["refused"] and report["attempts"] == []
    assert json.loads(sns.called("Publish")[0]["Message"])["type"] == "job.completed"


def test_job_completed_carries_the_quality_report_to_sns_and_the_webhook(
    no_pipeline_environment, store, receiver
):
    # Given an avatar job completed with a report whose lip-sync check failed
    config = loopback_config()
    sns = FakeSNS([config.events_topic_arn])
    job(store, notify={"webhook_url": receiver.url})
    report = quality_report(lipsync=0.1)
    completed(store, report)

    notify(NotifyRequest(job_id="job-1", type="job.completed"), config, store, sns)

    # Then the SNS message and the signed webhook body both carry it, as the published schema says
    ((message, _),) = sns.messages(config.events_topic_arn)
    (delivery,) = receiver.received()
    posted = Webhook(SECRET).verify(delivery.body, delivery.headers)
    for body in (message, posted):
        jsonschema.validate(body, EVENT_SCHEMA)
        assert QualityReport.model_validate(body["result"]["quality"]) == report
        assert body["result"]["quality"]["passed"] is False
