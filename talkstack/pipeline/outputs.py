"""Where a job's outputs are published, and how a published object is known to be the job's.

Every object finalize publishes (video or audio, thumbnail, result.json) carries `talkstack-job-id`
metadata: the failure and cancel paths remove an object only when it carries this job's id, so
they never touch inputs, another job's outputs, or objects a user put there.

Publishing never overwrites an object that is not this job's (another job's output, or anything
without the metadata): the job fails with OUTPUT_EXISTS instead. The target is read first (HEAD:
absent, this job's, or another's) and the write is conditional on what was read (`If-None-Match: *`
when absent, `If-Match: <ETag>` when it is this job's), so S3 itself refuses an object that
appeared in between. A re-run of the same job may overwrite its own outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from talkstack.contract.composition import CompositionRequest, scene_thumbnail_role
from talkstack.contract.record import JobRecord, OutputFile
from talkstack.contract.request import JobRequestBase
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.aio_s3 import AsyncS3, bounded, run, threaded
from talkstack.pipeline.aws import error_code
from talkstack.pipeline.config import PipelineConfig

JOB_ID_METADATA = "talkstack-job-id"
SCENE_THUMBNAIL_PREFIX = scene_thumbnail_role(0).removesuffix("0")
MAX_SINGLE_COPY_BYTES = 5 * 1024**3  # CopyObject's limit


COMPOSITION_SUFFIXES = {
    "captions_srt": ".srt",
    "captions_vtt": ".vtt",
    "preview": ".preview.webp",
    "video_webm": ".webm",
    "video_mov": ".mov",
}
"""A composition's extra outputs, published beside its video as `<stem><suffix>` (stem: the video's
file name without its extension), like its scene thumbnails (`<stem>.scene-<n>.jpg`, n from 1)."""


def composition_file_name(stem: str, role: str) -> str | None:
    """Where a composition's extra output of `role` goes beside its video `<stem>.mp4`: the same
    names in the pipeline's output folder and beside the offline render's OUT (`talkstack templates
    render`); None for the video itself and the thumbnail."""
    if role in COMPOSITION_SUFFIXES:
        return stem + COMPOSITION_SUFFIXES[role]
    if role.startswith(SCENE_THUMBNAIL_PREFIX):
        index = int(role.removeprefix(SCENE_THUMBNAIL_PREFIX))
        return f"{stem}.scene-{index + 1}.jpg"
    return None


def final_key(request: JobRequestBase, job_id: str, role: str) -> str:
    if role == "thumbnail":
        return request.sibling_key(job_id, "thumbnail")
    stem = request.output_filename.rpartition(".")[0] or request.output_filename
    if name := composition_file_name(stem, role):
        return request.output_key(job_id, name)
    return request.output_key(job_id)


CONDITION_FAILED = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
"""What S3 answers a conditional write whose condition no longer holds (409: a concurrent one won)."""


def output_exists(key: str) -> TalkstackError:
    return TalkstackError(
        ErrorCode.OUTPUT_EXISTS,
        f"output key {key} already holds another job's output; choose another output.prefix or set "
        "output.unique_suffix",
        key=key,
    )


def claim(s3: Any, bucket: str, key: str, job_id: str) -> dict[str, str]:
    """The write condition under which `job_id` may publish `key`: `IfNoneMatch: *` when nothing is
    there, `IfMatch: <ETag>` when the object is this job's; OUTPUT_EXISTS when it is not."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return {"IfNoneMatch": "*"}
        raise
    if head.get("Metadata", {}).get(JOB_ID_METADATA) != job_id:
        raise output_exists(key)
    return {"IfMatch": head["ETag"]}


Conditions = dict[str, dict[str, str]]
"""Each target key's write condition (`claim`'s), as the check before publishing found it."""


def check_targets(s3: Any, bucket: str, keys: list[str], job_id: str) -> Conditions:
    """Every target is free or this job's, before the first byte is written: a job whose outputs
    would land on another's publishes nothing. Their write conditions, which the copies use first
    (no second HEAD of each target; a target changed since fails its condition and is looked at again).
    On a synchronous client: `check_targets_concurrently` over threads."""
    return check_targets_concurrently(threaded(s3), bucket, keys, job_id)


def _conditional(write: Any, s3: Any, bucket: str, key: str, job_id: str) -> None:
    """`write(condition)` under claim's condition. When the object changed since the HEAD, look once
    more (a retried run of this same job may have written it) before giving up with OUTPUT_EXISTS."""
    try:
        write(claim(s3, bucket, key, job_id))
        return
    except ClientError as exc:
        if error_code(exc) not in CONDITION_FAILED:
            raise
    try:
        write(claim(s3, bucket, key, job_id))
    except ClientError as exc:
        if error_code(exc) in CONDITION_FAILED:
            raise output_exists(key) from exc
        raise


def publish(
    s3: Any, src_bucket: str, src_key: str, bucket: str, key: str, content_type: str, job_id: str, size: int
) -> None:
    """One copy on a synchronous client: `publish_async`'s, over threads."""
    publish_all(threaded(s3), [Copy(src_bucket, src_key, bucket, key, content_type, size)], job_id)


@dataclass(frozen=True)
class Copy:
    """One object to publish: the work bucket's `src_key` to `bucket`/`key`."""

    src_bucket: str
    src_key: str
    bucket: str
    key: str
    content_type: str
    size: int


