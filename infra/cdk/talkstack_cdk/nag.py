"""cdk-nag (AwsSolutions) findings this stack accepts, each acknowledged on the narrowest construct
with the reason. cdk-nag 3 uses CDK's own `Validations.of(scope).acknowledge`, one finding id at a
time (`AwsSolutions-IAM5[Resource::…]`), so a new wildcard anywhere still fails the checks.

Not acknowledged anywhere: wildcard *actions*, unencrypted or non-TLS storage, missing logs or
tracing. Object-ARN wildcards are acknowledged per role, for exactly the prefixes permissions.py
granted that role.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Acknowledgment, CfnResource, Stack, Validations
from constructs import IConstruct

from talkstack_cdk.permissions import Bucket, ObjectScopes

if TYPE_CHECKING:
    from talkstack_cdk.stack import TalkstackStack

XRAY = "X-Ray's PutTraceSegments/PutTelemetryRecords have no resource-level permissions (Resource *)."
OBJECTS = (
    "Object-level actions (listed one by one, no action wildcard) on keys under the prefixes this "
    "function owns; object keys contain job ids that do not exist before the job."
)
EXECUTIONS = "Executions of this stack's state machine only; their names are job ids, unknown in advance."


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    Validations.of(scope).acknowledge(Acknowledgment(id=f"AwsSolutions-{finding}", reason=reason))


def logical_id(construct: IConstruct) -> str:
    stack = Stack.of(construct)
    default = construct.node.default_child
    assert isinstance(default, CfnResource)
    return str(stack.resolve(stack.get_logical_id(default)))


def object_finding(bucket: Bucket, prefix: str) -> str:
    """How cdk-nag names an object-ARN wildcard: `<LogicalId.Arn>` for the stack's buckets."""
    arn = f"arn:<AWS::Partition>:s3:::{bucket}" if isinstance(bucket, str) else f"<{logical_id(bucket)}.Arn>"
    return f"IAM5[Resource::{arn}/{prefix}*]"


def suppress_stack_findings(stack: TalkstackStack, object_scopes: ObjectScopes) -> None:
    """`object_scopes` are the grants permissions.py made: each role gets exactly the object-ARN
    acknowledgments of its own statements, so a new wildcard on any role still fails."""
    executions = (
        f"IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:"
        f"execution:{stack.settings.stack_name}-jobs:*]"
    )
    for name, role in stack.functions.roles.items():
        acknowledge(role, "IAM5[Resource::*]", XRAY)
        for bucket, prefix in object_scopes[name]:
            acknowledge(role, object_finding(bucket, prefix), OBJECTS)
        if name in ("ingest", "api"):  # DescribeExecution / StopExecution
            acknowledge(role, executions, EXECUTIONS)

    acknowledge(
        stack.workflow.state_machine.role,
        "IAM5[Resource::*]",
        f"{XRAY} Step Functions' log delivery actions (logs:CreateLogDelivery, …) also require "
        "Resource * (AWS documents this for vended logs).",
    )
    acknowledge(
        stack.ingest_refusals,
        "SQS3",
        "This queue is a dead-letter destination itself: the ingest Lambda parks the manifests it "
        "refuses here for people to read (an alarm fires on its depth).",
    )
    rotation = (
        "Not rotated by a Secrets Manager rotation Lambda: the Modal token is issued and revoked in "
        "Modal, and a webhook signing secret must be changed together with every receiver. "
        "docs/deploy.md shows manual rotation; readers cache it for 5 minutes."
    )
    acknowledge(stack.modal_token, "SMG4", rotation)
    acknowledge(stack.webhook_secret, "SMG4", rotation)
    acknowledge(
        stack.c2pa_signer,
        "SMG4",
        "Not rotated by a Secrets Manager rotation Lambda: a C2PA signing key comes with a certificate "
        "a certificate authority issues; the operator replaces both together (docs/safety.md). "
        "finalize caches it for 5 minutes.",
    )

    api = stack.rest_api.api
    acknowledge(
        api,
        "APIG2",
        "A proxy integration: the api Lambda validates every body against the same pydantic models "
        "that generate schemas/openapi.json, with error messages API Gateway could not give.",
    )
    acknowledge(
        api.deployment_stage,
        "APIG3",
        "WAF is optional (from $5/month + per-rule fees): per-key rate limits, usage plans and stage "
        "throttling cover abuse; docs/deploy.md shows how to associate a web ACL.",
    )
    acknowledge(
        api,
        "COG4",
        "Clients authenticate with talkstack API keys checked by a Lambda authorizer, not Cognito "
        "user pools (machine-to-machine API).",
    )
    acknowledge(api, "APIG4", "Only /health, /openapi.json and /docs are public, by design.")
    acknowledge(
        api,
        "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
        "The AWS-managed policy made for API Gateway's account-level logging role.",
    )

    for child in stack.node.children:
        if child.node.id.startswith("BucketNotificationsHandler"):
            acknowledge(
                child,
                "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
                "CDK's own singleton that configures S3 event notifications at deploy time; its role "
                "only writes logs and calls s3:PutBucketNotification.",
            )
            acknowledge(
                child,
                "IAM5[Resource::*]",
                "CDK's notification configurator: PutBucketNotification on our buckets.",
            )
