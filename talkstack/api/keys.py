"""API keys: `tsk_<id>_<secret>`, stored as a SHA-256 hash in the jobs table, each with a tier.

The id is not secret: it names the key in logs, in job records (`source.api_key_id`) and, in AWS,
as the usage-plan identifier. Only the hash of the whole key is stored, so a leaked table does not
leak keys. Keys carry 190 bits of randomness, so a plain SHA-256 (no slow KDF) is the right tool:
there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any, Literal, get_args

from botocore.exceptions import ClientError

from talkstack.contract.record import utc_now
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.audit import CLI_SOURCE, Actor, AuditLog, audit_unavailable
from talkstack.pipeline.aws import error_code

Tier = Literal["free", "pro", "enterprise"]
TIERS: tuple[str, ...] = get_args(Tier)
KEY_RE = re.compile(r"^tsk_(?P<id>[a-z0-9]{12})_(?P<secret>[A-Za-z0-9]{32})$")
_ALPHABET = string.ascii_letters + string.digits
MISSING_KEY = "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`"
INVALID_KEY = "invalid API key"


@dataclass(frozen=True)
class TierLimits:
    requests_per_minute: int
    concurrent_jobs: int
    gpu_tasks: int
    """Engine tasks (GPU containers) running at once, counted across all the key's jobs and chunks.
    A single-step job holds one; a parallel long avatar holds what is left (talkstack.api.limits).
    At least `concurrent_jobs`, so ordinary jobs meet the job limit first; free = 1 so one free
    key is one GPU at most."""


TIER_LIMITS: dict[str, TierLimits] = {
    "free": TierLimits(requests_per_minute=10, concurrent_jobs=1, gpu_tasks=1),
    "pro": TierLimits(requests_per_minute=60, concurrent_jobs=5, gpu_tasks=8),
    "enterprise": TierLimits(requests_per_minute=600, concurrent_jobs=25, gpu_tasks=32),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, its tier and that tier's limits (and, for the audit trail,
    where the request came from: API Gateway's source IP and request id)."""

    key_id: str
    tier: str
    name: str
    source_ip: str = "unknown"
    request_id: str | None = None

    @property
    def limits(self) -> TierLimits:
        return TIER_LIMITS[self.tier]

    @property
    def actor(self) -> Actor:
        return Actor(self.key_id, self.source_ip, self.request_id)


@dataclass(frozen=True)
class NewKey:
    key: str
    """The only time the secret exists in clear: give it to the client, it is not stored."""
    principal: Principal


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_from_headers(headers: dict[str, str]) -> str:
    """The key from `Authorization: Bearer …` or `x-api-key` (header names in any case)."""
    lower = {k.lower(): v for k, v in (headers or {}).items()}
    auth = lower.get("authorization", "")
    scheme, _, value = auth.strip().partition(" ")
    if auth and scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if lower.get("x-api-key", "").strip():
        return lower["x-api-key"].strip()
    raise TalkstackError(ErrorCode.UNAUTHORIZED, MISSING_KEY)


class KeyStore:
    """Keys as items `pk=APIKEY#<id>, sk=KEY` of the jobs table. Creating and revoking a key writes
    its audit entry in the same transaction: no key comes or goes unlogged."""

    def __init__(self, table: str, ddb: Any, audit: AuditLog | None = None) -> None:
        self.table, self.ddb = table, ddb
        self.audit = audit or AuditLog(table, ddb)

    def _transact(self, change: dict[str, Any], actor: Actor, action: Any, **details: Any) -> None:
        entry = self.audit.entry(actor, action, "key", actor.key_id, **details)
        try:
            self.ddb.transact_write_items(TransactItems=[change, *self.audit.puts(entry)])
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    raise KeyError(actor.key_id) from exc  # the key item's own condition
            raise audit_unavailable(exc) from exc

    def create(self, tier: str = "free", name: str = "", source: str = CLI_SOURCE) -> NewKey:
        if tier not in TIER_LIMITS:
            raise TalkstackError(ErrorCode.INVALID_REQUEST, f"tier must be one of {', '.join(TIERS)}")
        key_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(12))
        key = f"tsk_{key_id}_{''.join(secrets.choice(_ALPHABET) for _ in range(32))}"
        put = {
            "TableName": self.table,
            "Item": {
                "pk": {"S": f"APIKEY#{key_id}"},
                "sk": {"S": "KEY"},
                "hash": {"S": hash_key(key)},
                "tier": {"S": tier},
                "name": {"S": name or key_id},
                "created_at": {"S": utc_now().isoformat()},
                "disabled": {"BOOL": False},
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        self._transact({"Put": put}, Actor(key_id, source), "key.created", tier=tier, name=name or key_id)
        return NewKey(key, Principal(key_id, tier, name or key_id))

    def disable(self, key_id: str, source: str = CLI_SOURCE) -> None:
        """Revoke a key (it authenticates no more); NOT_FOUND if there is no such key."""
        update = {
            "TableName": self.table,
            "Key": {"pk": {"S": f"APIKEY#{key_id}"}, "sk": {"S": "KEY"}},
            "UpdateExpression": "SET disabled = :t",
            "ExpressionAttributeValues": {":t": {"BOOL": True}},
            "ConditionExpression": "attribute_exists(pk)",
        }
        try:
            self._transact({"Update": update}, Actor(key_id, source), "key.revoked")
        except KeyError:
            raise TalkstackError(ErrorCode.NOT_FOUND, f"no API key {key_id!r}") from None

    def authenticate(self, headers: dict[str, str]) -> Principal:
        """The caller of a request, or UNAUTHORIZED. Every wrong key gets the same answer."""
        key = key_from_headers(headers)
        match = KEY_RE.match(key)
        if not match:
            raise TalkstackError(ErrorCode.UNAUTHORIZED, INVALID_KEY)
        found = self.ddb.get_item(
            TableName=self.table,
            Key={"pk": {"S": f"APIKEY#{match['id']}"}, "sk": {"S": "KEY"}},
            ConsistentRead=True,
        ).get("Item")
        if (
            not found
            or not hmac.compare_digest(found["hash"]["S"], hash_key(key))
            or found.get("disabled", {}).get("BOOL", False)
        ):
            raise TalkstackError(ErrorCode.UNAUTHORIZED, INVALID_KEY)
        return Principal(match["id"], found["tier"]["S"], found["name"]["S"])
