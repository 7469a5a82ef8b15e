"""Per-key limits kept in the jobs table: requests per minute, and jobs running at once.

Requests per minute: one counter item per key and minute (`RATE#<key>`, sk = the minute), bumped
with an atomic ADD and expired by the table's TTL. A request over the limit gets 429 with
`Retry-After` = the seconds left in the minute. (API Gateway usage plans can throttle at the edge
as well once the CDK stack adds them; this count is what gives the exact Retry-After, and it is the
same code locally and deployed.)

Concurrent jobs and GPU tasks: `ACTIVE#<key>` lists the key's unfinished job ids, the GPU task
slots each holds, and a version number. A job holds one slot, except a parallel long avatar, which
holds the slots its tier has left (at least one, at most the `parallel_max_concurrency` setting):
that number becomes its chunk Map's concurrency (JobSource.gpu_slots → Plan.max_concurrency), so
the key's running GPU tasks never exceed its tier's `gpu_tasks`, counted across jobs and chunks.
A job is refused while the key is at its job limit or holds every slot. Admitting a job is one
transaction: the record is created and the list grows, on condition that the version is still the
one read. Two racing submissions cannot both take the last slot, and finished jobs are dropped
from the list whenever it is read, so nothing has to remember to decrement it.

Upload storage: `QUOTA#<key>` holds the bytes of the key's live uploads per UTC day on which they
expire (UploadQuota). Reserving is the same versioned transaction, with the upload's own record
and its entry `UPLOAD#<upload id>` in the key's `QUOTA#<key>` partition: a key's erasure finds every
upload record of the key there, also those whose bytes never arrived (talkstack.pipeline.deletion).
"""

from __future__ import annotations

import math
import time
from typing import Any

from botocore.exceptions import ClientError

