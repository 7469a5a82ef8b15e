"""The talkstack stack: storage, functions, the job state machine, events, secrets, the REST API and
monitoring, wired with the `TALKSTACK_*` environment the handlers parse (PipelineConfig)."""

from __future__ import annotations

import json

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from constructs import Construct

from talkstack.contract.worker import MARKERS_PREFIX
from talkstack.pipeline.backends import MODAL_TOKEN_PLACEHOLDER
from talkstack_cdk.functions import PipelineFunctions, encrypted_queue
from talkstack_cdk.monitoring import Monitoring
from talkstack_cdk.nag import suppress_stack_findings
from talkstack_cdk.permissions import Targets, grant_pipeline
from talkstack_cdk.rest_api import RestApi
from talkstack_cdk.settings import MODAL_SHARED, DeploySettings, grants_value
from talkstack_cdk.storage import INPUT_PREFIX, MANIFEST_SUFFIX, Storage
from talkstack_cdk.workflow import JobWorkflow, executions_arn, state_machine_arn

LAMBDA_ENVIRONMENT_BYTES = 4096
"""Lambda's limit on a function's environment variables, names and values together."""
RESOLVED_TOKEN_BYTES = 128
"""At most what one deploy-time value (an ARN, a queue URL, a bucket name) resolves to."""


def check_environment_size(environment: dict[str, str]) -> None:
    """Fail synth, naming the settings that grow, rather than the deploy: the grants and bucket
    lists are the only environment values without a fixed size."""
    size = sum(
        len(name) + (RESOLVED_TOKEN_BYTES if Token.is_unresolved(value) else len(value.encode()))
        for name, value in environment.items()
    ) + len("POWERTOOLS_SERVICE_NAME=talkstack")
    if size > LAMBDA_ENVIRONMENT_BYTES:
        raise ValueError(
            f"the Lambdas' environment would take up to {size} bytes, over Lambda's "
            f"{LAMBDA_ENVIRONMENT_BYTES}; shorten talkstack:readGrants / writeGrants (a grant to `*` "
            "or a shared prefix covers many keys) or the readable/writable bucket lists"
        )


