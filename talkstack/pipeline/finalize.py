"""Finalize step: publish the main step's outputs from their temporary keys to the predictable final
keys, then write `result.json` (the completed record) beside the video and mark the job completed.
The job's result gathers every step's warnings (each chunk's, for a stitched avatar) and the quality
report of what is published (talkstack.pipeline.quality.job_quality).

Publishing is a server-side copy (nothing passes through the Lambda; the managed copy handles
objects over 5 GB); the HEADs that check the targets, and then the copies, run concurrently on one
aioboto3 client (talkstack/pipeline/aio_s3.py, aioboto3_s3.py), at most eight at once. Every published object
carries `talkstack-job-id` metadata, which is how the failure handler knows an object is this
job's to remove.

A completed job never loses a result (docs/pipeline.md, "The failure path"): result.json is written
of exactly the record about to be stored, *before* the conditional write that completes it, so
nothing is left to fail once the record says completed. Every step here is repeatable, and the
state machine retries Finalize on its own failures: re-running it for a job still running copies
the same objects again; for a completed job it only rewrites result.json. A job that ended another
way before or during finalize (cancelled through the API, or failed by a timeout) keeps nothing:
the record decides, under its optimistic lock, and only a job whose record did not complete has
what finalize published taken back: only objects tagged with its job id (outputs.remove_published),
never another job's object at a key they share. Before copying, every target is checked to be free
or this job's (outputs.check_targets_concurrently: OUTPUT_EXISTS otherwise), and each write is conditional.

An output the scan flagged (or one not scanned, when TALKSTACK_SCAN_NOT_SCANNED is `hold`) is not
published: it is copied to the work bucket under `held/<job_id>/` and the job ends `held`, with no
result.json and nothing in the output bucket. An operator's release publishes it with the same
`publish_outputs` (talkstack/pipeline/held_review.py).
"""

from __future__ import annotations

from typing import Any

from talkstack.contract.record import JobRecord, JobResult, OutputFile, OutputKind, utc_now
from talkstack.contract.request import JobRequestBase
from talkstack.contract.scan import OutputScan
from talkstack.contract.worker import OutputObject, ResultMarker, StepAddress, held_key
from talkstack.pipeline.aio_s3 import AsyncS3, threaded
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.cost import estimate_cost
from talkstack.pipeline.outputs import (
    SCENE_THUMBNAIL_PREFIX,
    Conditions,
    Copy,
    check_targets_concurrently,
    final_key,
    publish_all,
    remove_held,
    remove_published,
    write_result_json,
)
from talkstack.pipeline.provenance import sign_output
from talkstack.pipeline.quality import job_quality
from talkstack.pipeline.step_results import segment_plan, step_result
from talkstack.safety.scan import not_scanned, speech_of, with_speech

ROLE_KIND: dict[str, OutputKind] = {
    "video": "video",
    "thumbnail": "thumbnail",
    "audio": "audio",
    # A composition's (the compose step's COMPOSE_OUTPUTS):
    "captions_srt": "captions",
    "captions_vtt": "captions",
    "preview": "preview",
    "video_webm": "video",
    "video_mov": "video",
}
KIND_ORDER: tuple[OutputKind, ...] = ("video", "audio", "thumbnail", "scene_thumbnail", "preview", "captions")
"""Published files in this order: the main video (or audio) first, the alpha files after it."""


def role_kind(role: str) -> OutputKind:
    if role.startswith(SCENE_THUMBNAIL_PREFIX):
        return "scene_thumbnail"
    return ROLE_KIND[role]


class JobEnded(Exception):
    """The job ended another way (cancelled, or failed) while finalize ran."""


def main_step_of(request: JobRequestBase, job_id: str, store: Any) -> StepAddress:
    """The step whose outputs the job publishes: its last engine step. A parallel avatar whose speech
    fit one chunk took the single Avatar state (HasChunks), so no stitch step ran for it."""
    last = StepAddress.parse(request.worker_steps[-1])
    if last.step == "stitch" and not segment_plan(store, job_id).parallel:
        return StepAddress(step="avatar")
    return last


