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
KeyStatus = Literal["active", "disabled", "revoked"]
"""`disabled` is undone by `enable`; `revoked` is for good. The item's `disabled` flag (what
`authenticate` reads) is true in both."""
KEY_STATUSES: tuple[str, ...] = get_args(KeyStatus)
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
class KeyInfo:
    """What an operator may see of a key: never its secret nor its hash."""

    key_id: str
    name: str
    tier: str
    status: KeyStatus
    created_at: str
    """ISO 8601, UTC."""

    @classmethod
    def of(cls, item: dict[str, Any]) -> KeyInfo:
        status = item.get("status", {}).get("S")
        if status not in KEY_STATUSES:  # written before `status` existed: disabled meant revoked
            status = "revoked" if item.get("disabled", {}).get("BOOL", False) else "active"
        key_id = item["pk"]["S"].removeprefix("APIKEY#")
        return cls(
            key_id=key_id,
            name=item.get("name", {}).get("S", key_id),
            tier=item.get("tier", {}).get("S", "?"),
            status=status,
            created_at=item.get("created_at", {}).get("S", ""),
        )


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
    """Keys as items `pk=APIKEY#<id>, sk=KEY` of the jobs table. Creating, disabling, enabling and
    revoking a key writes its audit entry in the same transaction: no key comes or goes unlogged."""

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
                "status": {"S": "active"},
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        self._transact({"Put": put}, Actor(key_id, source), "key.created", tier=tier, name=name or key_id)
        return NewKey(key, Principal(key_id, tier, name or key_id))

    def _set_status(self, key_id: str, status: KeyStatus, action: Any, source: str) -> None:
        """Move a key to `status` with its audit entry, in one transaction. A revoked key stays
        revoked: the condition refuses any change to it, so a race cannot bring one back."""
        update = {
            "TableName": self.table,
            "Key": {"pk": {"S": f"APIKEY#{key_id}"}, "sk": {"S": "KEY"}},
            "UpdateExpression": "SET disabled = :d, #s = :s",
            "ExpressionAttributeNames": {"#s": "status"},  # a DynamoDB reserved word
            "ExpressionAttributeValues": {
                ":d": {"BOOL": status != "active"},
                ":s": {"S": status},
                ":r": {"S": "revoked"},
                ":f": {"BOOL": False},
            },
            # Keys written before `status` existed: a `disabled` one was revoked.
            "ConditionExpression": "attribute_exists(pk) AND ((attribute_exists(#s) AND #s <> :r) "
            "OR (attribute_not_exists(#s) AND disabled = :f))",
        }
        try:
            self._transact({"Update": update}, Actor(key_id, source), action)
        except KeyError:
            found = self.get(key_id)
            if found is None:
                raise TalkstackError(ErrorCode.NOT_FOUND, f"no API key {key_id!r}") from None
            raise TalkstackError(
                ErrorCode.CONFLICT,
                f"key {key_id} is revoked, which is permanent; create a new one: talkstack keys create",
            ) from None

    def disable(self, key_id: str, source: str = CLI_SOURCE) -> None:
        """Disable a key until `enable`: it authenticates no more, and gets the same 401 as an
        unknown key. NOT_FOUND if there is no such key, CONFLICT if it is revoked."""
        self._set_status(key_id, "disabled", "key.disabled", source)

    def enable(self, key_id: str, source: str = CLI_SOURCE) -> None:
        """Let a disabled key authenticate again. NOT_FOUND / CONFLICT as for `disable`."""
        self._set_status(key_id, "active", "key.enabled", source)

    def revoke(self, key_id: str, source: str = CLI_SOURCE) -> None:
        """Revoke a key for good: it authenticates no more and cannot be enabled again."""
        self._set_status(key_id, "revoked", "key.revoked", source)

    def get(self, key_id: str) -> KeyInfo | None:
        found = self.ddb.get_item(
            TableName=self.table,
            Key={"pk": {"S": f"APIKEY#{key_id}"}, "sk": {"S": "KEY"}},
            ConsistentRead=True,
        ).get("Item")
        return KeyInfo.of(found) if found else None

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
