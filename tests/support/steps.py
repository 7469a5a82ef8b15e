"""The names a step sees in unit tests (tests/unit/pipeline): buckets, state machine, dead-letter
queue, and the PipelineConfig that points at them."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from talkstack.pipeline.config import PipelineConfig
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
