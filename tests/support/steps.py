"""The names a step sees in unit tests (tests/unit/pipeline): buckets, state machine, dead-letter
queue, and the PipelineConfig that points at them."""

from __future__ import annotations

from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from talkstack.contract.composition import JobRequest
from talkstack.contract.parse import parse_job_request
from talkstack.contract.quality import QualityCheck, QualityReport
from talkstack.contract.record import JobRecord, utc_now
from talkstack.contract.worker import OutputObject, ResultMarker, work_key
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.store import JobStore
from tests.support.fakes import ACCOUNT, REGION, FakeS3

INPUT, OUTPUT, WORK = "in-bucket", "out-bucket", "work-bucket"
JOBS_TABLE = "jobs"
STATE_MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:jobs"
DLQ = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/ingest-dlq"
SAMPLES = Path(str(resources.files("talkstack") / "assets" / "samples"))


def make_config(**overrides: Any) -> PipelineConfig:
    """Every field given explicitly (use with the no_pipeline_environment fixture, so that no
    TALKSTACK_* left in the process by another test changes an unlisted one)."""
    fields: dict[str, Any] = {
        "input_bucket": INPUT,
        "output_bucket": OUTPUT,
        "work_bucket": WORK,
        "jobs_table": JOBS_TABLE,
        "events_topic_arn": f"arn:aws:sns:{REGION}:{ACCOUNT}:events",
        "ingest_dlq_url": DLQ,
        "state_machine_arn": STATE_MACHINE,
        "notify_function": "notify",
        "webhook_secret": "whsec_dGVzdA==",
    }
    return PipelineConfig(**{**fields, **overrides})


def put_sample_media(s3: FakeS3, folder: str, bucket: str = INPUT) -> dict[str, str]:
    """The bundled portrait and speech under `folder` (real bytes, real sizes); their keys by name."""
    keys = {"image": f"{folder}/portrait.png", "audio": f"{folder}/speech.wav"}
    s3.put_object(Bucket=bucket, Key=keys["image"], Body=(SAMPLES / "portrait.png").read_bytes())
    s3.put_object(Bucket=bucket, Key=keys["audio"], Body=(SAMPLES / "speech.wav").read_bytes())
    return keys


def avatar_request(**changes: Any) -> JobRequest:
    """A checked avatar request, its media already absolute (as validate leaves it)."""
    raw: dict[str, Any] = {
        "task": "avatar",
        "inputs": {
            "image": f"s3://{INPUT}/inputs/talk/portrait.png",
            "audio": f"s3://{INPUT}/inputs/talk/speech.wav",
        },
        **changes,
    }
    return parse_job_request(raw)


def running_job(
    store: JobStore, job_id: str, call_id: str | None = "modal:fc-1", **changes: Any
) -> JobRecord:
    """A stored job whose avatar step is running on a worker call `call_id`."""
    record = JobRecord.new(job_id, avatar_request(**changes))
    step = record.start_step(
        "avatar", backend="modal" if call_id and call_id.startswith("modal:") else "lite"
    )
    step.call_id = call_id
    assert store.create(record)
    return record


def output_keys(record: JobRecord) -> dict[str, str]:
    """Where finalize publishes this job's video, thumbnail and result.json (in the output bucket)."""
    assert record.request is not None
    return {
        "video": record.request.output_key(record.job_id),
        "thumbnail": record.request.sibling_key(record.job_id, "thumbnail"),
        "result": record.request.sibling_key(record.job_id, "result"),
    }


def publish_outputs(
    s3: FakeS3, record: JobRecord, owner: str | None = None, bucket: str = OUTPUT
) -> dict[str, str]:
    """The objects finalize would have published for `record`, tagged with `owner`'s job id
    (talkstack-job-id; None: an object nobody's job wrote, e.g. the user's own file)."""
    keys = output_keys(record)
    metadata = {} if owner is None else {"talkstack-job-id": owner}
    for key in keys.values():
        s3.put_object(Bucket=bucket, Key=key, Body=b"published", Metadata=metadata)
    return keys


