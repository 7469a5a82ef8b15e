"""API Gateway Lambda authorizer (deployed stacks): checks the talkstack key and names the API
Gateway usage key of the caller, so usage plans throttle and meter per key.

The api Lambda still authenticates every request itself (it must, behind the local gateway), so
this is the outer gate: a bad key is refused before the API Lambda is even invoked, and counted by
nobody's plan. The result is not cached: the key may arrive in either of two headers, and API
Gateway caches by one fixed identity source.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    APIGatewayAuthorizerResponse,
)

from talkstack.api.keys import KeyStore
from talkstack.api.usage import usage_key_value
from talkstack.errors import TalkstackError

# API Gateway turns exactly this error message into a 401 (anything else becomes a 500).
UNAUTHORIZED = "Unauthorized"


def authorize(event: APIGatewayAuthorizerRequestEvent, keys: KeyStore) -> dict[str, Any]:
    try:
        principal = keys.authenticate(event.headers or {})
    except TalkstackError as exc:
        raise PermissionError(UNAUTHORIZED) from exc
    arn = event.parsed_arn
    response = APIGatewayAuthorizerResponse(
        principal_id=principal.key_id,
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
        context={"key_id": principal.key_id, "tier": principal.tier},
        usage_identifier_key=usage_key_value(principal.key_id),
    )
    response.allow_all_routes()
    return response.asdict()
