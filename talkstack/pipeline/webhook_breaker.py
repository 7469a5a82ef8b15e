"""A circuit breaker per webhook target, so that one tenant's dead receiver cannot hold notify.

Notify's concurrency is reserved and shared by every tenant, and a delivery to a receiver that never
answers (or drips one byte a second) may hold a run for the whole delivery deadline. After
`failures` consecutive failed deliveries to one target, that target is paused: deliveries to it are
not attempted (their report says so, `refused` and `paused_until`) until the pause ends. The pause
is `pause_s`, doubling at each new trip up to `max_pause_s`. When it ends the next delivery is tried
(half-open): its failure pauses the target again at once, for twice as long; a delivered event
clears the target's history. Hosted webhook services do the same (endpoints disabled after
repeated failures).

A target is a registered endpoint (by its id) or a per-request webhook, known by a hash of its URL's
origin (scheme, host, port): what fails is the host, whatever its path, and the URL itself (whose
query string may hold a token) is never stored. State lives in the jobs table under the key's own
partition, one item per target, changed only by atomic updates:

  pk = WEBHOOKS#<key id> (jobs without a key: WEBHOOKS#_stack), sk = HEALTH#<target>
  failures      consecutive failed deliveries (ADD, so concurrent runs never lose one)
  trips         how many times the target was paused since its last success (sets the next pause)
  paused_until  epoch seconds; set by one conditional update, so concurrent failures trip it once
  expires_at    TTL: a day after the longest pause, refreshed by every write

What it does not do: deliveries already in flight when a target trips finish normally, and when a
pause ends every run that comes in before the first result is known tries the target (there is no
single probe). A tenant can also spread its webhooks over many host names (wildcard DNS): each new
host gets `failures` tries before its pause.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from talkstack.pipeline.aws import error_code

NO_KEY = "_stack"
"""The partition name of jobs without an API key (S3 drops, direct starts): never a key id."""
_REMEMBER_S = 86400
"""How long past the longest pause a target's history is kept (DynamoDB TTL)."""


def request_target(url: str) -> str:
    """The breaker's name for a per-request webhook: a hash of the URL's origin, never the URL."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    origin = f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"
    return "url-" + hashlib.sha256(origin.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int
    """Consecutive failed deliveries that pause a target; 0: never pause."""
    pause_s: int
    """The first pause; each new trip doubles it."""
    max_pause_s: int
    """The longest pause."""

    def pause_after(self, trips: int) -> int:
        """The pause of a target tripped `trips` times before (since its last success)."""
        return min(self.max_pause_s, self.pause_s * 2 ** min(trips, 32))


@dataclass(frozen=True)
class Pause:
    failures: int
    until: datetime

    @property
    def reason(self) -> str:
        until = self.until.isoformat().replace("+00:00", "Z")
        return f"paused after {self.failures} consecutive failed deliveries until {until}"


def _key(key_id: str | None, target: str) -> dict[str, Any]:
    return {"pk": {"S": f"WEBHOOKS#{key_id or NO_KEY}"}, "sk": {"S": f"HEALTH#{target}"}}


class WebhookBreaker:
    """The health of each webhook target of each key; every method acts on the key it is given."""

    def __init__(self, table: str, ddb: Any, policy: BreakerPolicy) -> None:
        self.table, self.ddb, self.policy = table, ddb, policy

    def paused(self, key_id: str | None, now: float | None = None) -> dict[str, Pause]:
        """The key's targets paused now, by target name (one query for all of them)."""
        if self.policy.failures == 0:
            return {}
        now = time.time() if now is None else now
        found: dict[str, Pause] = {}
        paginator = self.ddb.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
            ExpressionAttributeValues={":pk": _key(key_id, "")["pk"], ":p": {"S": "HEALTH#"}},
            ConsistentRead=True,
        ):
            for item in page["Items"]:
                until = int(item.get("paused_until", {"N": "0"})["N"])
                if until > now:
                    found[item["sk"]["S"].removeprefix("HEALTH#")] = Pause(
                        failures=int(item["failures"]["N"]), until=datetime.fromtimestamp(until, UTC)
                    )
        return found

    def record(self, key_id: str | None, target: str, delivered: bool, now: float | None = None) -> None:
        """Count one finished delivery: a success clears the target, a failure may pause it."""
        if self.policy.failures == 0:
            return
        key = _key(key_id, target)
        if delivered:
            self.ddb.delete_item(TableName=self.table, Key=key)
            return
        now = int(time.time() if now is None else now)
        expires = {"N": str(now + self.policy.max_pause_s + _REMEMBER_S)}
        item = self.ddb.update_item(
            TableName=self.table,
            Key=key,
            UpdateExpression="ADD failures :one SET expires_at = :e",
            ExpressionAttributeValues={":one": {"N": "1"}, ":e": expires},
            ReturnValues="ALL_NEW",
        )["Attributes"]
        failures = int(item["failures"]["N"])
        trips = int(item.get("trips", {"N": "0"})["N"])
        if failures < self.policy.failures or int(item.get("paused_until", {"N": "0"})["N"]) > now:
            return
        try:
            # Only the first of several concurrent failures trips it (the others see the pause).
            self.ddb.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET paused_until = :until ADD trips :one",
                ConditionExpression="failures >= :n AND "
                "(attribute_not_exists(paused_until) OR paused_until <= :now)",
                ExpressionAttributeValues={
                    ":until": {"N": str(now + self.policy.pause_after(trips))},
                    ":one": {"N": "1"},
                    ":n": {"N": str(self.policy.failures)},
                    ":now": {"N": str(now)},
                },
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
