"""API Gateway usage plans for talkstack keys (deployed stacks only).

API Gateway meters and throttles by *its own* API keys. With the key source set to AUTHORIZER, the
authorizer names that key for each request (`usageIdentifierKey`), so clients keep sending their
talkstack key (Bearer or x-api-key) and never see the API Gateway one. Each talkstack key gets an
API Gateway key whose value is derived from the key id (not secret: it identifies, it does not
authenticate) in the usage plan of its tier.
"""

from __future__ import annotations

from typing import Any

from talkstack.api.keys import Principal
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.aws import error_code

USAGE_KEY_PREFIX = "talkstack-usage-"  # + 12-character key id: API Gateway wants >= 20 characters
TIER_TAG = "talkstack:tier"
"""Tag on the CDK stack's usage plans naming the tier each one meters."""


def usage_key_value(key_id: str) -> str:
    return USAGE_KEY_PREFIX + key_id


def register_usage_key(principal: Principal, usage_plan_id: str, apigateway: Any) -> str:
    """Create the key's API Gateway twin and put it in the tier's usage plan; returns its id. A plan
    tagged for another tier is refused: the key would be throttled by the wrong limits."""
    try:
        plan = apigateway.get_usage_plan(usagePlanId=usage_plan_id)
    except Exception as exc:
        if error_code(exc) == "NotFoundException":
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST, f"usage plan {usage_plan_id!r} does not exist"
            ) from exc
        raise
    plan_tier = (plan.get("tags") or {}).get(TIER_TAG)
    if plan_tier is not None and plan_tier != principal.tier:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST,
            f"usage plan {usage_plan_id!r} meters the {plan_tier} tier and this key is {principal.tier}: "
            f"use the stack's UsagePlan{principal.tier.capitalize()} output",
        )
    created = apigateway.create_api_key(
        name=f"talkstack-{principal.key_id}",
        description=f"usage key of talkstack key {principal.key_id} ({principal.tier}: {principal.name})",
        enabled=True,
        value=usage_key_value(principal.key_id),
        tags={"talkstack:key_id": principal.key_id, "talkstack:tier": principal.tier},
    )
    try:
        apigateway.create_usage_plan_key(usagePlanId=usage_plan_id, keyId=created["id"], keyType="API_KEY")
    except Exception:
        # No half-registered key left behind: it would count requests against no plan.
        apigateway.delete_api_key(apiKey=created["id"])
        raise
    return created["id"]