def _chunk_results(job_id: str, main_step: StepAddress, store: Any) -> dict[int, ResultMarker]:
    """The chunk renders a stitch step joined, by chunk index (none unless the job was stitched)."""
    if main_step.step != "stitch":
        return {}
    return {
        chunk.index: step_result(store, job_id, StepAddress(step="avatar", chunk=chunk.index))
        for chunk in segment_plan(store, job_id).chunks
    }


def publish_outputs(
    s3: Any,
    config: PipelineConfig,
    record: JobRecord,
    sources: dict[str, OutputObject],
    warnings: list[str],
    aio: AsyncS3 | None = None,
    conditions: Conditions | None = None,
) -> list[OutputFile]:
    """Copy each output (by role, from the work bucket) to its final key, C2PA content credentials
    signed into each video and audio file first (docs/safety.md; a signing warning is added to
    `warnings`); the published files, video or audio first. Finalize and an operator's release of
    a held job both publish here. The copies run concurrently on `aio` (the finalize Lambda's
    aioboto3 client; by default `s3` itself, over threads: an operator's release); one that fails
    fails the publish once all have ended, before anything else (result.json) is written.
    `conditions` are the targets' write conditions as the caller's check found them
    (outputs.check_targets), so no target is looked at twice."""
    request, job_id = record.request, record.job_id
    assert request is not None
    bucket = request.output.bucket or config.output_bucket
    # Every file signed before any is copied: a file that cannot be signed publishes nothing.
    work = config.work_bucket
    signed = {role: sign_output(s3, work, record, role, obj, warnings) for role, obj in sources.items()}
    copies = {
        role: Copy(work, obj.key, bucket, final_key(request, job_id, role), obj.content_type, obj.bytes)
        for role, obj in signed.items()
    }
    publish_all(aio or threaded(s3), list(copies.values()), job_id, conditions)
    published = [
        OutputFile(kind=role_kind(role), bucket=bucket, key=c.key, content_type=c.content_type, bytes=c.size)
        for role, c in copies.items()
    ]
    # Stable: within a kind, the order the step wrote them (the mp4 before the alpha files, scene
    # thumbnails in scene order), so `result.primary` is the main video.
    published.sort(key=lambda o: KIND_ORDER.index(o.kind))
    return published


def output_scan(main: ResultMarker, request: JobRequestBase) -> OutputScan:
    """The main output's verdict, with where its speech came from (the worker cannot know)."""
    scan = main.scan or not_scanned("the worker reported no output scan")
    return with_speech(scan, speech_of(request))


def must_hold(scan: OutputScan, config: PipelineConfig) -> bool:
    return scan.status == "flagged" or (scan.status == "not_scanned" and config.scan_not_scanned == "hold")


def hold_outputs(
    s3: Any, config: PipelineConfig, job_id: str, main: ResultMarker, aio: AsyncS3 | None = None
) -> list[OutputFile]:
    """Copy the outputs to `held/<job_id>/` in the work bucket (never the output bucket), concurrently."""
    work = config.work_bucket
    copies = {
        role: Copy(work, obj.key, work, held_key(job_id, role, obj.key), obj.content_type, obj.bytes)
        for role, obj in main.outputs.items()
    }
    publish_all(aio or threaded(s3), list(copies.values()), job_id)
    return [
        OutputFile(kind=role_kind(role), bucket=work, key=c.key, content_type=c.content_type, bytes=c.size)
        for role, c in copies.items()
    ]


