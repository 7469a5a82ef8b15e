"""Webhook signing: Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
`webhook-signature`) over exactly the bytes sent, one signature per secret during a rotation's
overlap, and the secrets' format (`whsec_` + base64 of 32 random bytes)."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

__all__ = ["SECRET_PREFIX", "USER_AGENT", "generate_secret", "sign_headers", "signed_headers", "signers"]

USER_AGENT = "talkstack-webhooks/1"

SECRET_PREFIX = "whsec_"


def generate_secret() -> str:
    """A new signing secret in the Standard Webhooks format: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def signers(secrets: str | Sequence[str]) -> list[Webhook]:
    """One `Webhook` per secret; an invalid secret is a configuration bug (ValueError)."""
    names = [secrets] if isinstance(secrets, str) else list(secrets)
    if not names:
        raise ValueError("invalid webhook secret (none given)")
    try:
        return [Webhook(secret) for secret in names]
    except Exception as exc:
        raise ValueError(f"invalid webhook secret ({type(exc).__name__})") from None


def signed_headers(
    webhooks: Sequence[Webhook], msg_id: str, timestamp: datetime, body: str
) -> dict[str, str]:
    if timestamp.tzinfo is None:
        raise ValueError("the webhook timestamp must be timezone-aware")
    # The library *replaces* tzinfo with UTC rather than converting, so convert first or a non-UTC
    # datetime would be signed (and sent) hours off.
    timestamp = timestamp.astimezone(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        # Several secrets (a rotation's overlap): one `v1,<sig>` each, space-separated, as the spec
        # allows; a verifier accepts the request if any of them matches its secret.
        "webhook-signature": " ".join(
            webhook.sign(msg_id=msg_id, timestamp=timestamp, data=body) for webhook in webhooks
        ),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def sign_headers(secret: str | Sequence[str], msg_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers for one request (plus content-type and user-agent).

    `secret` may be several secrets (during a rotation's overlap): the request then carries one
    signature per secret. `timestamp` must be timezone-aware; `body` must be exactly what is sent.
    """
    return signed_headers(signers(secret), msg_id, timestamp, body)
