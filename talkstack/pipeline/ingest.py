"""Ingest: a manifest landed under the input prefix → start the job's execution (once).

The execution name is derived from the object (or is the manifest's own job_id), so duplicate
deliveries — S3 delivers at least once, and a multipart upload emits two events — start one
execution: Step Functions answers the second StartExecution with the first execution (same input)
or ExecutionAlreadyExists. The ETag comes from the GetObject that read the manifest, not from the
event, so both events of one upload agree even if their event ETags differ.

Validation happens in the state machine (the same for every entry point). What cannot even become
an execution input — bytes that are not JSON, an unreadable object — still gets a failed job record
and a job.failed event, and goes to the dead-letter queue with its reason.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from talkstack.contract.fields import MAX_REQUEST_BYTES
from talkstack.contract.parse import load_request_json
from talkstack.contract.record import JobError, JobRecord, JobSource
from talkstack.contract.state import execution_input
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.audit import DROP_ACTOR, PIPELINE_SOURCE, Actor, AuditLog
from talkstack.pipeline.aws import error_code
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.jobids import job_id_for_object, manifest_job_name

log = logging.getLogger(__name__)
JOB_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,80}")  # the JobId rule, which is also the execution-name rule


@dataclass(frozen=True)
class IngestOutcome:
    job_id: str | None
    action: str
    """started | duplicate | rejected | ignored"""
    reason: str | None = None


class Ingestor:
    def __init__(
        self,
        config: PipelineConfig,
        store: Any,
        s3: Any,
        sfn: Any,
        sqs: Any,
        emit: Any,
        audit: AuditLog | None = None,
    ) -> None:
        self.config, self.store, self.s3, self.sfn, self.sqs, self.emit = config, store, s3, sfn, sqs, emit
        self.audit = audit
        """Where a started drop job is logged (`job.submitted` by `drop:<folder>`), if anywhere."""

    def handle(self, bucket: str, key: str) -> IngestOutcome:
        """One S3 object (key already URL-decoded)."""
        if bucket != self.config.input_bucket or not key.endswith("/" + self.config.manifest_name):
            return IngestOutcome(None, "ignored", "not a manifest under the input prefix")
        try:
            name = manifest_job_name(key, self.config.input_prefix, self.config.manifest_name)
        except TalkstackError as exc:
            return IngestOutcome(None, "ignored", exc.message)
        try:
            obj = self.s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                # Deleted before we read it: nothing to run, nothing lost; say so in the DLQ.
                self._dead_letter(bucket, key, None, "manifest disappeared before it could be read")
                return IngestOutcome(None, "ignored", "manifest no longer exists")
            raise
        etag = obj.get("ETag", "").strip('"')
        job_id = job_id_for_object(bucket, key, etag, name, obj.get("VersionId"))
        source = JobSource(kind="s3", bucket=bucket, key=key, etag=etag)
        size = int(obj.get("ContentLength", 0))
        if size > MAX_REQUEST_BYTES:
            obj["Body"].close()
            return self._reject(job_id, source, f"request: larger than {MAX_REQUEST_BYTES // 1024} KiB", size)
        body = obj["Body"].read()
        try:
            raw = load_request_json(body)
        except TalkstackError as exc:
            return self._reject(job_id, source, exc.message, size)
        chosen = raw.get("job_id") if isinstance(raw, dict) else None
        if chosen is not None:
            if not isinstance(chosen, str) or not JOB_ID_RE.fullmatch(chosen):
                message = f"job_id: must be 1-80 characters of A-Z, a-z, 0-9, '_' or '-' (got {chosen!r:.90})"
                return self._reject(job_id, source, message, size)
            job_id = chosen  # the client chose the id (it becomes the execution name)
        payload = execution_input(raw, source)
        return self._start(job_id, payload, name)

    def _start(self, job_id: str, payload: dict[str, Any], folder: str = "") -> IngestOutcome:
        # A redelivery finds the execution already there. (StartExecution alone would not say so:
        # with the same name and input it returns the running execution as if it had started it.)
        if self._execution_exists(job_id):
            return IngestOutcome(job_id, "duplicate", "an execution with this name already exists")
        if self.audit is not None:
            # Before the start (fail closed): if the entry cannot be written, the handler fails and
            # Lambda retries the drop, then parks it in the dead-letter queue.
            drop = Actor(f"{DROP_ACTOR}{folder}", PIPELINE_SOURCE)
            self.audit.record(drop, "job.submitted", "job", job_id)
        try:
            self.sfn.start_execution(
                stateMachineArn=self.config.state_machine_arn,
                name=job_id,
                input=json.dumps(payload, sort_keys=True, separators=(",", ":")),
            )
        except ClientError as exc:
            code = error_code(exc)
            if code == "ExecutionAlreadyExists":
                return IngestOutcome(job_id, "duplicate", "an execution with this name already exists")
            raise
        return IngestOutcome(job_id, "started")

    def _execution_exists(self, job_id: str) -> bool:
        arn = self.config.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{job_id}"
        try:
            self.sfn.describe_execution(executionArn=arn)
            return True
        except ClientError as exc:
            if error_code(exc) in ("ExecutionDoesNotExist", "InvalidArn"):
                return False
            raise

    def _reject(self, job_id: str, source: JobSource, message: str, size: int) -> IngestOutcome:
        error = JobError(code=ErrorCode.INVALID_REQUEST, message=message, step="validate")
        record = JobRecord.new_rejected(job_id, error, source=source)
        if self.store.create(record):
            self.emit(record, "job.failed")
        self._dead_letter(source.bucket or "", source.key or "", job_id, message, size=size)
        return IngestOutcome(job_id, "rejected", message)

    def _dead_letter(self, bucket: str, key: str, job_id: str | None, reason: str, **extra: Any) -> None:
        body = {"bucket": bucket, "key": key, "job_id": job_id, "reason": reason, **extra}
        self.sqs.send_message(
            QueueUrl=self.config.ingest_dlq_url,
            MessageBody=json.dumps(body),
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:256]}},
        )
        log.warning("ingest dead letter: %s", body)
