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

At most once per (event, target) once reported: each publish and each delivery is claimed in the
job's partition first and settled with its report, so a re-invoked notify (Lambda's async retry, a
duplicate event) sends nothing that was already sent. A claim's lease outlives the work, so an
invocation that died mid-way is redone by the next retry. A webhook that keeps failing is recorded
in the delivery log and never fails the job.
"""

from __future__ import annotations

import logging
from typing import Any

from talkstack.contract.events import JobEvent
from talkstack.contract.record import JobRecord
from talkstack.contract.state import NotifyRequest
from talkstack.pipeline.aws import secrets_provider
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.metrics import record_event_metrics
from talkstack.pipeline.store import delivery_key
from talkstack.pipeline.webhook_endpoints import WebhookEndpoints
from talkstack.pipeline.webhooks import (
    SECRET_PREFIX,
    DeliveryReport,
    WebhookPolicy,
    WebhookTarget,
    deliver_webhooks,
)

log = logging.getLogger(__name__)
PUBLISH_LEASE_S = 60
"""How long a claim on publishing an event holds off a twin invocation (SNS + one table write)."""
LEASE_MARGIN_S = 60
"""A delivery claim lasts the delivery deadline plus this, so it never expires under a live sender."""
REQUEST_TARGET = "request"
"""The job's own webhook in the delivery log (endpoints appear by their id)."""


def event_for(request: NotifyRequest, store: Any) -> tuple[JobEvent | None, JobRecord | None]:
    """The event to send: the one a handler raised at its moment, or (from the state machine) one
    built from the record now. No event when the state machine announces anything but the cancel of
    a job that was cancelled: a step still in flight at the cancel ended in the failure path, and the
    cancel has already said how the job ended. A job.failed for a job whose record completed is
    announced as what it is: job.completed."""
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


def notify(request: NotifyRequest, config: PipelineConfig, store: Any, sns: Any) -> dict[str, Any]:
    event, record = event_for(request, store)
    if event is None:
        return {"skipped": f"{request.type}: job {request.job_id} was cancelled"}
    message_id: str | None = None
    published = f"NOTIFIED#{event.event_id}"
    if store.claim(event.job_id, published, PUBLISH_LEASE_S):
        message_id = publish_event(event, config, sns)
        store.add_event(event)
        store.settle(event.job_id, published, {"sns_message_id": message_id})

    policy = policy_for(config)
    endpoints = WebhookEndpoints(store.table, store.ddb)
    targets = webhook_targets(event, record, config, endpoints)
    lease = int(policy.delivery_deadline_s) + LEASE_MARGIN_S
    claimed = {
        name: target
        for name, target in targets.items()
        if store.claim(event.job_id, delivery_key(event.event_id, name), lease)
    }
    reports = dict(
        zip(
            claimed,
            deliver_webhooks(
                list(claimed.values()),
                event.model_dump_json(),
                msg_id=event.event_id,
                policy=policy,
                event_type=event.type,
            ),
            strict=True,
        )
    )
    for name, report in reports.items():
        endpoint_id = None if name == REQUEST_TARGET else name
        saved = {**report.model_dump(mode="json"), "endpoint_id": endpoint_id}
        store.add_delivery(event.job_id, event.event_id, saved, target=name)
        if not report.delivered:
            log.warning(
                "webhook for %s %s to %s not delivered: %s",
                event.job_id,
                event.type,
                report.url,  # redacted: no query string
                report.refused or (report.attempts[-1].error if report.attempts else "no attempt"),
            )
    delivered = all(r.delivered for r in reports.values()) if reports else None
    # The job's outcome is counted by the invocation that published it, not again by a retry.
    record_event_metrics(event, record if message_id is not None else None, delivered)
    request_report: DeliveryReport | None = reports.get(REQUEST_TARGET)
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
        "already_sent": sorted(set(targets) - set(claimed)),
    }
