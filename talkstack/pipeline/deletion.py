"""Deletion on request: one job (`DELETE /v1/jobs/{id}`, `talkstack jobs delete`) or everything of
one API key (`DELETE /v1/data`, `talkstack data erase`, a GDPR erasure request).

What a job leaves, and where it goes:
  inputs        the uploads it used (`uploads/<key>/<upload id>/…`, their `UPLOAD#` records and
                their entries in the key's upload index), or for an S3 drop its manifest and the
                media beside it; never another key's or another job's: an upload that an
                unfinished job of the same key still uses is kept (listed in the receipt's `kept`),
                since that job reads it while it runs. A finished job no longer needs its inputs,
                so an upload shared with one is removed.
  outputs       what finalize published (video or audio, thumbnail, result.json), only objects that
                carry this job's `talkstack-job-id`
  held          outputs held for review (`held/<job>/` in the work bucket)
  work          the work bucket's `work/<job>/`, `markers/<job>/`, `control/<job>/`
  table         every item of `JOB#<job>` (record, tokens, step results, events, deliveries), the
                job's id in its key's `ACTIVE#` list, and the key's idempotency records that
                answer with it. The record goes last, so a deletion cut short is finished by
                running it again.
What stays: the audit trail (entries name ids, never content, and expire after
`audit_retention_days`), with one `job.deleted` entry: who, when, and how many objects and items of
each kind went. CloudWatch Logs cannot delete single events: log lines that name the job expire
with their log group's retention (`log_retention_days`).

A job that is still queued or running is cancelled first (its workers stopped, its execution
stopped; no `job.cancelled` event is sent for a job being deleted). A job whose execution is still
running its last states (finalize's notification) is refused with CONFLICT and `retry_after_s`: a
notification that ran after the deletion would write the job's timeline again.

A key's erasure deletes every job of the key as above (found through the `by-owner` index, a page
at a time), then the key's uploads, its output folder (`tenants/<key>/`), its partitions (webhook
endpoints and secrets, rate windows, idempotency records, the upload quota, the active-job list)
and, once nothing else is left, the key itself. Within a deadline it returns `complete: false`
with what it did so far; running it again goes on where it stopped (every step is idempotent).
"""

from __future__ import annotations

import posixpath
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import Field

from talkstack.contract.fields import StrictModel
from talkstack.contract.record import JobRecord, UtcDatetime, utc_now
from talkstack.contract.worker import CONTROL_PREFIX, HELD_PREFIX, MARKERS_PREFIX, WORK_PREFIX
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.audit import Actor, AuditLog
from talkstack.pipeline.aws import error_code
from talkstack.pipeline.cancel import cancel_job, execution_arn
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.outputs import JOB_ID_METADATA, possible_output_keys
from talkstack.pipeline.tenancy import TEMPLATES_PREFIX, TENANTS_PREFIX, UPLOADS_PREFIX

JOB_WORK_PREFIXES = (WORK_PREFIX, MARKERS_PREFIX, CONTROL_PREFIX)
KEY_PARTITIONS = ("WEBHOOKS#", "RATE#", "IDEMPOTENCY#", "QUOTA#", "ACTIVE#")
"""The REST API's per-key partitions (`<prefix><key id>`), removed whole by a key's erasure."""
FINISHING_RETRY_S = 2

ObjectKind = Literal["inputs", "uploads", "outputs", "held", "work", "templates"]


class RemovedObject(StrictModel):
    kind: ObjectKind
    bucket: str
    key: str


class JobDeletion(StrictModel):
    """The receipt of a job's deletion: what was removed (object keys, counts), what was kept."""

    job_id: str
    deleted_at: UtcDatetime
    cancelled: bool = False
    """The job was still queued or running, and was cancelled first."""
    objects: list[RemovedObject] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    """Objects per kind (inputs, uploads, outputs, held, work) and `table_items`."""
    kept: list[str] = Field(default_factory=list)
    """What was not removed, and why (an upload an unfinished job still uses; the audit trail)."""


class DataErasure(StrictModel):
    """The receipt of a key's erasure (one call's share of it when `complete` is false)."""

    key_id: str
    erased_at: UtcDatetime
    complete: bool
    """False: the deadline came first, or a job was still finishing; call again to go on."""
    jobs: list[str] = Field(default_factory=list)
    """The jobs deleted by this call."""
    objects: list[RemovedObject] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    """Jobs, objects per kind, `table_items`, `webhooks` (endpoints), `key` (1 once the key is gone)."""
    key_removed: bool = False
    """The key itself is deleted (it authenticates no more) once everything else is gone."""
    kept: list[str] = Field(default_factory=list)


def _not_found(error: ClientError) -> bool:
    return error_code(error) in ("404", "NoSuchKey", "NotFound")