ROLE_FILES = {"video": "video.mp4", "thumbnail": "thumbnail.jpg", "audio": "speech.wav"}
FILE_TYPES = {"video.mp4": "video/mp4", "thumbnail.jpg": "image/jpeg", "speech.wav": "audio/wav"}


def worker_result(
    s3: FakeS3,
    job_id: str,
    attempt_id: str,
    roles: tuple[str, ...] = ("video", "thumbnail"),
    upload: bool = True,
    **fields: Any,
) -> ResultMarker:
    """The result marker a worker writes for `attempt_id`, its outputs PUT in the work bucket first
    (`upload=False`: the worker claims outputs it never uploaded)."""
    outputs = {}
    for role in roles:
        body = f"{role} rendered by {attempt_id}".encode()
        key, content_type = work_key(job_id, attempt_id, ROLE_FILES[role]), FILE_TYPES[ROLE_FILES[role]]
        if upload:
            s3.put_object(Bucket=WORK, Key=key, Body=body, ContentType=content_type)
        outputs[role] = OutputObject(key=key, bytes=len(body), content_type=content_type)
    now = utc_now()
    marker: dict[str, Any] = {
        "duration_s": 2.0,
        "width": 480,
        "height": 480,
        "fps": 25.0,
        "engine_s": 1.5,
        "worker": "gpu-box:42",
        "started_at": now - timedelta(seconds=3),
        "at": now,
    }
    return ResultMarker(attempt_id=attempt_id, outputs=outputs, **{**marker, **fields})


def quality_report(lipsync: float = 0.6, colour_drift: float = 2.0, **fields: Any) -> QualityReport:
    """A worker's quality report of a 2 s clip at 25 fps, judged by the default pass marks
    (QualityThresholds): lip sync ≥ 0.3, colour drift ≤ 6 ΔE. Built here, not measured: the steps
    carry the report; talkstack.media.quality measures it."""
    checks = [
        QualityCheck(name="lipsync", value=lipsync, threshold=0.3, passed=lipsync >= 0.3),
        QualityCheck(name="colour", value=colour_drift, threshold=6.0, passed=colour_drift <= 6.0),
        QualityCheck(name="frames", value=0.0, threshold=0.0, passed=True),
    ]
    report: dict[str, Any] = {
        "lipsync": lipsync,
        "lipsync_lag_s": 0.04,
        "identity_drift": 0.05,
        "colour_drift": colour_drift,
        "frames": 50,
        "expected_frames": 50,
        "av_offset_s": 0.0,
        "faces_found": 1.0,
        "sampled_frames": 25,
        "seconds": 0.4,
        "checks": checks,
        "passed": all(c.passed for c in checks),
    }
    return QualityReport(**{**report, **fields})


def parallel_avatar_job(config: PipelineConfig, store: JobStore, chunks: int, job_id: str = "job-1") -> str:
    """A parallel long avatar `job_id`, planned, its speech cut (as the segment step leaves it) into
    `chunks` chunks of 2 s."""
    from talkstack.contract.state import SegmentPlan
    from talkstack.contract.worker import ChunkPlan, segment_key
    from talkstack.pipeline.plan import plan_job

    assert store.create(JobRecord.new(job_id, avatar_request(options={"long_audio": "parallel"})))
    plan_job(job_id, config, store)
    plan = [
        ChunkPlan(
            index=i,
            start_s=2 * i,
            end_s=2 * i + 2,
            render_start_s=2 * i,
            render_end_s=2 * i + 2,
            at_pause=True,
        )
        for i in range(chunks)
    ]
    keys = [segment_key(job_id, f"chunk-{i:03d}.wav") for i in range(chunks)]
    store.put_step_result(
        job_id, "segment", SegmentPlan(chunks=plan, audio_keys=keys, source=(INPUT, "inputs/talk/speech.wav"))
    )
    return job_id
