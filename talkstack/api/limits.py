"""Per-key limits kept in the jobs table: requests per minute, and jobs running at once.

Requests per minute: one counter item per key and minute (`RATE#<key>`, sk = the minute), bumped
with an atomic ADD and expired by the table's TTL. A request over the limit gets 429 with
`Retry-After` = the seconds left in the minute. (API Gateway usage plans can throttle at the edge
as well once the CDK stack adds them; this count is what gives the exact Retry-After, and it is the
same code locally and deployed.)

Concurrent jobs: `ACTIVE#<key>` lists the key's unfinished job ids with a version number. Admitting
a job is one transaction: the record is created and the list grows, on condition that the version
is still the one read. Two racing submissions cannot both take the last slot, and finished jobs
are dropped from the list whenever it is read, so nothing has to remember to decrement it.
"""

from __future__ import annotations

import math
import time
from typing import Any

from botocore.exceptions import ClientError

from talkstack.api.keys import Principal
from talkstack.contract.record import JobRecord
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.aws import error_code

ADMISSION_ATTEMPTS = 8
CONCURRENCY_RETRY_AFTER_S = 10


def rate_limited(message: str, retry_after_s: int, **details: Any) -> TalkstackError:
    return TalkstackError(ErrorCode.RATE_LIMITED, message, retry_after_s=max(1, retry_after_s), **details)


class RateLimiter:
    def __init__(self, table: str, ddb: Any, clock: Any = time.time) -> None:
        self.table, self.ddb, self.clock = table, ddb, clock

    def hit(self, principal: Principal) -> None:
        """Count one request; RATE_LIMITED (with retry_after_s) once the minute's budget is spent."""
        now = self.clock()
        minute = int(now // 60)
        answer = self.ddb.update_item(
            TableName=self.table,
            Key={"pk": {"S": f"RATE#{principal.key_id}"}, "sk": {"S": str(minute)}},
            UpdateExpression="ADD requests :one SET expires_at = :exp",
            ExpressionAttributeValues={":one": {"N": "1"}, ":exp": {"N": str((minute + 2) * 60)}},
            ReturnValues="UPDATED_NEW",
        )
        count = int(answer["Attributes"]["requests"]["N"])
        limit = principal.limits.requests_per_minute
        if count > limit:
            raise rate_limited(
                f"more than {limit} requests per minute for the {principal.tier} tier",
                math.ceil((minute + 1) * 60 - now),
                limit="requests_per_minute",
                allowed=limit,
            )


class Admission:
    """Creates a job's record only if its key has a free job slot."""

    def __init__(self, table: str, ddb: Any, store: Any) -> None:
        self.table, self.ddb, self.store = table, ddb, store

    def _key(self, principal: Principal) -> dict[str, Any]:
        return {"pk": {"S": f"ACTIVE#{principal.key_id}"}, "sk": {"S": "ACTIVE"}}

    def active(self, principal: Principal) -> tuple[list[str], int | None]:
        """The key's unfinished job ids (finished ones dropped) and the list's version."""
        item = self.ddb.get_item(TableName=self.table, Key=self._key(principal), ConsistentRead=True).get(
            "Item"
        )
        if not item:
            return [], None
        listed = [j["S"] for j in item.get("jobs", {}).get("L", [])]
        records = self.store.get_many(listed)
        live = [j for j in listed if j in records and not records[j].is_terminal]
        return live, int(item["version"]["N"])

    def admit(self, principal: Principal, record: JobRecord) -> None:
        """Write `record` and take a slot, or RATE_LIMITED if all slots are taken; CONFLICT if a
        job with this id exists."""
        limit = principal.limits.concurrent_jobs
        for _ in range(ADMISSION_ATTEMPTS):
            live, version = self.active(principal)
            if len(live) >= limit:
                raise rate_limited(
                    f"{len(live)} jobs are still running; the {principal.tier} tier runs {limit} at once",
                    CONCURRENCY_RETRY_AFTER_S,
                    limit="concurrent_jobs",
                    allowed=limit,
                    active=live,
                )
            slot: dict[str, Any] = {
                "TableName": self.table,
                "Item": {
                    **self._key(principal),
                    "jobs": {"L": [{"S": j} for j in [*live, record.job_id]]},
                    "version": {"N": str((version or 0) + 1)},
                },
            }
            if version is None:
                slot["ConditionExpression"] = "attribute_not_exists(pk)"
            else:
                slot["ConditionExpression"] = "version = :v"
                slot["ExpressionAttributeValues"] = {":v": {"N": str(version)}}
            create = {
                "TableName": self.table,
                "Item": self.store.record_item(record),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
            try:
                self.ddb.transact_write_items(TransactItems=[{"Put": slot}, {"Put": create}])
                return
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                    raise TalkstackError(
                        ErrorCode.CONFLICT, f"a job with id {record.job_id!r} already exists"
                    ) from exc
                # Someone else changed the slot list between our read and write: read again.
        raise rate_limited("too many simultaneous submissions for this key; retry", 1)
