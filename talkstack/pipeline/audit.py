"""The audit trail: an append-only log of who did what, kept in the jobs table and exported daily.

Each entry is written twice, in one DynamoDB transaction, and never updated:
  AUDIT#<key id>       / <time>#<entry id>   a key's own trail: `GET /v1/audit` is one Query in time order
  AUDITDAY#<yyyy-mm-dd>#<shard> / <time>#<entry id>  the day's entries, in 16 shards: the daily
                                             export is 16 Queries merged, not a Scan
Both puts are conditional (`attribute_not_exists`), so an entry can never overwrite another. Neither
item carries `owner`, so audit entries never show up in the `by-owner` index (job lists, usage).
Entries expire `audit_retention_days` after they are written (DynamoDB TTL on `expires_at`).

Who: `key_id` is the API key the action was done by or to (a key's creation, disabling, enabling
and revocation sit in that key's own trail); `source_ip` is API Gateway's
`requestContext.identity.sourceIp` for HTTP requests, `cli` for the operator's command line,
`pipeline` for the state machine's handlers, and
S3-drop jobs are logged under `drop:<folder>` (their manifest folder under `inputs/`).

Failure policy (fail closed): `record` raises when the entry cannot be written, and callers write
the entry *before* they hand anything out (a job execution, an upload URL, download URLs) or in the
same transaction as the change (keys), so nothing security-relevant happens unlogged. Cancelling
is logged after the cancel took effect (an entry must not claim a cancel that was refused); if that
write fails the caller gets a 500, the job stays cancelled and the entry is in the error log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import json
import logging
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, get_args

from botocore.exceptions import ClientError
from pydantic import Field

from talkstack.contract.fields import StrictModel
from talkstack.contract.record import UtcDatetime, utc_now
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.settings.retention import AUDIT_RETENTION_DAYS

log = logging.getLogger(__name__)

AuditAction = Literal[
    "key.created",
    "key.revoked",
    "key.disabled",
    "key.enabled",
    "job.submitted",
    "job.refused",
    "job.cancelled",
    "job.deleted",
    "data.erased",
    "consent.attested",
    "upload.created",
    "output.url_issued",
    "webhook.created",
    "webhook.rotated",
    "webhook.deleted",
    "webhook.secret_read",
    "moderation.released",
    "moderation.deleted",
]
AUDIT_ACTIONS: tuple[str, ...] = get_args(AuditAction)
ObjectType = Literal["key", "job", "upload", "webhook"]

CLI_SOURCE = "cli"
"""`source_ip` of actions done on the operator's command line (`talkstack keys …`)."""
PIPELINE_SOURCE = "pipeline"
"""`source_ip` of actions done by the pipeline's own handlers (S3-drop jobs)."""
DROP_ACTOR = "drop:"
"""`key_id` prefix of S3-drop jobs: `drop:<folder under inputs/>` (API key ids have no colon)."""
DEFAULT_AUDIT_RETENTION_DAYS = AUDIT_RETENTION_DAYS
"""The default of PipelineConfig.audit_retention_days, also used where no configuration is loaded
(the CLI writing `key.created`)."""
EXPORT_PREFIX = "audit/"

KEY_PARTITION = "AUDIT#"
DAY_PARTITION = "AUDITDAY#"
DAY_SHARDS = 16
"""The day's entries are spread over `AUDITDAY#<day>#<0..15>` (by entry id): one partition for every
tenant's actions of a day would throttle near 250 audited actions a second stack-wide, and audit
writes fail closed, so a hot day partition would turn into errors for every tenant."""


def day_shard(day: str, entry: AuditEntry) -> str:
    """`<yyyy-mm-dd>#<shard>`: the day partition suffix an entry is written under."""
    number = int(hashlib.sha256(entry.entry_id.encode()).hexdigest(), 16) % DAY_SHARDS
    return f"{day}#{number}"


class AuditObject(StrictModel):
    type: ObjectType
    id: str


