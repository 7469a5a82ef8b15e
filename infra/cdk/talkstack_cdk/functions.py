"""The Lambdas: one per module in aws/lambda/, all from one code asset, each with one dependency
layer, its own role (no managed policies: it may write its own log group and nothing else until
permissions.py grants more), its own log group, X-Ray tracing, and a dead-letter queue when AWS
invokes it asynchronously."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Size
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from talkstack_cdk.bundling import ARCHITECTURE, LAYERS, RUNTIME, code_asset, layer_asset
from talkstack_cdk.settings import LOG_RETENTION, DeploySettings


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    """Module in aws/lambda/ (handler `<name>.handler`) and the function name's suffix."""
    description: str
    layer: str
    memory_mb: int = 512
    timeout_s: int = 60
    asynchronous: bool = False
    """Invoked asynchronously (S3 notifications, `InvocationType=Event`): retried by Lambda, then
    parked in a dead-letter queue instead of lost."""
    ephemeral_mb: int = 512
    max_event_age_h: int = 6
    """Asynchronous functions: an event still not handled (throttled, failing) this long after it
    was sent goes to the dead-letter queue."""


# Timeouts sit below the state machine's TimeoutSeconds for the same step (aws/stepfunctions).
FUNCTIONS: tuple[FunctionSpec, ...] = (
    FunctionSpec("api", "REST API (API Gateway proxy)", "modal", memory_mb=1024, timeout_s=29),
    FunctionSpec(
        "authorizer", "API key check for API Gateway usage plans", "base", memory_mb=256, timeout_s=10
    ),
    FunctionSpec("ingest", "S3 manifest drop -> StartExecution", "base", asynchronous=True),
    FunctionSpec("validate", "Validate step: request, media and job record", "modal", timeout_s=110),
    # moderate waits for the text-safety classifier on Modal (a cold container loads its model
    # first: TALKSTACK_MODERATION_CLASSIFIER_TIMEOUT_S, at most 280 s), so it carries the Modal client.
    FunctionSpec("moderate", "Moderate step: the content policy and classifier", "modal", timeout_s=290),
    FunctionSpec("plan", "Plan step: steps, models and timeouts", "base", memory_mb=256, timeout_s=110),
    FunctionSpec(
        "segment",
        "Segment step: cut long speech into chunks",
        "media",
        memory_mb=2048,
        timeout_s=280,
        ephemeral_mb=2048,
    ),
    FunctionSpec("dispatch", "Engine steps: hand a task to a GPU worker", "modal", timeout_s=110),
    FunctionSpec("complete", "Worker marker -> SendTaskSuccess/Failure/Heartbeat", "base", asynchronous=True),
    # finalize signs C2PA content credentials into what it publishes (the provenance layer): the
    # worker's file and its signed copy are both in /tmp, so the largest output it can sign is about
    # half of ephemeral_mb (Lambda's most; the default 512 MB failed renders over ~250 MB).
    FunctionSpec(
        "finalize",
        "Finalize step: publish outputs",
        "provenance",
        memory_mb=1024,
        timeout_s=890,
        ephemeral_mb=10240,
    ),
    # fail cancels a failed job's Modal calls, so it carries the Modal client (the modal layer).
    FunctionSpec("fail", "Failure path: record why the job failed, stop its workers", "modal", timeout_s=110),
    # notify's run is bounded by the webhook delivery deadline (at most MAX_DELIVERY_DEADLINE_S,
    # talkstack/pipeline/config.py: this timeout less a minute); a webhook event older than an hour is
    # not worth a late delivery, so it goes to the dead-letter queue instead.
    FunctionSpec(
        "notify",
        "SNS events and signed webhooks",
        "base",
        timeout_s=300,
        asynchronous=True,
        max_event_age_h=1,
    ),
    FunctionSpec(
        "audit_export", "Daily audit export to S3 (JSON Lines)", "base", timeout_s=300, asynchronous=True
    ),
)


class PipelineFunctions(Construct):
    def __init__(
        self, scope: Construct, id: str, *, settings: DeploySettings, environment: dict[str, str]
    ) -> None:
        super().__init__(scope, id)
        code = code_asset()
        layers = {
            name: lambda_.LayerVersion(
                self,
                f"{name.capitalize()}Layer",
                code=layer_asset(name),
                compatible_runtimes=[RUNTIME],
                compatible_architectures=[ARCHITECTURE],
                description=f"talkstack Lambda dependencies: {name} (infra/cdk/layers/{name}.txt)",
            )
            for name in LAYERS
        }
        self.functions: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}
        self.dead_letter_queues: dict[str, sqs.Queue] = {}
        reserved = {
            "dispatch": settings.dispatch_concurrency,
            "ingest": settings.ingest_concurrency,
            "notify": settings.notify_concurrency,
        }
        for spec in FUNCTIONS:
            title = spec.name.capitalize()
            role = iam.Role(
                self,
                f"{title}Role",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description=f"talkstack {spec.name} Lambda",
            )
            log_group = logs.LogGroup(
                self,
                f"{title}Logs",
                log_group_name=f"/aws/lambda/{settings.stack_name}-{spec.name}",
                retention=log_retention(settings),
                removal_policy=RemovalPolicy.DESTROY,
            )
            log_group.grant_write(role)
            dlq = encrypted_queue(self, f"{title}Dlq") if spec.asynchronous else None
            function = lambda_.Function(
                self,
                title,
                function_name=f"{settings.stack_name}-{spec.name}",
                description=f"talkstack: {spec.description}",
                runtime=RUNTIME,
                architecture=ARCHITECTURE,
                code=code,
                handler=f"{spec.name}.handler",
                layers=[layers[spec.layer]],
                memory_size=spec.memory_mb,
                timeout=Duration.seconds(spec.timeout_s),
                ephemeral_storage_size=Size.mebibytes(spec.ephemeral_mb),
                role=role,
                log_group=log_group,
                tracing=lambda_.Tracing.ACTIVE,
                environment={**environment, "POWERTOOLS_SERVICE_NAME": "talkstack"},
                dead_letter_queue=dlq,
                retry_attempts=2 if spec.asynchronous else None,
                max_event_age=Duration.hours(spec.max_event_age_h) if spec.asynchronous else None,
                reserved_concurrent_executions=reserved.get(spec.name) or None,
            )
            self.functions[spec.name] = function
            self.roles[spec.name] = role
            if dlq is not None:
                self.dead_letter_queues[spec.name] = dlq

    def __getitem__(self, name: str) -> lambda_.Function:
        return self.functions[name]


def log_retention(settings: DeploySettings) -> logs.RetentionDays:
    return getattr(logs.RetentionDays, LOG_RETENTION[settings.log_retention_days])


def encrypted_queue(scope: Construct, id: str) -> sqs.Queue:
    """An encrypted, TLS-only queue that keeps messages for the longest time SQS allows."""
    return sqs.Queue(
        scope,
        id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
