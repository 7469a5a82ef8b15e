"""An operator's review of held jobs: list them, release (publish) or delete their outputs.

A job whose output scan flagged its output (or did not scan it, under the `hold` policy) ends
`held`: finalize copied its outputs to `held/<job_id>/` in the work bucket and published nothing.

- **release** publishes them with finalize's own `publish_outputs` (the same write conditions and
  job-id metadata), writes result.json, turns the record completed, removes the held copies,
  announces `job.completed` (SNS and webhooks, through the notify Lambda) and writes the audit
  entry `moderation.released` naming the operator.
- **delete** removes the held copies and fails the job with CONTENT_REFUSED (the scan's category),
  announces `job.failed`, and writes `moderation.deleted`.

The audit entry is written first (fail closed: an action that cannot be logged is not done). These
are operator functions (`talkstack moderation …`), run with the operator's AWS credentials against
the local stack or a deployed one; no Lambda calls them. Listing is a table Scan for that reason
(cli/key_listing.py has the same precedent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from talkstack.contract.events import JobEvent
from talkstack.contract.record import JobError, JobRecord
from talkstack.contract.worker import OutputObject, held_role
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.audit import CLI_SOURCE, DROP_ACTOR, Actor, AuditLog
from talkstack.pipeline.aws import error_code
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.finalize import publish_outputs
from talkstack.pipeline.outputs import check_targets, final_key, remove_held, write_result_json
from talkstack.pipeline.provenance import signed_key

Announce = Callable[[JobEvent], None]


class NotHeld(Exception):
    """The record is no longer held (released or deleted by another operator meanwhile)."""


def owner_of(record: JobRecord, config: PipelineConfig) -> str:
    """The audit trail the entry belongs in: the API key's, or the drop folder's."""
    source = record.source
    if source is not None and source.api_key_id:
        return source.api_key_id
    if source is not None and source.kind == "s3" and source.key:
        folder = source.key.removeprefix(config.input_prefix).rpartition("/")[0]
        return f"{DROP_ACTOR}{folder}"
    return "operator"


def held_record(store: Any, job_id: str) -> JobRecord:
    record = store.get(job_id)
    if record is None:
        raise TalkstackError(ErrorCode.NOT_FOUND, f"no job {job_id!r} in this stack's table")
    if record.status != "held" or record.result is None:
        raise TalkstackError(
            ErrorCode.CONFLICT,
            f"job {job_id} is {record.status}, not held; only held jobs can be released or deleted",
            status=record.status,
        )
    return record


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def release_job(
    job_id: str,
    operator: str,
    config: PipelineConfig,
    store: Any,
    s3: Any,
    audit: AuditLog,
    announce: Announce,
) -> JobRecord:
    """Publish a held job's outputs; the job completes with them."""
    record = held_record(store, job_id)
    assert record.request is not None and record.result is not None
    request, held = record.request, list(record.result.held)
    bucket = request.output.bucket or config.output_bucket
    sources = {  # by role, not kind: a composition holds two caption files and a still per scene
        held_role(o.key): OutputObject(key=o.key, bytes=o.bytes, content_type=o.content_type)
        for o in held
        if o.bucket == config.work_bucket
    }
    for output in held:  # the work bucket's lifecycle rule may have expired them, unreviewed
        if not object_exists(s3, output.bucket, output.key):
            raise TalkstackError(
                ErrorCode.NOT_FOUND,
                f"job {job_id}'s held {output.kind} is gone (held outputs expire with the work bucket's "
                "retention, docs/safety.md); nothing to release: close the job with "
                f"`talkstack moderation delete {job_id}`",
            )
    audit.record(
        Actor(owner_of(record, config), CLI_SOURCE),
        "moderation.released",
        "job",
        job_id,
        operator=operator,
        scan_status=record.result.scan.status if record.result.scan else None,
    )
    # every file it is about to publish (a composition's captions, preview, stills… too), and result.json
    targets = [final_key(request, job_id, role) for role in sources] + [request.sibling_key(job_id, "result")]
    conditions = check_targets(s3, bucket, targets, job_id)
    signing_warnings: list[str] = []  # held outputs are signed as they are published, here
    published = publish_outputs(s3, config, record, sources, signing_warnings, conditions=conditions)

    def complete(current: JobRecord) -> None:
        if current.status != "held":
            raise NotHeld(job_id)
        current.release(published)
        assert current.result is not None
        current.result.warnings.extend(w for w in signing_warnings if w not in current.result.warnings)
        write_result_json(s3, current, bucket)  # before the record says completed, as finalize does

    try:
        record = store.update(job_id, complete)
    except NotHeld:
        raise TalkstackError(ErrorCode.CONFLICT, f"job {job_id} is no longer held") from None
    remove_held(s3, config, held, job_id)
    for output in held:  # and the signed copies publish_outputs made of them
        s3.delete_object(Bucket=output.bucket, Key=signed_key(output.key))
    announce(JobEvent.from_record(record, "job.completed"))
    return record


def delete_job(
    job_id: str,
    operator: str,
    config: PipelineConfig,
    store: Any,
    s3: Any,
    audit: AuditLog,
    announce: Announce,
) -> JobRecord:
    """Remove a held job's outputs; the job fails with CONTENT_REFUSED and the scan's category."""
    record = held_record(store, job_id)
    assert record.result is not None
    held, scan = list(record.result.held), record.result.scan
    category = (scan.category if scan else None) or "unscanned"
    audit.record(
        Actor(owner_of(record, config), CLI_SOURCE),
        "moderation.deleted",
        "job",
        job_id,
        operator=operator,
        category=category,
    )
    error = JobError(
        code=ErrorCode.CONTENT_REFUSED,
        message=f"the output was refused on review ({category}); it was deleted and not published",
        details={"category": category, "source": "output_scan", "model": scan.model if scan else None},
        step="finalize",
    )

    def refuse(current: JobRecord) -> None:
        if current.status != "held":
            raise NotHeld(job_id)
        current.refuse(error)

    try:
        record = store.update(job_id, refuse)
    except NotHeld:
        raise TalkstackError(ErrorCode.CONFLICT, f"job {job_id} is no longer held") from None
    remove_held(s3, config, held, job_id)
    announce(JobEvent.from_record(record, "job.failed"))
    return record
