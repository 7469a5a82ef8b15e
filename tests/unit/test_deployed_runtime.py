"""What only the deployed stack uses, on moto: the API Gateway authorizer and usage keys, the
webhook secret from Secrets Manager, the job metrics notify writes, the config's secret rule."""

from __future__ import annotations

import json

import boto3
import pytest
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
)
from moto import mock_aws
from pydantic import ValidationError

from talkstack.api.authorizer import UNAUTHORIZED, authorize
from talkstack.api.keys import KeyStore
from talkstack.api.usage import TIER_TAG, register_usage_key, usage_key_value
from talkstack.contract.events import JobEvent
from talkstack.contract.record import JobRecord
from talkstack.errors import TalkstackError
from talkstack.pipeline import aws
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.metrics import record_event_metrics
from talkstack.pipeline.notify import signing_secret
from tests.support.pipeline_env import local_config_fields
from tests.unit.test_api_access import TABLE, ddb  # noqa: F401 - the moto jobs table fixture

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/prod/GET/v1/jobs"


def authorizer_event(headers: dict[str, str]) -> APIGatewayAuthorizerRequestEvent:
    return APIGatewayAuthorizerRequestEvent(
        {
            "type": "REQUEST",
            "methodArn": METHOD_ARN,
            "headers": headers,
            "path": "/v1/jobs",
            "httpMethod": "GET",
        }
    )


def test_authorizer_allows_a_valid_key_and_names_its_usage_key(ddb):  # noqa: F811
    keys = KeyStore(TABLE, ddb)
    new = keys.create("pro", "acme")
    for headers in ({"Authorization": f"Bearer {new.key}"}, {"x-api-key": new.key}):
        answer = authorize(authorizer_event(headers), keys)
        assert answer["principalId"] == new.principal.key_id
        assert answer["usageIdentifierKey"] == usage_key_value(new.principal.key_id)
        assert answer["context"] == {"key_id": new.principal.key_id, "tier": "pro"}
        (statement,) = answer["policyDocument"]["Statement"]
        assert statement["Effect"] == "Allow"
        assert statement["Resource"] == ["arn:aws:execute-api:us-east-1:123456789012:abcdef1234/prod/*/*"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": "tsk_nope"}, {"Authorization": "Bearer " + "tsk_" + "a" * 12 + "_" + "b" * 32}],
)
def test_authorizer_refuses_bad_keys_with_the_message_api_gateway_maps_to_401(ddb, headers):  # noqa: F811
    with pytest.raises(PermissionError, match=f"^{UNAUTHORIZED}$"):
        authorize(authorizer_event(headers), KeyStore(TABLE, ddb))


def test_authorizer_refuses_a_disabled_key(ddb):  # noqa: F811
    keys = KeyStore(TABLE, ddb)
    new = keys.create("free")
    keys.disable(new.principal.key_id)
    with pytest.raises(PermissionError):
        authorize(authorizer_event({"x-api-key": new.key}), keys)


def test_usage_key_is_registered_in_the_tiers_plan(ddb):  # noqa: F811
    apigw = boto3.client("apigateway", region_name="us-east-1")
    plan = apigw.create_usage_plan(name="talkstack-pro")["id"]
    new = KeyStore(TABLE, ddb).create("pro", "acme")
    key_id = register_usage_key(new.principal, plan, apigw)
    key = apigw.get_api_key(apiKey=key_id, includeValue=True)
    assert key["value"] == usage_key_value(new.principal.key_id) and len(key["value"]) >= 20
    assert [k["id"] for k in apigw.get_usage_plan_keys(usagePlanId=plan)["items"]] == [key_id]


def test_a_plan_of_another_tier_is_refused(ddb):  # noqa: F811
    apigw = boto3.client("apigateway", region_name="us-east-1")
    plan = apigw.create_usage_plan(name="talkstack-free", tags={TIER_TAG: "free"})["id"]
    new = KeyStore(TABLE, ddb).create("pro")
    with pytest.raises(TalkstackError, match=r"meters the free tier and this key is pro: use .*UsagePlanPro"):
        register_usage_key(new.principal, plan, apigw)
    assert apigw.get_api_keys()["items"] == []
    pro = apigw.create_usage_plan(name="talkstack-pro", tags={TIER_TAG: "pro"})["id"]
    assert register_usage_key(new.principal, pro, apigw)


