"""Notify: the one place job events leave the pipeline.

Every event goes to the SNS topic (message attributes `type`, `job_id`, `status` for subscription
filters) and into the job's timeline. It is POSTed, signed per Standard Webhooks, to
- the job's own webhook (`notify.webhook_url`) if the job subscribed to the event: signed with the
  API key's own secret (`GET /v1/webhooks/secret`), or the stack's secret for jobs without a key
  (S3 drops, direct starts);
- every endpoint the job's API key registered (`POST /v1/webhooks`) whose filter matches, each
  signed with that endpoint's secret.
During a rotation's overlap a request carries the old and the new secret's signatures. The targets
are served at once, each within the delivery deadline, so one notify run is bounded by it.

Order within a run: the SNS publish and the timeline first, then the webhooks, so a slow receiver
never delays what SNS subscribers (and `talkstack events`) see.

At most once per (event, target) once reported: each publish and each delivery is claimed in the
job's partition first and settled with its report, so a re-invoked notify (Lambda's async retry, a
duplicate event) sends nothing that was already sent. A run that fails releases its unfinished
claims on the way out, so the retry does that work; a claim's lease (the delivery deadline plus a
margin) only matters for a run killed outright, whose claims a retry takes over once it has passed.
A webhook that keeps failing is recorded in the delivery log and never fails the job; after
`TALKSTACK_WEBHOOK_PAUSE_AFTER_FAILURES` failed deliveries in a row its target is paused
(talkstack.pipeline.webhook_breaker), so one tenant's dead receiver cannot hold the concurrency
every tenant's notifications share.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any

from talkstack.contract.events import JobEvent
from talkstack.contract.record import JobRecord
from talkstack.contract.state import NotifyRequest
from talkstack.pipeline.aws import secrets_provider
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.metrics import record_event_metrics
from talkstack.pipeline.store import delivery_key
from talkstack.pipeline.webhook_breaker import BreakerPolicy, Pause, WebhookBreaker, request_target
from talkstack.pipeline.webhook_endpoints import WebhookEndpoints
from talkstack.pipeline.webhook_signing import SECRET_PREFIX
from talkstack.pipeline.webhooks import (
    DeliveryReport,
    WebhookPolicy,
    WebhookTarget,
    deliver_webhooks,
    redact_url,
)

log = logging.getLogger(__name__)
PUBLISH_LEASE_S = 60
"""How long a claim on publishing an event holds off a twin invocation (SNS + one table write)."""
LEASE_MARGIN_S = 15
"""A delivery claim lasts the delivery deadline (a hard bound) plus this, for the breaker and the
report writes around it: it never expires under a live sender, and is not held much longer than one
(Lambda's first async retry comes about a minute after a failed run ends)."""
REQUEST_TARGET = "request"
"""The job's own webhook in the delivery log (endpoints appear by their id)."""


def event_for(request: NotifyRequest, store: Any) -> tuple[JobEvent | None, JobRecord | None]:
    """The event to send: the one a handler raised at its moment, or (from the state machine) one
    built from the record now. No event when the state machine announces anything but the cancel of
    a job that was cancelled: a step still in flight at the cancel ended in the failure path, and the
    cancel has already said how the job ended. A job.failed for a job whose record completed is
    announced as what it is: job.completed, and one whose outputs were held as job.held."""
    record = store.get(request.job_id)
    if request.event is not None:
        return request.event, record
    if record is None:
        raise KeyError(f"job {request.job_id} has no record")
    if record.status == "cancelled" and request.type != "job.cancelled":
        return None, record
    if record.status == "completed" and request.type == "job.failed":
        # Finalize died after its record update (result.json unwritten, say): the failure path kept
        # the published outputs, NotifyCompleted never ran, and the record says completed.
        return JobEvent.from_record(record, "job.completed"), record
    if record.status == "held" and request.type in ("job.completed", "job.failed"):
        # Finalize held the outputs for review (the state machine's path is NotifyCompleted).
        return JobEvent.from_record(record, "job.held"), record
    return JobEvent.from_record(record, request.type), record


def signing_secret(config: PipelineConfig) -> str:
    """The stack's webhook signing secret (jobs without an API key): from the environment, or from
    Secrets Manager (cached for five minutes by powertools, so a rotated secret is picked up without
    a redeploy)."""
    if config.webhook_secret is not None:
        return config.webhook_secret.get_secret_value()
    assert config.webhook_secret_id is not None
    value = secrets_provider().get(config.webhook_secret_id, max_age=300).strip()
    return value if value.startswith(SECRET_PREFIX) else SECRET_PREFIX + value


def policy_for(config: PipelineConfig) -> WebhookPolicy:
    return WebhookPolicy(
        max_attempts=config.webhook_max_attempts,
        initial_backoff_s=config.webhook_initial_backoff_s,
        max_backoff_s=config.webhook_max_backoff_s,
        timeout_s=config.webhook_timeout_s,
        delivery_deadline_s=config.webhook_delivery_deadline_s,
        allow_loopback=config.allow_loopback_webhooks,
    )


def publish_event(event: JobEvent, config: PipelineConfig, sns: Any) -> str:
    attributes = {
        "type": event.type,
        "job_id": event.job_id,
        "status": event.status,
        **({"task": event.task} if event.task else {}),
    }
    response = sns.publish(
        TopicArn=config.events_topic_arn,
        Message=event.model_dump_json(),
        MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
    )
    return response["MessageId"]


def tenant_of(event: JobEvent, record: JobRecord | None) -> str | None:
    """The API key the job belongs to: the record's word (the source of truth) over the event's."""
    if record is not None:
        return record.source.api_key_id if record.source else None
    return event.api_key_id


def webhook_targets(
    event: JobEvent, record: JobRecord | None, config: PipelineConfig, endpoints: WebhookEndpoints
) -> dict[str, WebhookTarget]:
    """Where this event goes, by delivery-log name: `request` (the job's webhook) and endpoint ids."""
    key_id = tenant_of(event, record)
    targets: dict[str, WebhookTarget] = {}
    if record is not None and record.notify.wants(event.type):
        url = record.notify.webhook_url
        assert url is not None
        secrets = endpoints.key_secrets(key_id).active() if key_id else (signing_secret(config),)
        targets[REQUEST_TARGET] = WebhookTarget(url=url, secrets=secrets)
    if key_id:
        for endpoint in endpoints.list_endpoints(key_id):
            if endpoint.wants(event.type):
                targets[endpoint.id] = WebhookTarget(url=endpoint.url, secrets=endpoint.secrets.active())
    return targets


def breaker_for(config: PipelineConfig, store: Any) -> WebhookBreaker:
    policy = BreakerPolicy(
        failures=config.webhook_pause_after_failures,
        pause_s=config.webhook_pause_s,
        max_pause_s=config.webhook_max_pause_s,
    )
    return WebhookBreaker(store.table, store.ddb, policy)


def health_name(name: str, target: WebhookTarget) -> str:
    """The breaker's name of a delivery-log target: an endpoint's id, or the job's webhook's host."""
    return request_target(target.url) if name == REQUEST_TARGET else name


def paused_report(target: WebhookTarget, event: JobEvent, pause: Pause) -> DeliveryReport:
    return DeliveryReport(
        url=redact_url(target.url),
        event_id=event.event_id,
        event_type=event.type,
        delivered=False,
        refused=pause.reason,
        attempts=[],
        paused_until=pause.until,
    )


def notify(request: NotifyRequest, config: PipelineConfig, store: Any, sns: Any) -> dict[str, Any]:
    event, record = event_for(request, store)
    if event is None:
        return {"skipped": f"{request.type}: job {request.job_id} was cancelled"}
    if record is None and event.api_key_id:
        # An API job has its record from admission on: none left means the job was deleted
        # (talkstack/pipeline/deletion.py), and a late event must not write its timeline again.
        return {"skipped": f"{event.type}: job {event.job_id} was deleted"}
    held: dict[str, str] = {}  # this run's unfinished claims (sort key → claim id)
    try:
        return _notify(event, record, config, store, sns, held)
    finally:
        for sk, claim_id in held.items():
            # Best effort, on the way out of a failure: an unreleased claim still ends with its lease.
            with contextlib.suppress(Exception):
                store.release(event.job_id, sk, claim_id)


def _notify(
    event: JobEvent,
    record: JobRecord | None,
    config: PipelineConfig,
    store: Any,
    sns: Any,
    held: dict[str, str],
) -> dict[str, Any]:
    # SNS and the timeline before any webhook: a slow receiver never delays what subscribers see.
    message_id: str | None = None
    published = f"NOTIFIED#{event.event_id}"
    if claim := store.claim(event.job_id, published, PUBLISH_LEASE_S):
        held[published] = claim
        message_id = publish_event(event, config, sns)
        store.add_event(event)
        store.settle(event.job_id, published, {"sns_message_id": message_id})
        del held[published]

    policy = policy_for(config)
    endpoints = WebhookEndpoints(store.table, store.ddb)
    targets = webhook_targets(event, record, config, endpoints)
    lease = math.ceil(policy.delivery_deadline_s) + LEASE_MARGIN_S
    claimed: dict[str, WebhookTarget] = {}
    for name, target in targets.items():
        if claim := store.claim(event.job_id, delivery_key(event.event_id, name), lease):
            held[delivery_key(event.event_id, name)] = claim
            claimed[name] = target

    key_id = tenant_of(event, record)
    breaker = breaker_for(config, store)
    paused = breaker.paused(key_id) if claimed else {}
    reports: dict[str, DeliveryReport] = {}
    to_send: dict[str, WebhookTarget] = {}
    for name, target in claimed.items():
        pause = paused.get(health_name(name, target))
        if pause is not None:
            reports[name] = paused_report(target, event, pause)
        else:
            to_send[name] = target
    sent = dict(
        zip(
            to_send,
            deliver_webhooks(
                list(to_send.values()),
                event.model_dump_json(),
                msg_id=event.event_id,
                policy=policy,
                event_type=event.type,
            ),
            strict=True,
        )
    )
    reports.update(sent)
    reports = {name: reports[name] for name in claimed}  # the targets' order
    for name, report in reports.items():
        endpoint_id = None if name == REQUEST_TARGET else name
        saved = {**report.model_dump(mode="json"), "endpoint_id": endpoint_id}
        store.add_delivery(event.job_id, event.event_id, saved, target=name)
        del held[delivery_key(event.event_id, name)]
        if not report.delivered:
            log.warning(
                "webhook for %s %s to %s not delivered: %s",
                event.job_id,
                event.type,
                report.url,  # redacted: no query string
                report.refused or (report.attempts[-1].error if report.attempts else "no attempt"),
            )
    # After the reports are saved: bookkeeping that fails here must not make a retry send again.
    for name, report in sent.items():
        breaker.record(key_id, health_name(name, claimed[name]), report.delivered)
    delivered = all(r.delivered for r in reports.values()) if reports else None
    # The job's outcome is counted by the invocation that published it, not again by a retry.
    record_event_metrics(event, record if message_id is not None else None, delivered)
    request_report: DeliveryReport | None = reports.get(REQUEST_TARGET)
    unclaimed = [name for name in targets if name not in claimed]
    done = {name for name in unclaimed if store.is_done(event.job_id, delivery_key(event.event_id, name))}
    return {
        "event_id": event.event_id,
        "type": event.type,
        "sns_message_id": message_id,
        "webhook": None
        if request_report is None
        else {"delivered": request_report.delivered, "attempts": len(request_report.attempts)},
        "endpoints": {
            name: {"delivered": r.delivered, "attempts": len(r.attempts)}
            for name, r in reports.items()
            if name != REQUEST_TARGET
        },
        "paused": sorted(name for name, r in reports.items() if r.paused_until is not None),
        "already_sent": sorted(done),
        # Held by another run still within its lease (a duplicate in flight, or a killed run).
        "in_progress": sorted(set(unclaimed) - done),
    }
