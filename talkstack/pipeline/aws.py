"""boto3 clients, created once per process and shared by threads (clients are thread-safe).

`AWS_ENDPOINT_URL` (set by local mode) points every client at the emulator; with it set, S3 uses
path-style addressing so pre-signed URLs work against an IP endpoint.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

import boto3
from botocore.config import Config

from talkstack.settings import get_local_settings

TRACED_MODULES = ("botocore",)
"""What the handlers' X-Ray Tracer patches: AWS calls only. Patching everything it can would also
patch httpx, putting an `X-Amzn-Trace-Id` header on every webhook POST to a customer's endpoint
and recording each webhook URL (which may carry a token) in the traces."""


@lru_cache(maxsize=1)
def _session() -> boto3.session.Session:
    return boto3.session.Session()


@cache
def client(service: str) -> Any:
    s3_style = {"addressing_style": "path"} if get_local_settings().aws_endpoint_url else {}
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        signature_version="s3v4" if service == "s3" else None,
        s3=s3_style or None,
        max_pool_connections=32,
    )
    return _session().client(service, config=config)  # type: ignore[call-overload]


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError (None for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


def reset_clients() -> None:
    """Forget cached clients (after the endpoint changes, e.g. between local stacks in tests)."""
    client.cache_clear()
    _session.cache_clear()
    get_local_settings.cache_clear()  # the endpoint is part of those settings
    secrets_provider.cache_clear()


@cache
def secrets_provider(secrets_client: Any = None) -> Any:
    """One powertools provider per client: its cache lives in the provider, so a new provider per
    call would read Secrets Manager on every invocation. No client: one from `client()`."""
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=secrets_client or client("secretsmanager"))
