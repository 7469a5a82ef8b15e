"""Webhook signing (talkstack/pipeline/webhook_signing.py): what a receiver checks, exactly.

Closes the signing mutants the mutation run found alive: the refusals' messages (an operator reads
them when a secret is misconfigured) and a signature that must verify whatever the machine's local
time zone is.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook

from talkstack.pipeline.webhook_signing import SECRET_PREFIX, generate_secret, sign_headers, signers

BODY = '{"type":"job.completed","job_id":"job_1"}'


def test_a_new_secret_is_the_prefix_and_32_random_bytes():
    secret = generate_secret()
    assert secret.startswith(SECRET_PREFIX)
    assert len(base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)) == 32
    assert generate_secret() != secret


def test_no_secret_is_refused_by_name():
    with pytest.raises(ValueError) as refused:
        signers([])
    assert str(refused.value) == "invalid webhook secret (none given)"


def test_a_malformed_secret_is_refused_naming_the_error_not_the_secret():
    with pytest.raises(ValueError) as refused:
        signers(["whsec_%%%not-base64"])
    message = str(refused.value)
    assert message.startswith("invalid webhook secret (") and message != "invalid webhook secret (NoneType)"
    assert "%%%" not in message


def test_a_naive_timestamp_is_refused():
    with pytest.raises(ValueError) as refused:
        sign_headers(generate_secret(), "msg_1", datetime(2026, 1, 1, 12, 0), BODY)
    assert str(refused.value) == "the webhook timestamp must be timezone-aware"


@pytest.fixture
def local_zone_far_from_utc(monkeypatch: pytest.MonkeyPatch):
    """The process's local time zone set to UTC+05:30 (a Lambda runs in UTC; a developer may not)."""
    monkeypatch.setenv("TZ", "IST-5:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("zone", [UTC, timezone(timedelta(hours=-7))], ids=["utc", "utc-7"])
def test_the_signature_verifies_in_any_local_time_zone(local_zone_far_from_utc, zone):
    secret = generate_secret()
    sent_at = datetime.now(UTC).astimezone(zone)
    headers = sign_headers(secret, "msg_1", sent_at, BODY)
    assert headers["webhook-timestamp"] == str(int(sent_at.timestamp()))
    # What a receiver does: the library recomputes the signature over the id, timestamp and body.
    assert Webhook(secret).verify(BODY, headers) == {"type": "job.completed", "job_id": "job_1"}