class TalkstackStack(Stack):
    def __init__(self, scope: Construct, id: str, *, settings: DeploySettings, **kwargs: object) -> None:
        super().__init__(scope, id, description="talkstack: avatar, voice and video jobs", **kwargs)  # type: ignore[arg-type]
        self.settings = settings
        removal = RemovalPolicy.RETAIN if settings.retain_data else RemovalPolicy.DESTROY
        self.storage = storage = Storage(self, "Storage", settings=settings)

        self.events_topic = sns.Topic(
            self,
            "Events",
            topic_name=f"{settings.stack_name}-events",
            master_key=storage.key,
            enforce_ssl=True,
        )
        self.modal_token = secretsmanager.Secret(
            self,
            "ModalToken",
            secret_name=f"{settings.stack_name}/modal-token",
            description='Modal token for the GPU workers: {"token_id": "ak-…", "token_secret": "as-…"}',
            # A placeholder the deployer overwrites (docs/deploy.md); until then jobs on the modal
            # backend fail at dispatch with MODEL_UNAVAILABLE saying so (read_modal_token).
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"token_id": MODAL_TOKEN_PLACEHOLDER}),
                generate_string_key="token_secret",
                exclude_punctuation=True,
            ),
            removal_policy=removal,
        )
        self.webhook_secret = secretsmanager.Secret(
            self,
            "WebhookSecret",
            secret_name=f"{settings.stack_name}/webhook-signing",
            description="Standard Webhooks signing secret (receivers verify with whsec_<value>)",
            # 32 base64-alphabet characters = 24 random bytes: a valid Standard Webhooks key.
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=32, exclude_punctuation=True, include_space=False
            ),
            removal_policy=removal,
        )

        self.c2pa_signer = secretsmanager.Secret(
            self,
            "C2paSigner",
            secret_name=f"{settings.stack_name}/c2pa-signer",
            description='C2PA signer: {"certificate_chain": "<PEM>", "private_key": "<PEM>"}',
            # A placeholder the operator overwrites (docs/safety.md); until then finalize signs with a
            # throwaway test certificate and every job gets a warning saying so.
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"placeholder": "replace with your signer"}),
                generate_string_key="unused",
                exclude_punctuation=True,
            ),
            removal_policy=removal,
        )

        # Manifests the ingest Lambda refuses wait here for people to read.
        self.ingest_refusals = encrypted_queue(self, "IngestRefusals")
        self.functions = functions = PipelineFunctions(
            self, "Functions", settings=settings, environment=self.pipeline_environment()
        )
        self.workflow = JobWorkflow(self, "Workflow", settings=settings, functions=functions)
        object_scopes = grant_pipeline(
            functions,
            storage,
            Targets(
                state_machine_arn=state_machine_arn(self, settings),
                executions_arn=executions_arn(self, settings),
                topic=self.events_topic,
                key=storage.key,
                ingest_refusals=self.ingest_refusals,
                modal_token=self.modal_token,
                webhook_secret=self.webhook_secret,
                c2pa_signer=self.c2pa_signer,
            ),
            settings,
        )

        # Manifests dropped under inputs/ start jobs; worker markers complete their tasks.
        storage.input_bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.LambdaDestination(functions["ingest"]),
            s3.NotificationKeyFilter(prefix=INPUT_PREFIX, suffix=MANIFEST_SUFFIX),
        )
        storage.work_bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.LambdaDestination(functions["complete"]),
            s3.NotificationKeyFilter(prefix=MARKERS_PREFIX),
        )

        # Yesterday's audit entries → s3://<audit bucket>/audit/<yyyy>/<mm>/<dd>.jsonl, daily after
        # midnight UTC (a late entry of the day before is in; a rerun rewrites the same file).
        self.audit_export_schedule = events.Rule(
            self,
            "AuditExportSchedule",
            description="talkstack: export yesterday's audit trail to S3",
            schedule=events.Schedule.cron(minute="15", hour="0"),
            targets=[
                events_targets.LambdaFunction(
                    functions["audit_export"],
                    retry_attempts=2,
                    max_event_age=Duration.hours(6),
                    dead_letter_queue=functions.dead_letter_queues["audit_export"],
                )
            ],
        )

        self.rest_api = RestApi(
            self,
            "Api",
            settings=settings,
            handler=functions["api"],
            authorizer_function=functions["authorizer"],
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            settings=settings,
            key=storage.key,
            functions=functions,
            state_machine=self.workflow.state_machine,
            queues={
                "IngestRefusals": self.ingest_refusals,
                **{f"{name.capitalize()}Dlq": queue for name, queue in functions.dead_letter_queues.items()},
            },
            api=self.rest_api.api,
        )
        self.outputs()
        suppress_stack_findings(self, object_scopes)

    def pipeline_environment(self) -> dict[str, str]:
        """PipelineConfig's variables (talkstack/pipeline/config.py)."""
        s, storage = self.settings, self.storage
        env = {
            "TALKSTACK_INPUT_BUCKET": storage.input_bucket.bucket_name,
            "TALKSTACK_OUTPUT_BUCKET": storage.output_bucket.bucket_name,
            "TALKSTACK_WORK_BUCKET": storage.work_bucket.bucket_name,
            "TALKSTACK_JOBS_TABLE": storage.table.table_name,
            "TALKSTACK_EVENTS_TOPIC_ARN": self.events_topic.topic_arn,
            "TALKSTACK_INGEST_DLQ_URL": self.ingest_refusals.queue_url,
            "TALKSTACK_STATE_MACHINE_ARN": state_machine_arn(self, s),
            # A name, not a reference: notify's own environment names notify.
            "TALKSTACK_NOTIFY_FUNCTION": f"{s.stack_name}-notify",
            "TALKSTACK_WORKER_BACKEND": s.worker_backend,
            "TALKSTACK_RECORD_RETENTION_DAYS": str(s.record_retention_days),
            "TALKSTACK_AUDIT_RETENTION_DAYS": str(s.audit_retention_days),
            "TALKSTACK_UPLOAD_RETENTION_DAYS": str(s.upload_retention_days),
            "TALKSTACK_OUTPUT_RETENTION_DAYS": str(s.output_retention_days),
            "TALKSTACK_AUDIT_BUCKET": storage.audit_bucket.bucket_name,
            "TALKSTACK_MODAL_TOKEN_SECRET": self.modal_token.secret_arn,
            "TALKSTACK_WEBHOOK_SECRET_ID": self.webhook_secret.secret_arn,
            "TALKSTACK_C2PA_SECRET": self.c2pa_signer.secret_arn,
            # What the Modal classes may run (modal deploy's settings): Plan bounds each step's
            # timeout and its URLs' lifetime by it (talkstack/settings/modal_deploy.py).
            **{f"TALKSTACK_{name.upper()}": str(getattr(s, name)) for name in MODAL_SHARED},
        }
        optional = {
            "TALKSTACK_MODEL_BACKENDS": ",".join(f"{k}={v}" for k, v in s.model_backends.items()),
            "TALKSTACK_DEFAULT_MODELS": ",".join(f"{k}={v}" for k, v in s.default_models.items()),
            "TALKSTACK_MODAL_ENVIRONMENT": s.modal_environment or "",
            "TALKSTACK_READABLE_BUCKETS": ",".join(s.readable_buckets),
            "TALKSTACK_WRITABLE_BUCKETS": ",".join(s.writable_buckets),
            "TALKSTACK_READ_GRANTS": grants_value(s.read_grants),
            "TALKSTACK_WRITE_GRANTS": grants_value(s.write_grants),
            "TALKSTACK_BUCKET_REGIONS": ",".join(f"{k}={v}" for k, v in s.bucket_regions.items()),
            "TALKSTACK_QUALITY_RERENDER_CHUNKS": str(s.quality_rerender_chunks).lower(),
            "TALKSTACK_CONSENT_REQUIRED": str(s.consent_required).lower(),
            "TALKSTACK_VOICE_CLONE_CONSENT_CLIP": s.voice_clone_consent_clip,
            "TALKSTACK_SCAN_NOT_SCANNED": s.scan_not_scanned,
            "TALKSTACK_MODERATION_POLICY": s.moderation_policy or "",
            "TALKSTACK_MODERATION_CLASSIFIER": s.moderation_classifier,
            "TALKSTACK_MODERATION_CLASSIFIER_UNAVAILABLE": s.moderation_classifier_unavailable,
        }
        environment = {**env, **{k: v for k, v in optional.items() if v}}
        check_environment_size(environment)
        return environment

    def outputs(self) -> None:
        values = {
            "InputBucket": self.storage.input_bucket.bucket_name,
            "OutputBucket": self.storage.output_bucket.bucket_name,
            "WorkBucket": self.storage.work_bucket.bucket_name,
            "AuditBucket": self.storage.audit_bucket.bucket_name,
            "JobsTable": self.storage.table.table_name,
            "EventsTopicArn": self.events_topic.topic_arn,
            "StateMachineArn": self.workflow.state_machine.state_machine_arn,
            "ApiUrl": self.rest_api.url,
            "ModalTokenSecretArn": self.modal_token.secret_arn,
            "WebhookSecretArn": self.webhook_secret.secret_arn,
            "C2paSignerSecretArn": self.c2pa_signer.secret_arn,
            "AlarmTopicArn": self.monitoring.topic.topic_arn,
            "DashboardName": self.monitoring.dashboard.dashboard_name,
            **{
                f"UsagePlan{tier.capitalize()}": plan.usage_plan_id
                for tier, plan in self.rest_api.usage_plans.items()
            },
        }
        for name, value in values.items():
            CfnOutput(self, name, value=value)
