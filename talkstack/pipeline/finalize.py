"""Finalize step: publish the main step's outputs from their temporary keys to the predictable final
keys, then mark the job completed and write `result.json` (the job record) beside the video.

Publishing is a server-side copy (nothing passes through the Lambda; the managed copy handles
objects over 5 GB). Every published object carries `talkstack-job-id` metadata, which is how the
failure handler knows an object is this job's to remove. Re-running finalize for a completed job
only rewrites result.json, so a retried Lambda publishes nothing twice. A job cancelled before or
during finalize keeps nothing: the record decides, under its optimistic lock (cancel.py).
"""

from __future__ import annotations

from typing import Any

from talkstack.contract.record import JobRecord, JobResult, OutputFile, OutputKind, utc_now
from talkstack.contract.request import JobRequestBase
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.cost import estimate_cost

JOB_ID_METADATA = "talkstack-job-id"
MAX_SINGLE_COPY_BYTES = 5 * 1024**3  # CopyObject's limit
ROLE_KIND: dict[str, OutputKind] = {"video": "video", "thumbnail": "thumbnail", "audio": "audio"}


class JobCancelled(Exception):
    """The job was cancelled while finalize ran."""


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


def finalize_job(job_id: str, config: PipelineConfig, store: Any, s3: Any) -> JobRecord:
    record = store.get(job_id)
    if record is None or record.request is None:
        raise KeyError(f"job {job_id} has no record")
    request = record.request
    bucket = request.output.bucket or config.output_bucket
    if record.status == "completed":
        write_result_json(s3, record, bucket)
        return record
    if record.status == "cancelled":
        return record  # cancelled before we got here: publish nothing
    main_step = request.worker_steps[-1]
    step_result = store.get_step_result(job_id, main_step)
    if step_result is None:
        raise RuntimeError(f"job {job_id}: the {main_step} step left no result")

    started = utc_now()
    published: list[OutputFile] = []
    for role, obj in step_result["outputs"].items():
        key = final_key(request, job_id, role)
        publish(s3, config.work_bucket, obj["key"], bucket, key, obj["content_type"], job_id, obj["bytes"])
        published.append(
            OutputFile(
                kind=ROLE_KIND[role],
                bucket=bucket,
                key=key,
                content_type=obj["content_type"],
                bytes=obj["bytes"],
            )
        )
    published.sort(key=lambda o: ("video", "audio", "thumbnail").index(o.kind))

    warnings = []  # every step's, in order (a voice step's warnings matter to an avatar job too)
    for step in request.worker_steps:
        result = step_result if step == main_step else store.get_step_result(job_id, step) or {}
        warnings.extend(w for w in result.get("warnings", []) if w not in warnings)

    def complete(current: JobRecord) -> None:
        if current.status == "cancelled":
            raise JobCancelled(job_id)
        current.start_step("finalize", now=started)
        current.finish_step("finalize")
        result = JobResult(
            outputs=published,
            duration_s=step_result.get("duration_s"),
            width=step_result.get("width"),
            height=step_result.get("height"),
            fps=step_result.get("fps"),
            warnings=warnings,
        )
        current.mark_completed(result)
        result.estimated_cost_usd = estimate_cost(current)

    try:
        record = store.update(job_id, complete)
    except JobCancelled:
        # Cancelled while we copied: the cancel won the record, so what we published goes.
        for output in published:
            s3.delete_object(Bucket=output.bucket, Key=output.key)
        return store.get(job_id)
    write_result_json(s3, record, bucket)
    return record
