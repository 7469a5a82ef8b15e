"""Where data lives: the input, work and output buckets (plus one for their access logs), the jobs
table, and the KMS key that encrypts the event topic and the queues' neighbours.

Every bucket blocks public access, refuses plain HTTP, is encrypted at rest and logs access. The
lifecycle rules carry the retention settings (talkstack/settings/retention.py: outputs after a day,
work artifacts after a day, uploads and dropped inputs (voice samples) after a week, audit exports
after a year), built by talkstack.pipeline.retention as the local stack's are.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from talkstack.pipeline import jobs_table
from talkstack.pipeline.retention import INPUT_PREFIX, BucketRole, Retention
from talkstack.pipeline.tenancy import UPLOADS_PREFIX as UPLOAD_PREFIX
from talkstack_cdk.settings import DeploySettings

__all__ = ["INPUT_PREFIX", "UPLOAD_PREFIX", "Storage"]
MANIFEST_SUFFIX = "job.json"

_BILLING = {"PAY_PER_REQUEST": dynamodb.Billing.on_demand()}
"""jobs_table.BILLING_MODE in CDK terms (provisioned billing would need capacities it does not name)."""


def _string_key(name: str) -> dynamodb.Attribute:
    """A table or index key attribute: every key of the jobs table is a string."""
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


class Storage(Construct):
    def __init__(self, scope: Construct, id: str, *, settings: DeploySettings) -> None:
        super().__init__(scope, id)
        removal = RemovalPolicy.RETAIN if settings.retain_data else RemovalPolicy.DESTROY

        self.key = kms.Key(
            self,
            "Key",
            description=f"{settings.stack_name}: job events topic and alarm topic",
            enable_key_rotation=True,
            removal_policy=removal,
        )
        # CloudWatch alarms publish to the encrypted alarm topic.
        self.key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey")

        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,  # server access logging cannot write to SSE-KMS
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(90))],
            removal_policy=removal,
        )

        def bucket(name: str, rules: list[s3.LifecycleRule]) -> s3.Bucket:
            # SSE-S3, not KMS: GPU workers hold only pre-signed URLs, and a KMS-encrypted object
            # would also need kms:Decrypt/GenerateDataKey on the signer's role for every URL.
            return s3.Bucket(
                self,
                name,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                encryption=s3.BucketEncryption.S3_MANAGED,
                enforce_ssl=True,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                server_access_logs_bucket=self.access_logs,
                server_access_logs_prefix=f"{name.lower()}/",
                lifecycle_rules=[
                    s3.LifecycleRule(
                        id="abort-incomplete-uploads",
                        abort_incomplete_multipart_upload_after=Duration.days(1),
                    ),
                    *rules,
                ],
                removal_policy=removal,
            )

        # The expiry rules are built from the settings by talkstack.pipeline.retention, as the
        # local stack's are.
        rules = Retention.of(settings).bucket_rules()

        def expire(role: BucketRole) -> list[s3.LifecycleRule]:
            return [
                s3.LifecycleRule(id=rule.rule_id, prefix=rule.prefix, expiration=Duration.days(rule.days))
                for rule in rules[role]
            ]

        self.input_bucket = bucket("Inputs", expire("input"))
        self.work_bucket = bucket("Work", expire("work"))
        self.output_bucket = bucket("Outputs", expire("output"))
        # The daily audit exports: a bucket of their own, so no job's output settings can reach them.
        self.audit_bucket = bucket("Audit", expire("audit"))

        self.table = dynamodb.TableV2(
            self,
            "Jobs",
            table_name=f"{settings.stack_name}-jobs",
            partition_key=_string_key(jobs_table.PARTITION_KEY),
            sort_key=_string_key(jobs_table.SORT_KEY),
            billing=_BILLING[jobs_table.BILLING_MODE],
            time_to_live_attribute=jobs_table.TTL_ATTRIBUTE,  # rate windows, uploads, idempotency, records
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            deletion_protection=settings.retain_data,
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=jobs_table.OWNER_INDEX,
                    partition_key=_string_key(jobs_table.OWNER_INDEX_PARTITION_KEY),
                    sort_key=_string_key(jobs_table.OWNER_INDEX_SORT_KEY),
                    projection_type=dynamodb.ProjectionType.ALL,
                )
            ],
            removal_policy=removal,
        )

    @property
    def data_buckets(self) -> tuple[s3.Bucket, s3.Bucket, s3.Bucket]:
        return self.input_bucket, self.work_bucket, self.output_bucket