def test_a_missing_plan_leaves_no_half_registered_key(ddb):  # noqa: F811
    apigw = boto3.client("apigateway", region_name="us-east-1")
    new = KeyStore(TABLE, ddb).create("pro")
    with pytest.raises(TalkstackError, match="usage plan 'nope' does not exist"):
        register_usage_key(new.principal, "nope", apigw)
    assert apigw.get_api_keys()["items"] == []


pytestmark = pytest.mark.usefixtures("no_pipeline_environment")


def config(**extra: str) -> PipelineConfig:
    env = local_config_fields()
    env.pop("webhook_secret")
    return PipelineConfig.model_validate({**env, **extra})


def test_config_wants_exactly_one_webhook_secret():
    with pytest.raises(ValidationError, match="exactly one of TALKSTACK_WEBHOOK_SECRET"):
        config()
    with pytest.raises(ValidationError, match="exactly one"):
        config(webhook_secret="whsec_a", webhook_secret_id="arn:secret")


def test_webhook_secret_is_read_from_secrets_manager_and_gets_its_prefix(monkeypatch):
    with mock_aws():
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
        aws.reset_clients()
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        arn = sm.create_secret(Name="talkstack/webhook-signing", SecretString="A" * 32)["ARN"]
        assert signing_secret(config(webhook_secret_id=arn)) == "whsec_" + "A" * 32
        prefixed = sm.create_secret(Name="other", SecretString="whsec_QUJD")["ARN"]
        assert signing_secret(config(webhook_secret_id=prefixed)) == "whsec_QUJD"
        assert signing_secret(config(webhook_secret="whsec_env")) == "whsec_env"
    aws.reset_clients()


def finished_record() -> JobRecord:
    return JobRecord.model_validate(
        {
            "job_id": "avatar-0123456789abcdef",
            "task": "avatar",
            "status": "completed",
            "created_at": "2026-11-22T10:00:00Z",
            "updated_at": "2026-11-22T10:02:00Z",
            "finished_at": "2026-11-22T10:02:00Z",
            "model": "multitalk",
            "request": {
                "task": "avatar",
                "inputs": {"image": "s3://in-bucket/i.png", "audio": "s3://in-bucket/a.wav"},
                "options": {"model": "multitalk"},
            },
            "steps": [
                {
                    "name": "avatar",
                    "status": "completed",
                    "model": "multitalk",
                    "backend": "modal",
                    "duration_s": 95.5,
                }
            ],
            "result": {
                "duration_s": 12.0,
                "estimated_cost_usd": 0.12,
                "outputs": [
                    {
                        "kind": "video",
                        "bucket": "out-bucket",
                        "key": "avatar-0123456789abcdef/video.mp4",
                        "content_type": "video/mp4",
                        "bytes": 1000,
                    }
                ],
            },
        }
    )


def emitted(sink: Metrics) -> dict[str, list]:
    blob = sink.serialize_metric_set()
    return {m["Name"]: blob[m["Name"]][0] for m in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]}


@pytest.fixture
def sink():
    """powertools keeps one metric set per namespace across instances: start empty, end empty."""
    metrics = Metrics(namespace="talkstack", service="talkstack")
    metrics.clear_metrics()
    yield metrics
    metrics.clear_metrics()


def test_terminal_events_write_job_metrics(sink):
    record = finished_record()
    record_event_metrics(JobEvent.from_record(record, "job.completed"), record, True, sink=sink)
    values = emitted(sink)
    assert values["JobsCompleted"] == 1.0
    assert values["JobDuration"] == 120.0
    assert values["GpuSeconds"] == 95.5  # multitalk is a GPU model
    assert values["RenderedSeconds"] == 12.0 and values["EstimatedCostUsd"] == 0.12
    assert "WebhookDeliveryFailures" not in values


def test_progress_events_write_only_webhook_failures(sink):
    record = finished_record().model_copy(update={"status": "running", "finished_at": None, "result": None})
    record_event_metrics(JobEvent.from_record(record, "job.progress"), record, False, sink=sink)
    assert emitted(sink) == {"WebhookDeliveryFailures": 1.0}
    json.dumps(sink.serialize_metric_set())  # valid EMF
