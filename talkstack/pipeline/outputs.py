"""Where a job's outputs are published, and how a published object is known to be the job's.

Every object finalize publishes (video or audio, thumbnail, result.json) carries `talkstack-job-id`
metadata: the failure and cancel paths remove an object only when it carries this job's id, so
they never touch inputs, another job's outputs, or objects a user put there.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from talkstack.contract.record import JobRecord
from talkstack.contract.request import JobRequestBase
from talkstack.pipeline.aws import error_code
from talkstack.pipeline.config import PipelineConfig

JOB_ID_METADATA = "talkstack-job-id"
MAX_SINGLE_COPY_BYTES = 5 * 1024**3  # CopyObject's limit


def final_key(request: JobRequestBase, job_id: str, role: str) -> str:
    if role == "thumbnail":
        return request.sibling_key(job_id, "thumbnail")
    return request.output_key(job_id)


def publish(
    s3: Any, src_bucket: str, src_key: str, bucket: str, key: str, content_type: str, job_id: str, size: int
) -> None:
    extra = {
        "ContentType": content_type,
        "Metadata": {JOB_ID_METADATA: job_id},
        "MetadataDirective": "REPLACE",
    }
    source = {"Bucket": src_bucket, "Key": src_key}
    if size < MAX_SINGLE_COPY_BYTES:
        s3.copy_object(CopySource=source, Bucket=bucket, Key=key, **extra)  # one request
    else:
        s3.copy(source, bucket, key, ExtraArgs=extra)  # multipart copy, for objects over 5 GB


def write_result_json(s3: Any, record: JobRecord, bucket: str) -> str:
    assert record.request is not None
    key = record.request.sibling_key(record.job_id, "result")
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=record.model_dump_json(indent=2).encode(),
        ContentType="application/json",
        Metadata={JOB_ID_METADATA: record.job_id},
    )
    return key


def remove_published(record: JobRecord, config: PipelineConfig, s3: Any) -> list[str]:
    """Delete outputs this job already published (only objects tagged with its job id). Callers
    pass the record they have just ended (failed or cancelled in the table: a terminal record never
    changes again); a completed record's outputs are never deleted, whoever asks."""
    request = record.request
    if request is None or record.status == "completed":
        return []
    bucket = request.output.bucket or config.output_bucket
    keys = {final_key(request, record.job_id, "video"), request.sibling_key(record.job_id, "thumbnail")}
    keys.add(request.sibling_key(record.job_id, "result"))
    removed = []
    for key in sorted(keys):
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                continue
            raise
        if head.get("Metadata", {}).get(JOB_ID_METADATA) == record.job_id:
            s3.delete_object(Bucket=bucket, Key=key)
            removed.append(key)
    return removed