async def claim_async(s3: Any, bucket: str, key: str, job_id: str) -> dict[str, str]:
    """`claim` on an async client."""
    try:
        head = await s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return {"IfNoneMatch": "*"}
        raise
    if head.get("Metadata", {}).get(JOB_ID_METADATA) != job_id:
        raise output_exists(key)
    return {"IfMatch": head["ETag"]}


async def publish_async(s3: Any, copy: Copy, job_id: str, condition: dict[str, str] | None = None) -> None:
    """Copy under `claim`'s write condition (`condition` when the caller has just checked the
    target, else a HEAD now). When the object changed since, look once more (a retried run of this
    same job may have written it) before giving up with OUTPUT_EXISTS. An object of 5 GB or more
    goes by the managed multipart copy, which takes no write condition: the owner check alone
    guards it (an object created between the HEAD and the copy's completion would be overwritten)."""
    extra = {
        "ContentType": copy.content_type,
        "Metadata": {JOB_ID_METADATA: job_id},
        "MetadataDirective": "REPLACE",
    }
    source = {"Bucket": copy.src_bucket, "Key": copy.src_key}
    if copy.size >= MAX_SINGLE_COPY_BYTES:
        if condition is None:
            await claim_async(s3, copy.bucket, copy.key, job_id)
        await s3.copy(source, copy.bucket, copy.key, ExtraArgs=extra)
        return
    for last in (False, True):
        if condition is None:
            condition = await claim_async(s3, copy.bucket, copy.key, job_id)
        try:
            await s3.copy_object(CopySource=source, Bucket=copy.bucket, Key=copy.key, **extra, **condition)
            return
        except ClientError as exc:
            if error_code(exc) not in CONDITION_FAILED:
                raise
            if last:
                raise output_exists(copy.key) from exc
            condition = None


def publish_all(aio: AsyncS3, copies: list[Copy], job_id: str, conditions: Conditions | None = None) -> None:
    """Publish `copies` concurrently (aio_s3.PARALLEL_REQUESTS at once), each under its target's
    condition in `conditions` (`check_targets`' answer) or a HEAD's. Every copy runs to its end;
    then the first failure (OUTPUT_EXISTS, an S3 error) is raised, and the caller writes no
    result.json."""
    known = conditions or {}

    async def all_copies() -> None:
        async with aio() as s3:
            await bounded(publish_async(s3, copy, job_id, known.get(copy.key)) for copy in copies)

    run(all_copies())


def check_targets_concurrently(aio: AsyncS3, bucket: str, keys: list[str], job_id: str) -> Conditions:
    """`check_targets` with the HEADs in flight together."""

    async def all_heads() -> list[dict[str, str]]:
        async with aio() as s3:
            return await bounded(claim_async(s3, bucket, key, job_id) for key in keys)

    return dict(zip(keys, run(all_heads()), strict=True))


def write_result_json(s3: Any, record: JobRecord, bucket: str) -> str:
    assert record.request is not None
    key = record.request.sibling_key(record.job_id, "result")

    def put(condition: dict[str, str]) -> None:
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=record.model_dump_json(indent=2).encode(),
            ContentType="application/json",
            Metadata={JOB_ID_METADATA: record.job_id},
            **condition,
        )

    _conditional(put, s3, bucket, key, record.job_id)
    return key


def possible_output_keys(request: JobRequestBase, job_id: str) -> set[str]:
    """Every key a job of this request may publish in its output bucket: the main output, its
    thumbnail and result.json, and a composition's captions, preview, alpha files and one still per
    scene (whether or not it made them). What a failure path or a deletion looks for."""
    keys = {final_key(request, job_id, "video"), request.sibling_key(job_id, "thumbnail")}
    keys.add(request.sibling_key(job_id, "result"))
    if isinstance(request, CompositionRequest):
        keys |= {final_key(request, job_id, role) for role in COMPOSITION_SUFFIXES}
        keys |= {final_key(request, job_id, scene_thumbnail_role(i)) for i in range(len(request.scenes))}
    return keys


def remove_published(record: JobRecord, config: PipelineConfig, s3: Any) -> list[str]:
    """Delete outputs this job already published (only objects tagged with its job id). Callers
    pass the record they have just ended (failed or cancelled in the table: a terminal record never
    changes again); a completed record's outputs are never deleted, whoever asks."""
    request = record.request
    if request is None or record.status == "completed":
        return []
    bucket = request.output.bucket or config.output_bucket
    keys = possible_output_keys(request, record.job_id)
    return [key for key in sorted(keys) if _remove_if_ours(s3, bucket, key, record.job_id)]


def remove_held(s3: Any, config: PipelineConfig, held: list[OutputFile], job_id: str) -> list[str]:
    """Delete a job's held outputs from the work bucket (only objects tagged with its job id)."""
    return [o.key for o in held if _remove_if_ours(s3, o.bucket, o.key, job_id)]


def _remove_if_ours(s3: Any, bucket: str, key: str, job_id: str) -> bool:
    """Delete the object when it carries `job_id`'s metadata; True when it was deleted."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    if head.get("Metadata", {}).get(JOB_ID_METADATA) != job_id:
        return False
    s3.delete_object(Bucket=bucket, Key=key)
    return True