from talkstack.api.keys import Principal
from talkstack.contract.record import JobRecord, JobSource
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
    """Creates a job's record only if its key has a free job slot and a free GPU task slot."""

    def __init__(self, table: str, ddb: Any, store: Any) -> None:
        self.table, self.ddb, self.store = table, ddb, store

    def _key(self, principal: Principal) -> dict[str, Any]:
        return {"pk": {"S": f"ACTIVE#{principal.key_id}"}, "sk": {"S": "ACTIVE"}}

    def active(self, principal: Principal) -> tuple[dict[str, int], int | None]:
        """The key's unfinished jobs → the GPU task slots each holds (finished ones dropped), and
        the list's version."""
        item = self.ddb.get_item(TableName=self.table, Key=self._key(principal), ConsistentRead=True).get(
            "Item"
        )
        if not item:
            return {}, None
        listed = [j["S"] for j in item.get("jobs", {}).get("L", [])]
        held = {j: int(n["N"]) for j, n in item.get("slots", {}).get("M", {}).items()}
        records = self.store.get_many(listed)
        # A job listed before slots were recorded holds one.
        live = {j: held.get(j, 1) for j in listed if j in records and not records[j].is_terminal}
        return live, int(item["version"]["N"])

    def admit(
        self, principal: Principal, record: JobRecord, parallel: bool = False, most: int = 1, gpu: bool = True
    ) -> int:
        """Write `record` with the GPU task slots it may use (its `source.gpu_slots`: 1, or for a
        `parallel` job what the tier has left, at most `most`) and take them; the slots given.
        A job that runs no GPU step (`gpu=False`: a composition preview, all lite engines) takes no
        slot and is not refused for the key's GPU tasks, only for its concurrent jobs.
        RATE_LIMITED if the key is at its job limit or holds every GPU slot; CONFLICT if a job with
        this id exists."""
        limits = principal.limits
        for _ in range(ADMISSION_ATTEMPTS):
            live, version = self.active(principal)
            if len(live) >= limits.concurrent_jobs:
                raise rate_limited(
                    f"{len(live)} jobs are still running; the {principal.tier} tier runs "
                    f"{limits.concurrent_jobs} at once",
                    CONCURRENCY_RETRY_AFTER_S,
                    limit="concurrent_jobs",
                    allowed=limits.concurrent_jobs,
                    active=list(live),
                )
            left = limits.gpu_tasks - sum(live.values())
            if gpu and left < 1:
                raise rate_limited(
                    f"the key's running jobs hold all {limits.gpu_tasks} GPU tasks the {principal.tier} "
                    "tier runs at once; retry when one finishes",
                    CONCURRENCY_RETRY_AFTER_S,
                    limit="gpu_tasks",
                    allowed=limits.gpu_tasks,
                    active=list(live),
                )
            slots = (max(1, min(left, most)) if parallel else 1) if gpu else 0
            source = record.source or JobSource(kind="api", api_key_id=principal.key_id)
            if slots:  # (gpu_slots is at least 1: a job without GPU steps leaves it unset)
                record.source = source.model_copy(update={"gpu_slots": slots})
            else:
                record.source = source
            held = {**live, record.job_id: slots}
            slot: dict[str, Any] = {
                "TableName": self.table,
                "Item": {
                    **self._key(principal),
                    "jobs": {"L": [{"S": j} for j in held]},
                    "slots": {"M": {j: {"N": str(n)} for j, n in held.items()}},
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
                return slots
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


DAY_S = 86400


class UploadQuota:
    """Bytes of a key's live uploads, kept as one item `QUOTA#<key>` with a version: a map from the
    UTC day an upload's record expires on to the bytes that expire that day.

    DynamoDB's TTL deletes expired upload records late (up to days) and tells nobody, so nothing
    decrements the count: a day's bytes simply stop counting once that day is over, whenever the
    record goes. An upload thus counts from the moment its URL is issued (or its bytes stored) until
    the end of the day it expires on, between its TTL and a day more — the same rounding S3's
    lifecycle rule applies to the object. It counts even if its URL is never used: the bytes were
    promised. The map has at most TTL-in-days + 1 entries, however many uploads a key makes.
    """

    def __init__(self, table: str, ddb: Any, clock: Any = time.time) -> None:
        self.table, self.ddb, self.clock = table, ddb, clock

    def _key(self, principal: Principal) -> dict[str, Any]:
        return {"pk": {"S": f"QUOTA#{principal.key_id}"}, "sk": {"S": "UPLOADS"}}

    def held(self, principal: Principal) -> tuple[dict[int, int], int | None]:
        """{expiry day: bytes} of the key's uploads that still count, and the item's version."""
        item = self.ddb.get_item(TableName=self.table, Key=self._key(principal), ConsistentRead=True).get(
            "Item"
        )
        if not item:
            return {}, None
        today = int(self.clock() // DAY_S)
        days = {int(d): int(n["N"]) for d, n in item.get("days", {}).get("M", {}).items()}
        return {d: n for d, n in days.items() if d >= today}, int(item["version"]["N"])

    def reserve(
        self, principal: Principal, size: int, quota: int, expires_at: int, upload_item: dict[str, Any]
    ) -> bool:
        """Count `size` bytes until `expires_at` and write the upload's record, in one transaction;
        STORAGE_QUOTA_EXCEEDED (nothing written) if they do not fit. False: an upload with this
        record's key exists already (a retried request): nothing is counted twice."""
        for _ in range(ADMISSION_ATTEMPTS):
            days, version = self.held(principal)
            used = sum(days.values())
            if used + size > quota:
                now = self.clock()
                free_at = (min(days) + 1) * DAY_S if days else now
                raise TalkstackError(
                    ErrorCode.STORAGE_QUOTA_EXCEEDED,
                    f"uploads: {size / 1e6:.1f} MB more does not fit the {principal.tier} tier's "
                    f"{quota / 1e6:.0f} MB quota of live uploads ({used / 1e6:.1f} MB held; uploads "
                    f"count until they expire, {round((expires_at - now) / DAY_S)} days after they are "
                    "made): retry after retry_after_s or send smaller files",
                    quota_bytes=quota,
                    used_bytes=used,
                    requested_bytes=size,
                    retry_after_s=max(1, math.ceil(free_at - now)),
                )
            day = expires_at // DAY_S
            days[day] = days.get(day, 0) + size
            counter: dict[str, Any] = {
                "TableName": self.table,
                "Item": {
                    **self._key(principal),
                    "days": {"M": {str(d): {"N": str(n)} for d, n in days.items()}},
                    "version": {"N": str((version or 0) + 1)},
                    # The item itself goes once nothing in it counts (a key that stopped uploading).
                    "expires_at": {"N": str((max(days) + 2) * DAY_S)},
                },
            }
            if version is None:
                counter["ConditionExpression"] = "attribute_not_exists(pk)"
            else:
                counter["ConditionExpression"] = "version = :v"
                counter["ExpressionAttributeValues"] = {":v": {"N": str(version)}}
            record = {
                "TableName": self.table,
                "Item": upload_item,
                "ConditionExpression": "attribute_not_exists(pk)",
            }
            # The key's index of its upload records (they are keyed by upload id alone), for erasure.
            index = {
                "TableName": self.table,
                "Item": {
                    "pk": self._key(principal)["pk"],
                    "sk": upload_item["pk"],
                    "expires_at": {"N": str(expires_at)},
                },
            }
            try:
                self.ddb.transact_write_items(
                    TransactItems=[{"Put": counter}, {"Put": record}, {"Put": index}]
                )
                return True
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                    return False
                # Another upload of this key changed the count between our read and write: read again.
        raise rate_limited("too many simultaneous uploads for this key; retry", 1)