def finalize_job(
    job_id: str, config: PipelineConfig, store: Any, s3: Any, aio: AsyncS3 | None = None
) -> JobRecord:
    """Publish the job's outputs and complete it. `aio` opens the async client the concurrent
    HEADs and copies run on (the Lambda's: aioboto3); without one they run on `s3` over threads."""
    record = store.get(job_id)
    if record is None or record.request is None:
        raise KeyError(f"job {job_id} has no record")
    request = record.request
    bucket = request.output.bucket or config.output_bucket
    if record.status == "completed":
        write_result_json(s3, record, bucket)  # a retried finalize: the record has it already
        return record
    if record.is_terminal:
        return record  # cancelled (or failed) before we got here: publish nothing
    main_step = main_step_of(request, job_id, store)
    main = step_result(store, job_id, main_step)

    started = utc_now()
    signing_warnings: list[str] = []
    scan = output_scan(main, request)
    hold = must_hold(scan, config)
    if hold:  # unsigned while held: a release signs them as it publishes
        published, held = [], hold_outputs(s3, config, job_id, main, aio)
    else:
        # Every target (result.json too) must be free or this job's before anything is copied.
        targets = [final_key(request, job_id, role) for role in main.outputs]
        keys = [*targets, request.sibling_key(job_id, "result")]
        conditions = check_targets_concurrently(aio or threaded(s3), bucket, keys, job_id)
        published = publish_outputs(s3, config, record, main.outputs, signing_warnings, aio, conditions)
        held = []

    chunks = _chunk_results(job_id, main_step, store)
    warnings: list[str] = []  # every step's, in order (a voice step's warnings matter to an avatar job too)
    for step in request.worker_steps:
        address = StepAddress.parse(step)
        if address.step == "avatar" and chunks:  # a stitched avatar: each chunk's, in order
            results: list[ResultMarker | None] = list(chunks.values())
        elif address == main_step:
            results = [main]
        else:
            results = [store.get_step_result(job_id, address, ResultMarker)]
        for result in results:
            warnings.extend(w for w in (result.warnings if result else []) if w not in warnings)
    warnings.extend(w for w in signing_warnings if w not in warnings)
    quality = job_quality(main, chunks)

    completed_elsewhere = False

    def complete(current: JobRecord) -> None:
        nonlocal completed_elsewhere
        completed_elsewhere = current.status in ("completed", "held")
        if completed_elsewhere:
            return  # another run of this step completed it first (rewritten below)
        if current.is_terminal:
            raise JobEnded(job_id)
        current.start_step("finalize", now=started)
        current.finish_step("finalize")
        result = JobResult(
            outputs=published,
            duration_s=main.duration_s,
            width=main.width,
            height=main.height,
            fps=main.fps,
            warnings=warnings,
            quality=quality,
            scan=scan,
            held=held,
            preview=bool(getattr(request, "preview", False)),
        )
        if hold:  # nothing published, no result.json: an operator releases or deletes it
            current.mark_held(result)
            result.estimated_cost_usd = estimate_cost(current)
            return
        current.mark_completed(result)
        result.estimated_cost_usd = estimate_cost(current)
        # Before the record is stored, not after: once it says completed, nothing is left to fail
        # (a failure here leaves the job running, and the retried step writes it again). A lost race
        # for the record runs this again and rewrites it with the record that is then stored.
        write_result_json(s3, current, bucket)

    try:
        record = store.update(job_id, complete)
    except JobEnded:
        # Cancelled (or failed) while we copied: that record stands, ended and not completed (a
        # terminal record never changes again), so what this run published goes, and result.json
        # too, if a lost race had written it: only objects tagged with this job's id, never another
        # job's object at a shared key (a voice and an avatar job may share `<prefix>/result.json`).
        ended = store.get(job_id)
        assert ended is not None and ended.status != "completed"
        remove_published(ended, config, s3)
        remove_held(s3, config, held, job_id)
        return ended
    if record.status == "held":
        return record
    if completed_elsewhere:
        # Two runs raced: this one's callback may have written result.json last, of a record that
        # was never stored. Write the stored one again (the same bytes when no race happened).
        write_result_json(s3, record, bucket)
    return record
