"""Notify: the one place job events leave the pipeline.

Every event goes to the SNS topic (message attributes `type`, `job_id`, `status` for subscription
filters) and into the job's timeline; events the job subscribed to are POSTed to its webhook,
signed per Standard Webhooks with the stack's secret. A webhook that keeps failing is recorded in
the delivery log and never fails the job.
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
from talkstack.pipeline.webhooks import SECRET_PREFIX, DeliveryReport, WebhookPolicy, deliver_webhook

log = logging.getLogger(__name__)


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
    """The webhook signing secret: from the environment, or from Secrets Manager (cached for five
    minutes by powertools, so a rotated secret is picked up without a redeploy)."""
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


def notify(request: NotifyRequest, config: PipelineConfig, store: Any, sns: Any) -> dict[str, Any]:
    event, record = event_for(request, store)
    if event is None:
        return {"skipped": f"{request.type}: job {request.job_id} was cancelled"}
    message_id = publish_event(event, config, sns)
    store.add_event(event)
    report: DeliveryReport | None = None
    if record is not None and record.notify.wants(event.type):
        url = record.notify.webhook_url
        assert url is not None
        report = deliver_webhook(
            url,
            event.model_dump_json(),
            msg_id=event.event_id,
            secret=signing_secret(config),
            policy=policy_for(config),
            event_type=event.type,
        )
        store.add_delivery(event.job_id, event.event_id, report.model_dump(mode="json"))
        if not report.delivered:
            log.warning(
                "webhook for %s %s not delivered: %s",
                event.job_id,
                event.type,
                report.refused or (report.attempts[-1].error if report.attempts else "no attempt"),
            )
    record_event_metrics(event, record, None if report is None else report.delivered)
    return {
        "event_id": event.event_id,
        "type": event.type,
        "sns_message_id": message_id,
        "webhook": None
        if report is None
        else {"delivered": report.delivered, "attempts": len(report.attempts)},
    }
