"""Alarms (to an encrypted SNS topic, optionally e-mailed) and one dashboard.

Alarms: failed or timed-out executions, messages waiting in any dead-letter queue, errors of any
Lambda, webhooks that could not be delivered. The dashboard: jobs by outcome, job duration, GPU
seconds and estimated cost (metrics notify writes, talkstack.pipeline.metrics), executions, API
traffic and Lambda errors.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from talkstack.pipeline.metrics import NAMESPACE, OUTCOME_METRICS, WEBHOOK_FAILURES
from talkstack_cdk.functions import PipelineFunctions
from talkstack_cdk.settings import DeploySettings

PERIOD = Duration.minutes(5)


def job_metric(name: str, statistic: str = "Sum") -> cw.Metric:
    return cw.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={"service": "talkstack"},
        statistic=statistic,
        period=PERIOD,
    )


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: DeploySettings,
        key: kms.IKey,
        functions: PipelineFunctions,
        state_machine: sfn.StateMachine,
        queues: dict[str, sqs.IQueue],
        api: apigw.RestApi,
    ) -> None:
        super().__init__(scope, id)
        self.topic = sns.Topic(
            self, "Alarms", topic_name=f"{settings.stack_name}-alarms", master_key=key, enforce_ssl=True
        )
        if settings.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))
        action = cw_actions.SnsAction(self.topic)
        self.alarms: list[cw.Alarm] = []

        def alarm(id: str, metric: cw.IMetric, description: str, threshold: float = 1) -> None:
            created = cw.Alarm(
                self,
                id,
                alarm_name=f"{settings.stack_name}-{id}",
                alarm_description=description,
                metric=metric,
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
            created.add_alarm_action(action)
            self.alarms.append(created)

        alarm(
            "ExecutionsFailed",
            state_machine.metric_failed(period=PERIOD),
            "Job executions failed (a job failure is recorded; this one never reached RecordFailure).",
        )
        alarm(
            "ExecutionsTimedOut", state_machine.metric_timed_out(period=PERIOD), "Job executions timed out."
        )
        alarm(
            "JobsFailed", job_metric(OUTCOME_METRICS["job.failed"]), "Jobs ended in job.failed.", threshold=5
        )
        for name, queue in queues.items():
            alarm(
                f"{name}Waiting",
                queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
                f"Messages wait in {name}: events that could not be handled. Inspect, then redrive or purge.",
            )
        for name, function in functions.functions.items():
            alarm(
                f"{name.capitalize()}Errors",
                function.metric_errors(period=PERIOD),
                f"The {name} Lambda raised errors (see its log group).",
            )
        alarm(
            "WebhookDeliveryFailures",
            job_metric(WEBHOOK_FAILURES),
            "Webhooks could not be delivered after all retries (see the job's delivery log).",
        )

        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"{settings.stack_name}-jobs")
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Jobs by outcome",
                left=[job_metric(metric) for metric in OUTCOME_METRICS.values()],
                stacked=True,
            ),
            cw.GraphWidget(
                title="Job duration (s)",
                left=[job_metric("JobDuration", "p50"), job_metric("JobDuration", "p90")],
            ),
            cw.GraphWidget(title="GPU seconds", left=[job_metric("GpuSeconds")]),
            cw.GraphWidget(title="Estimated cost (USD)", left=[job_metric("EstimatedCostUsd")]),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Executions",
                left=[
                    state_machine.metric_started(period=PERIOD),
                    state_machine.metric_succeeded(period=PERIOD),
                    state_machine.metric_failed(period=PERIOD),
                    state_machine.metric_aborted(period=PERIOD),
                ],
            ),
            cw.GraphWidget(
                title="API",
                left=[api.metric_count(period=PERIOD), api.metric_client_error(period=PERIOD)],
                right=[api.metric_server_error(period=PERIOD)],
            ),
            cw.GraphWidget(
                title="Lambda errors",
                left=[fn.metric_errors(period=PERIOD) for fn in functions.functions.values()],
            ),
            cw.SingleValueWidget(
                title="Dead-letter queues",
                metrics=[
                    queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")
                    for queue in queues.values()
                ],
            ),
        )
