"""CloudWatch metrics of finished jobs and webhook deliveries, written by notify as embedded metric
format log lines (powertools Metrics): no PutMetricData call, no extra permission, one place.

Notify sees every terminal event exactly once per job, so counting there gives the dashboard's
jobs, durations, GPU seconds and estimated cost, and the alarm on webhook failures. Local mode
turns metrics off (POWERTOOLS_METRICS_DISABLED) to keep `talkstack up` quiet.
"""

from __future__ import annotations

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from talkstack.contract.events import JobEvent
from talkstack.contract.record import JobRecord
from talkstack.pipeline.cost import gpu_seconds

NAMESPACE = "talkstack"
OUTCOME_METRICS = {
    "job.completed": "JobsCompleted",
    "job.held": "JobsHeld",
    "job.failed": "JobsFailed",
    "job.cancelled": "JobsCancelled",
}
WEBHOOK_FAILURES = "WebhookDeliveryFailures"

metrics = Metrics(namespace=NAMESPACE)


def record_event_metrics(
    event: JobEvent, record: JobRecord | None, webhook_delivered: bool | None, sink: Metrics = metrics
) -> None:
    """Add the metrics one notify invocation contributes; `log_metrics` flushes them."""
    if webhook_delivered is False:
        sink.add_metric(name=WEBHOOK_FAILURES, unit=MetricUnit.Count, value=1)
    name = OUTCOME_METRICS.get(event.type)
    if name is None or record is None:
        return
    sink.add_metric(name=name, unit=MetricUnit.Count, value=1)
    if record.finished_at is not None:
        total = (record.finished_at - record.created_at).total_seconds()
        sink.add_metric(name="JobDuration", unit=MetricUnit.Seconds, value=max(0.0, total))
    sink.add_metric(name="GpuSeconds", unit=MetricUnit.Seconds, value=gpu_seconds(record))
    if record.result is not None:
        result = record.result
        sink.add_metric(name="RenderedSeconds", unit=MetricUnit.Seconds, value=result.duration_s or 0.0)
        sink.add_metric(
            name="EstimatedCostUsd", unit=MetricUnit.NoUnit, value=result.estimated_cost_usd or 0.0
        )
