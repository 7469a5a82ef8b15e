"""The REST API: API Gateway in front of the api Lambda (proxy integration), talkstack keys checked
by a Lambda authorizer that names each key's API Gateway usage key, one usage plan per tier.

Public routes (/health, /openapi.json, /docs) skip the authorizer; everything else needs a key.
`multipart/form-data` is a binary media type so uploads reach the Lambda byte for byte (base64).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Tags
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from talkstack.api.keys import TIER_LIMITS
from talkstack.api.usage import TIER_TAG
from talkstack_cdk.functions import log_retention
from talkstack_cdk.settings import DeploySettings

STAGE = "prod"  # URLs: https://<id>.execute-api.<region>.amazonaws.com/prod/v1/…
PUBLIC_PATHS = ("health", "openapi.json", "docs")
BINARY_MEDIA_TYPES = ("multipart/form-data",)
MONTHLY_QUOTA = {"free": 5_000, "pro": 200_000, "enterprise": None}
"""Requests per month per key (None: no quota); the per-minute limits come from TIER_LIMITS."""


class RestApi(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: DeploySettings,
        handler: lambda_.IFunction,
        authorizer_function: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, id)
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention(settings), removal_policy=RemovalPolicy.DESTROY
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"{settings.stack_name}-api",
            description="talkstack REST API (schemas/openapi.json)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            binary_media_types=list(BINARY_MEDIA_TYPES),
            api_key_source_type=apigw.ApiKeySourceType.AUTHORIZER,
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.DESTROY,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # request bodies carry scripts and media
                throttling_rate_limit=settings.api_throttle_rps,
                throttling_burst_limit=settings.api_throttle_burst,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
            ),
        )
        self.authorizer = apigw.RequestAuthorizer(
            self,
            "KeyAuthorizer",
            handler=authorizer_function,
            identity_sources=[],
            results_cache_ttl=Duration.seconds(0),
        )
        integration = apigw.LambdaIntegration(handler, proxy=True)
        for path in PUBLIC_PATHS:
            self.api.root.add_resource(path).add_method(
                "GET", integration, authorization_type=apigw.AuthorizationType.NONE
            )
        self.api.root.add_resource("{proxy+}").add_method(
            "ANY",
            integration,
            authorizer=self.authorizer,
            authorization_type=apigw.AuthorizationType.CUSTOM,
            api_key_required=True,
        )

        self.usage_plans: dict[str, apigw.UsagePlan] = {}
        for tier, limits in TIER_LIMITS.items():
            quota = MONTHLY_QUOTA.get(tier)
            self.usage_plans[tier] = self.api.add_usage_plan(
                f"{tier.capitalize()}Plan",
                name=f"{settings.stack_name}-{tier}",
                description=f"talkstack {tier} tier: {limits.requests_per_minute} requests/min per key",
                throttle=apigw.ThrottleSettings(
                    rate_limit=round(limits.requests_per_minute / 60, 3),  # per second
                    burst_limit=max(2, limits.requests_per_minute // 6),  # a page of polls at once
                ),
                quota=apigw.QuotaSettings(limit=quota, period=apigw.Period.MONTH) if quota else None,
                api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)],
            )
            # `talkstack keys create --usage-plan` checks it against the key's tier.
            Tags.of(self.usage_plans[tier]).add(TIER_TAG, tier)

    @property
    def url(self) -> str:
        return self.api.url