class Deleter:
    """Deletes jobs and keys' data from the stack's buckets and table."""

    def __init__(
        self,
        config: PipelineConfig,
        store: Any,
        s3: Any,
        sfn: Any,
        backends: Any,
        audit: AuditLog,
    ) -> None:
        self.config, self.store, self.s3, self.sfn, self.backends = config, store, s3, sfn, backends
        self.ddb, self.table, self.audit = store.ddb, store.table, audit

    # --- one job ------------------------------------------------------------------------------------

    def delete_job(self, record: JobRecord, actor: Actor) -> JobDeletion:
        """Remove everything of `record`'s job but its audit entries, and add `job.deleted`."""
        receipt = JobDeletion(job_id=record.job_id, deleted_at=utc_now())
        if not record.is_terminal:
            try:
                record, receipt.cancelled = cancel_job(
                    record.job_id,
                    self.config,
                    self.store,
                    self.s3,
                    self.sfn,
                    self.backends,
                    lambda *_: None,  # a job being deleted announces nothing more
                    current=record,
                )
            except TalkstackError as exc:
                # It ended between the caller's read and the cancel: deleted as it is now.
                now = self.store.get(record.job_id)
                if exc.code != ErrorCode.CONFLICT or now is None or not now.is_terminal:
                    raise
                record = now
        self._refuse_if_finishing(record.job_id)
        self._remove_inputs(record, receipt)
        self._remove_outputs(record, receipt)
        for prefix in JOB_WORK_PREFIXES:
            self._remove_prefix(self.config.work_bucket, f"{prefix}{record.job_id}/", "work", receipt.objects)
        self._remove_prefix(
            self.config.work_bucket, f"{HELD_PREFIX}{record.job_id}/", "held", receipt.objects
        )
        items = self._remove_table_items(record)
        receipt.counts = {**Counter(o.kind for o in receipt.objects), "table_items": items}
        receipt.kept.append("the audit trail's entries about this job (ids and actions, no content)")
        self.audit.record(actor, "job.deleted", "job", record.job_id, **receipt.counts)
        return receipt

    def _refuse_if_finishing(self, job_id: str) -> None:
        try:
            status = self.sfn.describe_execution(executionArn=execution_arn(self.config, job_id))["status"]
        except ClientError as exc:
            if error_code(exc) in ("ExecutionDoesNotExist", "InvalidArn"):
                return
            raise
        if status == "RUNNING":
            raise TalkstackError(
                ErrorCode.CONFLICT,
                f"job {job_id} is still sending its final notifications; retry in a few seconds",
                retry_after_s=FINISHING_RETRY_S,
            )

    def _remove_inputs(self, record: JobRecord, receipt: JobDeletion) -> None:
        request, source = record.request, record.source
        if request is None or source is None:
            return
        refs = [(ref.bucket, ref.key) for ref in request.referenced_media().values() if ref.bucket]
        if source.kind == "api" and source.api_key_id:
            in_use = self._uploads_in_use(source.api_key_id, record.job_id)
            for bucket, key in refs:
                upload_id = _upload_id(key, source.api_key_id)
                if bucket != self.config.input_bucket or upload_id is None:
                    continue  # an operator's grant, another bucket: not the key's to delete
                if upload_id in in_use:
                    receipt.kept.append(f"upload {upload_id}: an unfinished job of this key uses it")
                    continue
                prefix = f"{UPLOADS_PREFIX}{source.api_key_id}/{upload_id}/"
                self._remove_prefix(bucket, prefix, "uploads", receipt.objects)
                self._delete_upload_record(source.api_key_id, upload_id)
        elif source.kind == "s3" and source.bucket == self.config.input_bucket and source.key:
            # A drop job's manifest and the media in its folder (never what a grant let it read).
            folder = posixpath.dirname(source.key)
            folder = f"{folder}/" if folder else ""
            keys = {source.key, *(k for b, k in refs if b == source.bucket and k.startswith(folder))}
            for key in sorted(keys):
                if self._delete_object(source.bucket, key):
                    receipt.objects.append(RemovedObject(kind="inputs", bucket=source.bucket, key=key))

    def _uploads_in_use(self, key_id: str, deleting: str) -> set[str]:
        """Upload ids the key's other unfinished jobs read (from its ACTIVE# list: at most its
        tier's concurrent jobs)."""
        item = self.ddb.get_item(
            TableName=self.table,
            Key={"pk": {"S": f"ACTIVE#{key_id}"}, "sk": {"S": "ACTIVE"}},
            ConsistentRead=True,
        ).get("Item")
        listed = [j["S"] for j in (item or {}).get("jobs", {}).get("L", []) if j["S"] != deleting]
        used: set[str] = set()
        for other in self.store.get_many(listed).values():
            if other.is_terminal or other.request is None:
                continue
            for ref in other.request.referenced_media().values():
                if upload_id := _upload_id(ref.key, key_id):
                    used.add(upload_id)
        return used

    def _remove_outputs(self, record: JobRecord, receipt: JobDeletion) -> None:
        request = record.request
        targets: set[tuple[str, str]] = set()
        if request is not None:
            bucket = request.output.bucket or self.config.output_bucket
            targets |= {(bucket, key) for key in possible_output_keys(request, record.job_id)}
        if record.result is not None:
            targets |= {(o.bucket, o.key) for o in record.result.outputs}
        for bucket, key in sorted(targets):
            try:
                head = self.s3.head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if _not_found(exc):
                    continue
                raise
            # Only this job's objects: a shared prefix may hold another job's output at the same key.
            if head.get("Metadata", {}).get(JOB_ID_METADATA) == record.job_id:
                self.s3.delete_object(Bucket=bucket, Key=key)
                receipt.objects.append(RemovedObject(kind="outputs", bucket=bucket, key=key))

    def _remove_table_items(self, record: JobRecord) -> int:
        pk = f"JOB#{record.job_id}"
        removed = 0
        for sk in self._partition_keys(pk):
            if sk != "RECORD":
                removed += self._delete_item(pk, sk)
        key_id = record.source.api_key_id if record.source else None
        if key_id:
            self._drop_active(key_id, record.job_id)
            removed += self._remove_idempotency_records(key_id, record.job_id)
        return removed + self._delete_item(pk, "RECORD")  # last: a re-run finds the job again

    def _drop_active(self, key_id: str, job_id: str) -> None:
        """Take the job out of its key's active-job list (a versioned write, as admission's)."""
        key = {"pk": {"S": f"ACTIVE#{key_id}"}, "sk": {"S": "ACTIVE"}}
        for _ in range(8):
            item = self.ddb.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
            jobs = [j["S"] for j in (item or {}).get("jobs", {}).get("L", [])]
            if item is None or job_id not in jobs:
                return
            slots = {j: n for j, n in item.get("slots", {}).get("M", {}).items() if j != job_id}
            version = int(item["version"]["N"])
            try:
                self.ddb.put_item(
                    TableName=self.table,
                    Item={
                        **key,
                        "jobs": {"L": [{"S": j} for j in jobs if j != job_id]},
                        "slots": {"M": slots},
                        "version": {"N": str(version + 1)},
                    },
                    ConditionExpression="version = :v",
                    ExpressionAttributeValues={":v": {"N": str(version)}},
                )
                return
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
        raise TalkstackError(ErrorCode.CONFLICT, "the key's job list kept changing; retry", retry_after_s=1)

    def _remove_idempotency_records(self, key_id: str, job_id: str) -> int:
        """The key's Idempotency-Key records whose stored answer names the job (they expire after
        24 hours anyway; until then a replay would answer with a deleted job)."""
        pages = self.ddb.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            FilterExpression="contains(#d, :j)",
            ExpressionAttributeNames={"#d": "data"},
            ExpressionAttributeValues={":pk": {"S": f"IDEMPOTENCY#{key_id}"}, ":j": {"S": job_id}},
            ProjectionExpression="pk, sk",
            ConsistentRead=True,
        )
        return sum(self._delete_item(i["pk"]["S"], i["sk"]["S"]) for page in pages for i in page["Items"])

    # --- one key ------------------------------------------------------------------------------------

    def erase_key(self, key_id: str, actor: Actor, deadline: float | None = None) -> DataErasure:
        """Delete everything of `key_id` (see the module docstring); `deadline`: time.monotonic()
        after which no new job is started on (the receipt then says `complete: false`)."""
        receipt = DataErasure(key_id=key_id, erased_at=utc_now(), complete=False)
        counts: Counter[str] = Counter()
        complete = True
        cursor = None
        while True:
            records, cursor = self.store.list_owned(key_id, limit=25, cursor=cursor)
            for listed in records:
                if deadline is not None and time.monotonic() >= deadline:
                    return self._partial(receipt, counts, actor)
                # The by-owner index is eventually consistent, and a DELETE of the job may have run
                # meanwhile: the table's own record decides (gone: nothing left to delete).
                record = self.store.get(listed.job_id)
                if record is None:
                    continue
                try:
                    deleted = self.delete_job(record, actor)
                except TalkstackError as exc:
                    if exc.code != ErrorCode.CONFLICT:
                        raise
                    complete = False
                    receipt.kept.append(f"job {record.job_id}: {exc.message}")
                    continue
                receipt.jobs.append(record.job_id)
                receipt.objects.extend(deleted.objects)
                counts.update(deleted.counts)
                counts["jobs"] += 1
            if cursor is None:
                break
        # The key's own uploads (used or not; their records found through the key's upload index,
        # also those whose bytes never arrived), and anything left in its output folder.
        uploads: list[RemovedObject] = []
        self._remove_prefix(self.config.input_bucket, f"{UPLOADS_PREFIX}{key_id}/", "uploads", uploads)
        indexed = {
            sk.removeprefix("UPLOAD#")
            for sk in self._partition_keys(f"QUOTA#{key_id}")
            if sk.startswith("UPLOAD#")
        }
        for upload_id in sorted(({_upload_id(o.key, key_id) for o in uploads} | indexed) - {None}):
            counts["table_items"] += self._delete_upload_record(key_id, upload_id)
        outputs: list[RemovedObject] = []
        self._remove_prefix(self.config.output_bucket, f"{TENANTS_PREFIX}{key_id}/", "outputs", outputs)
        # The key's own templates (PUT /v1/templates/{id}, or dropped there by an operator).
        own_templates: list[RemovedObject] = []
        self._remove_prefix(
            self.config.input_bucket, f"{TEMPLATES_PREFIX}{key_id}/", "templates", own_templates
        )
        receipt.objects.extend([*uploads, *outputs, *own_templates])
        counts.update(o.kind for o in [*uploads, *outputs, *own_templates])
        for prefix in KEY_PARTITIONS:
            for sk in self._partition_keys(f"{prefix}{key_id}"):
                if prefix == "WEBHOOKS#" and sk.startswith("ENDPOINT#"):
                    counts["webhooks"] += 1
                counts["table_items"] += self._delete_item(f"{prefix}{key_id}", sk)
        if complete:
            counts["key"] = self._delete_item(f"APIKEY#{key_id}", "KEY")
            receipt.key_removed = True
        receipt.kept.append("the audit trail's entries about this key (ids and actions, no content)")
        receipt.complete = complete
        receipt.counts = dict(counts)
        self.audit.record(actor, "data.erased", "key", key_id, complete=complete, **receipt.counts)
        return receipt

    def _partial(self, receipt: DataErasure, counts: Counter[str], actor: Actor) -> DataErasure:
        receipt.counts = dict(counts)
        self.audit.record(actor, "data.erased", "key", receipt.key_id, complete=False, **receipt.counts)
        return receipt

    # --- plumbing -------------------------------------------------------------------------------------

    def _partition_keys(self, pk: str) -> list[str]:
        pages = self.ddb.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            ProjectionExpression="sk",
            ConsistentRead=True,
        )
        return [item["sk"]["S"] for page in pages for item in page["Items"]]

    def _delete_item(self, pk: str, sk: str) -> int:
        """1 if the item was there and is gone, 0 if there was none."""
        answer = self.ddb.delete_item(
            TableName=self.table,
            Key={"pk": {"S": pk}, "sk": {"S": sk}},
            ReturnValues="ALL_OLD",
        )
        return 1 if answer.get("Attributes") else 0

    def _delete_upload_record(self, key_id: str, upload_id: str) -> int:
        """An upload's record and its entry in the key's upload index (talkstack.api.limits)."""
        self._delete_item(f"QUOTA#{key_id}", f"UPLOAD#{upload_id}")
        return self._delete_item(f"UPLOAD#{upload_id}", "UPLOAD")

    def _delete_object(self, bucket: str, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _not_found(exc):
                return False
            raise
        self.s3.delete_object(Bucket=bucket, Key=key)
        return True

    def _remove_prefix(self, bucket: str, prefix: str, kind: ObjectKind, into: list[RemovedObject]) -> None:
        """Delete every object under `prefix` (a page of up to 1000 keys per DeleteObjects)."""
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [obj["Key"] for obj in page.get("Contents", [])]
            if not keys:
                continue
            answer = self.s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
            )
            failed = {error["Key"] for error in answer.get("Errors", [])}
            if failed:
                raise TalkstackError(
                    ErrorCode.GENERATION_FAILED,
                    f"{len(failed)} object(s) under s3://{bucket}/{prefix} could not be deleted; retry",
                )
            into.extend(RemovedObject(kind=kind, bucket=bucket, key=k) for k in keys)


def _upload_id(key: str, key_id: str) -> str | None:
    """The upload id of an object key `uploads/<key id>/<upload id>/<file>` of this key, else None."""
    parts = key.split("/")
    if (
        len(parts) >= 4
        and f"{parts[0]}/" == UPLOADS_PREFIX
        and parts[1] == key_id
        and parts[2].startswith("upl_")
    ):
        return parts[2]
    return None


def object_keys(objects: Iterable[RemovedObject]) -> list[str]:
    """`s3://bucket/key` of each removed object (for printing)."""
    return [f"s3://{o.bucket}/{o.key}" for o in objects]