class AuditEntry(StrictModel):
    """One thing that happened: who (key id, source IP, request id), what (action, object), when."""

    entry_id: str
    time: UtcDatetime
    key_id: str
    """The API key that did it (or, for the key.* actions, the key it was done to);
    `drop:<folder>` for S3-drop jobs."""
    action: AuditAction
    object: AuditObject
    source_ip: str
    """The caller's IP as API Gateway saw it, or `cli` / `pipeline` for actors outside HTTP."""
    request_id: str | None = None
    """API Gateway's request id (for the access logs), when the action came over HTTP."""
    details: dict[str, Any] = Field(default_factory=dict)
    """What else identifies the action (never secrets, media or texts)."""


@dataclass(frozen=True)
class Actor:
    """Who an entry is about and where the action came from."""

    key_id: str
    source_ip: str
    request_id: str | None = None


def audit_unavailable(exc: Exception) -> TalkstackError:
    return TalkstackError(
        ErrorCode.GENERATION_FAILED,
        f"the audit trail could not be written ({type(exc).__name__}), so nothing was done; retry shortly",
    )


def iso_key(moment: datetime) -> str:
    """A UTC time as a sortable key (fixed width; the same form as store.iso_key, repeated so the
    API's models can import this module without the pipeline's AWS clients)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _sort_key(entry: AuditEntry) -> str:
    return f"{iso_key(entry.time)}#{entry.entry_id}"


def export_key(day: date) -> str:
    """Where a day's entries go: `audit/<yyyy>/<mm>/<dd>.jsonl`."""
    return f"{EXPORT_PREFIX}{day:%Y/%m/%d}.jsonl"


class AuditLog:
    def __init__(self, table: str, ddb: Any, retention_days: int = DEFAULT_AUDIT_RETENTION_DAYS) -> None:
        self.table, self.ddb = table, ddb
        self.retention_s = retention_days * 86400
        """Entries expire this long after they are written; 0 keeps them."""

    # --- writing -------------------------------------------------------------------------------

    def entry(
        self, actor: Actor, action: AuditAction, object_type: ObjectType, object_id: str, **details: Any
    ) -> AuditEntry:
        return AuditEntry(
            entry_id="aud_" + secrets.token_hex(8),
            time=utc_now(),
            key_id=actor.key_id,
            action=action,
            object=AuditObject(type=object_type, id=object_id),
            source_ip=actor.source_ip,
            request_id=actor.request_id,
            details=json.loads(json.dumps(details, default=str)),
        )

    def puts(self, entry: AuditEntry) -> list[dict[str, Any]]:
        """The entry's two conditional puts, as TransactWriteItems items: for a caller that writes
        the entry in the same transaction as the change it records (KeyStore)."""
        document = entry.model_dump_json()
        common: dict[str, Any] = {
            "sk": {"S": _sort_key(entry)},
            "entry": {"S": document},
            "action": {"S": entry.action},
        }
        if self.retention_s:
            common["expires_at"] = {"N": str(int(time.time()) + self.retention_s)}
        day = entry.time.astimezone(UTC).date().isoformat()
        return [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {"pk": {"S": f"{partition}{suffix}"}, **common},
                    "ConditionExpression": "attribute_not_exists(pk)",  # append-only
                }
            }
            for partition, suffix in ((KEY_PARTITION, entry.key_id), (DAY_PARTITION, day_shard(day, entry)))
        ]

    def record(
        self, actor: Actor, action: AuditAction, object_type: ObjectType, object_id: str, **details: Any
    ) -> AuditEntry:
        """Append one entry, or raise (GENERATION_FAILED, a 500): callers must not go on unlogged.

        For the webhook endpoints (`/v1/webhooks`), call it before answering, e.g.
        `audit.record(actor, "webhook.created", "webhook", endpoint_id, url=url_without_query)`;
        likewise `webhook.rotated` and `webhook.deleted`. Leave secrets and URL query strings out."""
        entry = self.entry(actor, action, object_type, object_id, **details)
        try:
            self.ddb.transact_write_items(TransactItems=self.puts(entry))
        except ClientError as exc:
            log.error("audit entry NOT written: %s", entry.model_dump_json())
            raise audit_unavailable(exc) from exc
        return entry

    # --- reading -------------------------------------------------------------------------------

    def trail(
        self,
        key_id: str,
        *,
        actions: frozenset[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
        newest_first: bool = True,
        cursor: Mapping[str, Any] | None = None,
    ) -> tuple[list[AuditEntry], dict[str, Any] | None]:
        """One page of a key's entries within [start, end), optionally only `actions`. Returns
        (entries, the key to start the next page after, or None)."""
        condition, values = "pk = :pk", {":pk": {"S": f"{KEY_PARTITION}{key_id}"}}
        # Sort keys are `<time>#<id>`: `<time>` alone sorts before every entry of that instant.
        low = iso_key(start) if start else None
        high = iso_key(end) if end else None
        if low and high:
            condition += " AND sk BETWEEN :a AND :b"
            values.update({":a": {"S": low}, ":b": {"S": high}})
        elif low:
            condition += " AND sk >= :a"
            values[":a"] = {"S": low}
        elif high:
            condition += " AND sk < :b"
            values[":b"] = {"S": high}
        query: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not newest_first,
            "ConsistentRead": True,
        }
        if actions:
            names = {f":x{i}": {"S": a} for i, a in enumerate(sorted(actions))}
            query["FilterExpression"] = f"#a IN ({', '.join(names)})"
            query["ExpressionAttributeNames"] = {"#a": "action"}
            values.update(names)
        entries: list[AuditEntry] = []
        next_key: dict[str, Any] | None = dict(cursor) if cursor else None
        # A filtered page can come back short: read on until it is full or the trail ends.
        while True:
            start_at = {"ExclusiveStartKey": next_key} if next_key else {}
            page = self.ddb.query(**query, Limit=limit - len(entries), **start_at)
            entries.extend(AuditEntry.model_validate_json(i["entry"]["S"]) for i in page["Items"])
            next_key = page.get("LastEvaluatedKey")
            if next_key is None or len(entries) >= limit:
                return entries, next_key

    def day(self, day: date) -> Iterator[AuditEntry]:
        """Every entry written on `day` (UTC), oldest first: the day's shards, merged by sort key."""
        paginator = self.ddb.get_paginator("query")

        def shard(number: int) -> Iterator[tuple[str, str]]:
            for page in paginator.paginate(
                TableName=self.table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": f"{DAY_PARTITION}{day.isoformat()}#{number}"}},
                ConsistentRead=True,
            ):
                for item in page["Items"]:
                    yield item["sk"]["S"], item["entry"]["S"]

        for _, document in heapq.merge(*(shard(n) for n in range(DAY_SHARDS))):
            yield AuditEntry.model_validate_json(document)

    # --- the daily export ------------------------------------------------------------------------

    def export_day(self, s3: Any, bucket: str, day: date) -> tuple[str, int]:
        """Write `day`'s entries as JSON Lines to `s3://bucket/audit/<yyyy>/<mm>/<dd>.jsonl`;
        returns (key, entries). Idempotent: the same day gives the same object (an empty file for
        a day without entries, so a missing file means a missed export, not a quiet day)."""
        lines = [entry.model_dump_json() + "\n" for entry in self.day(day)]
        key = export_key(day)
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body="".join(lines).encode(),
            ContentType="application/x-ndjson",
        )
        return key, len(lines)


