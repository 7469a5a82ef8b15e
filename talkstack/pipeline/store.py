"""The jobs table (DynamoDB, one table, partition key `pk` = `JOB#<id>`, sort key `sk`).

Items of one job, all under its partition so `talkstack events JOB` is a single Query:
  RECORD                     the JobRecord (JSON) + status / version for conditional writes
  TOKEN#<attempt_id>         a step attempt's task token (TTL), written by dispatch, read by complete;
                             also the attempt's backend call id, so that a retry or the failure
                             path can stop the call (every chunk has its own attempts)
  CURRENT#<step>             the attempt of a step (`avatar`, `avatar#3`) dispatched last: only its
                             markers may change the step's result or error (a late marker of an
                             abandoned attempt is ignored)
  STEP#<step>                the result of a step's current attempt (temporary output keys, metrics)
  WERR#<step>                the last worker error of a step (Step Functions may drop the cause)
  EVENT#<occurred_at>#<id>   every event sent (the timeline)
  NOTIFIED#<event_id>        notify's claim on an event: once done, a re-sent event is not published again
  DELIVERY#<event_id>#<to>   the webhook delivery report of an event to one target (`request`: the
                             job's webhook, or an endpoint id), first written as a claim

API jobs' RECORD items also carry `owner` (the API key id) and `created_at`, the keys of the
`by-owner` index that lists a key's jobs newest first. The REST API keeps its own items in the same
table under other partitions (talkstack.api.store: keys, uploads, rate windows, active jobs,
idempotency records).

Record updates are optimistic: read, change, write only if `version` is unchanged; a lost race is
retried (tenacity), so progress heartbeats and step transitions never overwrite each other.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic import BaseModel
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from talkstack.contract.events import JobEvent
from talkstack.contract.record import JobError, JobRecord
from talkstack.contract.worker import StepAddress
from talkstack.pipeline.aws import client, error_code
from talkstack.pipeline.jobs_table import OWNER_INDEX

_ser, _de = TypeSerializer(), TypeDeserializer()


M = TypeVar("M", bound=BaseModel)
TokenState = Literal["waiting", "succeeded", "failed", "closed"]


@dataclass(frozen=True)
class AttemptToken:
    """A step attempt's task token (TOKEN#<attempt_id>): which step it serves and whether it is open."""

    token: str
    step: StepAddress
    state: TokenState
    call_id: str | None = None
    """The backend call running the attempt (`modal:fc-…`, `local:…`), once dispatch started it."""

    @property
    def may_be_running(self) -> bool:
        """Whether the attempt's worker may still run: it has a call and has not ended with a marker
        Step Functions took (`closed` may be a heartbeat refused to a worker still rendering)."""
        return self.call_id is not None and self.state in ("waiting", "closed")


class RecordConflict(Exception):
    """Someone else updated the record between our read and our write."""


def iso_key(moment: datetime) -> str:
    """A UTC time as a sortable index key (fixed width: always with microseconds)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def delivery_key(event_id: str, target: str = "request") -> str:
    """The sort key of an event's delivery to one target (`request` or an endpoint id)."""
    return f"DELIVERY#{event_id}#{target}"


def _pk(job_id: str) -> str:
    return f"JOB#{job_id}"


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def _attempt_token(item: dict[str, Any]) -> AttemptToken:
    return AttemptToken(
        token=item["token"],
        step=StepAddress.parse(item["step"]),
        state=item["state"],
        call_id=item.get("call_id"),
    )