def export_day_for(event: Mapping[str, Any], now: datetime | None = None) -> date:
    """The day an export run covers: `{"day": "yyyy-mm-dd"}` if given (a manual run), else the day
    before the scheduled event's `time` (EventBridge), else yesterday."""
    if event.get("day"):
        try:
            return date.fromisoformat(str(event["day"]))
        except ValueError as exc:
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST, f"day: expected yyyy-mm-dd, got {event['day']!r:.40}"
            ) from exc
    moment = now or utc_now()
    if event.get("time"):
        moment = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
    return moment.astimezone(UTC).date() - timedelta(days=1)


# --- cursors ----------------------------------------------------------------------------------------


def encode_audit_cursor(key: Mapping[str, Any] | None) -> str | None:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode() if key else None


def decode_audit_cursor(cursor: str | None, key_id: str) -> dict[str, Any] | None:
    """A `next_cursor` back into a start key; refused unless it is from this key's own trail."""
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if (
            not isinstance(key, dict)
            or set(key) != {"pk", "sk"}
            or key["pk"] != {"S": f"{KEY_PARTITION}{key_id}"}
            or not isinstance(key["sk"], dict)
            or not isinstance(key["sk"].get("S"), str)
        ):
            raise ValueError("not this key's cursor")
        return key
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST, "cursor: not a cursor from a previous page of this trail"
        ) from exc