class JobStore:
    def __init__(self, table: str, ddb: Any = None, retention_days: int = 0) -> None:
        self.table = table
        self.ddb = ddb or client("dynamodb")
        self.retention_s = retention_days * 86400
        """Each job item expires this long after its last write (DynamoDB TTL on `expires_at`);
        0 keeps them. Items with a shorter life of their own (step tokens) keep theirs."""

    def _expiry(self) -> int | None:
        return int(time.time()) + self.retention_s if self.retention_s else None

    # --- the record -----------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        current = self.get_versioned(job_id)
        return current[0] if current else None

    def get_versioned(self, job_id: str) -> tuple[JobRecord, int] | None:
        found = self._get(job_id, "RECORD")
        if not found:
            return None
        return JobRecord.model_validate_json(found["record"]), int(found["version"])

    def create(self, record: JobRecord) -> bool:
        """Write a new record; False (and nothing written) if the job already exists."""
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item=self.record_item(record, 1),
                ConditionExpression="attribute_not_exists(pk)",
            )
            return True
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise

    @retry(
        retry=retry_if_exception_type(RecordConflict),
        stop=stop_after_attempt(12),
        wait=wait_random_exponential(multiplier=0.02, max=0.5),
        reraise=True,
    )
    def update(self, job_id: str, change: Callable[[JobRecord], Any]) -> JobRecord:
        """Apply `change` to the current record and write it back atomically (optimistic lock)."""
        current = self.get_versioned(job_id)
        if current is None:
            raise KeyError(f"job {job_id} has no record")
        record, version = current
        change(record)
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item=self.record_item(record, version + 1),
                ConditionExpression="version = :v",
                ExpressionAttributeValues={":v": {"N": str(version)}},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise RecordConflict(job_id) from exc
            raise
        return record

    def record_item(self, record: JobRecord, version: int = 1) -> dict[str, Any]:
        """The RECORD item as DynamoDB writes it (for callers that put it in a transaction)."""
        owner = record.source.api_key_id if record.source else None
        return _item(
            {
                "pk": _pk(record.job_id),
                "sk": "RECORD",
                "record": record.model_dump_json(),
                "status": record.status,
                "updated_at": record.updated_at.isoformat(),
                "version": version,
                "owner": owner,
                "created_at": iso_key(record.created_at) if owner else None,
                "expires_at": self._expiry(),
            }
        )

    def get_many(self, job_ids: list[str]) -> dict[str, JobRecord]:
        """Current records of `job_ids` (missing ones are left out), strongly consistent."""
        found: dict[str, JobRecord] = {}
        for start in range(0, len(job_ids), 100):  # BatchGetItem's limit
            keys = [_item({"pk": _pk(j), "sk": "RECORD"}) for j in job_ids[start : start + 100]]
            request = {self.table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                answer = self.ddb.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(self.table, []):
                    record = JobRecord.model_validate_json(_plain(item)["record"])
                    found[record.job_id] = record
                request = answer.get("UnprocessedKeys") or {}
        return found

    def list_owned(
        self,
        owner: str,
        *,
        statuses: frozenset[str] | None = None,
        limit: int = 20,
        cursor: dict[str, Any] | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> tuple[list[JobRecord], dict[str, Any] | None]:
        """One page of `owner`'s jobs, newest first, optionally only those in `statuses` and created
        within [since, until). Returns (records, cursor of the next page or None)."""
        condition, values = "#o = :o", {":o": {"S": owner}}
        if since and until:
            condition += " AND created_at BETWEEN :a AND :b"
            values.update({":a": {"S": since}, ":b": {"S": until}})
        elif since:
            condition += " AND created_at >= :a"
            values[":a"] = {"S": since}
        elif until:
            condition += " AND created_at <= :b"
            values[":b"] = {"S": until}
        query: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": OWNER_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": {"#o": "owner"},
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if statuses:
            names = {f":s{i}": {"S": s} for i, s in enumerate(sorted(statuses))}
            query["FilterExpression"] = f"#s IN ({', '.join(names)})"
            query["ExpressionAttributeNames"]["#s"] = "status"
            values.update(names)
        records: list[JobRecord] = []
        # A filtered page can come back short (DynamoDB filters after reading): keep reading until
        # the page is full or the index is exhausted, so clients never see empty middle pages.
        while True:
            start = {"ExclusiveStartKey": cursor} if cursor else {}
            page = self.ddb.query(**query, Limit=limit - len(records), **start)
            records.extend(JobRecord.model_validate_json(_plain(i)["record"]) for i in page["Items"])
            cursor = page.get("LastEvaluatedKey")
            if cursor is None or len(records) >= limit:
                return records, cursor

    # --- step attempts ----------------------------------------------------------------------------

    def put_token(self, job_id: str, attempt_id: str, step: StepAddress, token: str, ttl_s: int) -> None:
        self._put(
            job_id,
            f"TOKEN#{attempt_id}",
            {"token": token, "step": step.label, "state": "waiting", "expires_at": int(time.time()) + ttl_s},
        )

    def get_token(self, job_id: str, attempt_id: str) -> AttemptToken | None:
        found = self._get(job_id, f"TOKEN#{attempt_id}")
        return _attempt_token(found) if found else None

    def attempt_tokens(self, job_id: str) -> dict[str, AttemptToken]:
        """Every stored attempt of the job (tokens not yet expired), by attempt id."""
        return {
            item["sk"].removeprefix("TOKEN#"): _attempt_token(item) for item in self._query(job_id, "TOKEN#")
        }

    def set_attempt_call(self, job_id: str, attempt_id: str, call_id: str) -> None:
        """Remember which backend call runs the attempt (on its TOKEN item: one per attempt)."""
        self.ddb.update_item(
            TableName=self.table,
            Key=_item({"pk": _pk(job_id), "sk": f"TOKEN#{attempt_id}"}),
            UpdateExpression="SET call_id = :c",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":c": {"S": call_id}},
        )

    def set_token_state(self, job_id: str, attempt_id: str, state: TokenState) -> None:
        self.ddb.update_item(
            TableName=self.table,
            Key=_item({"pk": _pk(job_id), "sk": f"TOKEN#{attempt_id}"}),
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":s": {"S": state}},
        )

    def put_current_attempt(
        self, job_id: str, address: StepAddress, attempt_id: str, number: int
    ) -> tuple[bool, str | None]:
        """Make `attempt_id` (attempt `number` of `address`) the one whose markers count. Returns
        (whether it is now current, the attempt it replaced if another): (False, None), and nothing
        written, if a later attempt is current already (a dispatch that ran late)."""
        try:
            answer = self.ddb.put_item(
                TableName=self.table,
                Item=_item(
                    {
                        "pk": _pk(job_id),
                        "sk": f"CURRENT#{address.label}",
                        "attempt": attempt_id,
                        "number": number,
                        "expires_at": self._expiry(),
                    }
                ),
                ConditionExpression="attribute_not_exists(pk) OR #n <= :n",
                ExpressionAttributeNames={"#n": "number"},
                ExpressionAttributeValues={":n": {"N": str(number)}},
                ReturnValues="ALL_OLD",  # the replaced attempt, read in the same write
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False, None
            raise
        replaced = _plain(answer.get("Attributes") or {}).get("attempt")
        return True, replaced if replaced != attempt_id else None

    def current_attempt(self, job_id: str, address: StepAddress) -> str | None:
        found = self._get(job_id, f"CURRENT#{address.label}")
        return found["attempt"] if found else None

    def put_attempt_result(
        self, job_id: str, address: StepAddress, attempt_id: str, name: StepAddress | str, result: BaseModel
    ) -> bool:
        """put_step_result, only while `attempt_id` is the current attempt of `address` (one
        transaction: the check and the write cannot be split by a new dispatch). False, and nothing
        written, for a superseded attempt."""
        return self._put_if_current(
            job_id, address, attempt_id, f"STEP#{name}", {"result": result.model_dump_json()}
        )

    def put_attempt_error(
        self, job_id: str, address: StepAddress, attempt_id: str, error: JobError, retryable: bool
    ) -> bool:
        """put_worker_error, only while `attempt_id` is the current attempt of `address`."""
        values = {"error": error.model_dump_json(), "retryable": retryable}
        return self._put_if_current(job_id, address, attempt_id, f"WERR#{address.label}", values)

    def _put_if_current(
        self, job_id: str, address: StepAddress, attempt_id: str, sk: str, values: dict[str, Any]
    ) -> bool:
        item = {"pk": _pk(job_id), "sk": sk, "expires_at": self._expiry(), **values}
        check = {
            "TableName": self.table,
            "Key": _item({"pk": _pk(job_id), "sk": f"CURRENT#{address.label}"}),
            # No CURRENT item: an attempt dispatched by a version that did not record one (a job in
            # flight across the deploy) is taken as current, as it was then.
            "ConditionExpression": "attribute_not_exists(pk) OR attempt = :a",
            "ExpressionAttributeValues": {":a": {"S": attempt_id}},
        }
        put = {"TableName": self.table, "Item": _item(item)}
        try:
            self.ddb.transact_write_items(TransactItems=[{"ConditionCheck": check}, {"Put": put}])
            return True
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if error_code(exc) == "TransactionCanceledException" and any(
                reason.get("Code") == "ConditionalCheckFailed" for reason in reasons
            ):
                return False
            raise  # a conflicting transaction, throttling: the caller's retry runs it again

    def put_step_result(self, job_id: str, name: StepAddress | str, result: BaseModel) -> None:
        """What a step leaves for the steps after it (`name`: a worker step's address, or `plan`,
        `segment`), stored as the model's JSON and read back as the same model."""
        self._put(job_id, f"STEP#{name}", {"result": result.model_dump_json()})

    def get_step_result(self, job_id: str, name: StepAddress | str, model: type[M]) -> M | None:
        found = self._get(job_id, f"STEP#{name}")
        return model.model_validate_json(found["result"]) if found else None

    def put_worker_error(
        self, job_id: str, step: StepAddress | str, error: JobError, retryable: bool
    ) -> None:
        self._put(job_id, f"WERR#{step}", {"error": error.model_dump_json(), "retryable": retryable})

    def get_worker_error(self, job_id: str, step: StepAddress | str) -> JobError | None:
        found = self._get(job_id, f"WERR#{step}")
        return JobError.model_validate_json(found["error"]) if found else None

    def chunk_worker_error(self, job_id: str, step: str) -> JobError | None:
        """The error a chunk of `step` stored (`WERR#avatar#3`): a fatal one before a retryable one,
        and never the stale error of a chunk whose retry then rendered (it left a `STEP#` result)."""
        found = self._query(job_id, f"WERR#{step}#")
        rendered = {item["sk"].removeprefix("STEP#") for item in self._query(job_id, f"STEP#{step}#")}
        found = [item for item in found if item["sk"].removeprefix("WERR#") not in rendered] or found
        found.sort(key=lambda item: bool(item.get("retryable")))
        return JobError.model_validate_json(found[0]["error"]) if found else None

    # --- events and deliveries ----------------------------------------------------------------------

    def add_event(self, event: JobEvent) -> None:
        sk = f"EVENT#{event.occurred_at.isoformat()}#{event.event_id}"
        self._put(event.job_id, sk, {"event": event.model_dump_json(), "type": event.type})

    def events(self, job_id: str) -> list[JobEvent]:
        return [JobEvent.model_validate_json(item["event"]) for item in self._query(job_id, "EVENT#")]

    def claim(self, job_id: str, sk: str, lease_s: int) -> str | None:
        """Take the item `sk` for this invocation: a claim id to `release` it with, or None if it is
        done, or held by another invocation whose lease has not run out (a concurrent duplicate). A
        lease outlives the work it guards, so an invocation that died without releasing (killed) is
        taken over by the first retry after its lease, never by a live twin."""
        now = int(time.time())
        claim_id = uuid.uuid4().hex
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item=_item(
                    {
                        "pk": _pk(job_id),
                        "sk": sk,
                        "claim": claim_id,
                        "claimed_until": now + lease_s,
                        "expires_at": self._expiry(),
                    }
                ),
                ConditionExpression="attribute_not_exists(pk) OR "
                "(attribute_not_exists(done) AND claimed_until < :now)",
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
            return claim_id
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise

    def is_done(self, job_id: str, sk: str) -> bool:
        found = self._get(job_id, sk)
        return bool(found and found.get("done"))

    def release(self, job_id: str, sk: str, claim_id: str) -> None:
        """Give up an unfinished claim at once (the work failed), so a retry can take it without
        waiting for the lease; a settled item, or a claim taken over since, is left alone."""
        try:
            self.ddb.delete_item(
                TableName=self.table,
                Key=_item({"pk": _pk(job_id), "sk": sk}),
                ConditionExpression="attribute_not_exists(done) AND #c = :c",
                ExpressionAttributeNames={"#c": "claim"},
                ExpressionAttributeValues={":c": {"S": claim_id}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def settle(self, job_id: str, sk: str, values: dict[str, Any] | None = None) -> None:
        """Mark a claimed item done (for good), with what it produced."""
        self._put(job_id, sk, {"done": True, **(values or {})})

    def add_delivery(
        self, job_id: str, event_id: str, report: dict[str, Any], target: str = "request"
    ) -> None:
        self.settle(job_id, delivery_key(event_id, target), {"report": json.dumps(report)})

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """Saved delivery reports (claims still in progress have none yet)."""
        return [json.loads(item["report"]) for item in self._query(job_id, "DELIVERY#") if "report" in item]

    # --- plumbing -----------------------------------------------------------------------------------

    def _put(self, job_id: str, sk: str, values: dict[str, Any]) -> None:
        item = {"pk": _pk(job_id), "sk": sk, "expires_at": self._expiry(), **values}
        self.ddb.put_item(TableName=self.table, Item=_item(item))

    def _get(self, job_id: str, sk: str) -> dict[str, Any] | None:
        found = self.ddb.get_item(
            TableName=self.table, Key=_item({"pk": _pk(job_id), "sk": sk}), ConsistentRead=True
        )
        return _plain(found["Item"]) if "Item" in found else None

    def _query(self, job_id: str, prefix: str) -> list[dict[str, Any]]:
        paginator = self.ddb.get_paginator("query")
        items: list[dict[str, Any]] = []
        for page in paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
            ExpressionAttributeValues={":pk": {"S": _pk(job_id)}, ":p": {"S": prefix}},
            ConsistentRead=True,
        ):
            items.extend(_plain(item) for item in page["Items"])
        return items
