"""Client side of the S3 drop: upload media and a manifest under the input prefix, then follow the
job in the jobs table. What `talkstack submit`, `make demo` and the tests do; any S3 client that
writes the same objects gets the same result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talkstack.contract.fields import MediaRef
from talkstack.contract.record import JobRecord
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.jobids import job_id_for_object, manifest_job_name, slug


@dataclass(frozen=True)
class Dropped:
    job_id: str
    bucket: str
    manifest_key: str
    uploaded: list[str]


def local_media(manifest: Mapping[str, Any], base: Path) -> dict[str, Path]:
    """Relative media refs of a manifest that exist as files next to it: {ref: path}."""
    found: dict[str, Path] = {}
    inputs = manifest.get("inputs") or manifest.get("input") or {}
    for value in inputs.values() if isinstance(inputs, Mapping) else []:
        if not isinstance(value, str):
            continue
        try:
            ref = MediaRef.parse(value)
        except ValueError:
            continue
        if ref.is_relative and (base / ref.key).is_file():
            found[ref.key] = base / ref.key
    return found


def drop_job(
    s3: Any,
    bucket: str,
    manifest: Mapping[str, Any],
    media: Mapping[str, Path],
    *,
    name: str,
    input_prefix: str = "inputs/",
    manifest_name: str = "job.json",
) -> Dropped:
    """Upload `media` ({relative key: file}) and then the manifest into `<prefix><name>/`.
    The manifest goes last: its arrival is what starts the job."""
    folder = f"{input_prefix}{slug(name) or 'job'}"
    uploaded = []
    for key, path in media.items():
        target = f"{folder}/{key}"
        s3.upload_file(str(path), bucket, target)
        uploaded.append(target)
    manifest_key = f"{folder}/{manifest_name}"
    put = s3.put_object(
        Bucket=bucket,
        Key=manifest_key,
        Body=json.dumps(manifest, indent=2).encode(),
        ContentType="application/json",
    )
    job_id = manifest.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        name = manifest_job_name(manifest_key, input_prefix, manifest_name)
        job_id = job_id_for_object(bucket, manifest_key, put["ETag"], name, put.get("VersionId"))
    return Dropped(job_id, bucket, manifest_key, uploaded)


def follow(
    get_record: Callable[[str], JobRecord | None],
    job_id: str,
    *,
    on_update: Callable[[JobRecord], None] = lambda record: None,
    timeout_s: float = 600.0,
    poll_s: float = 0.2,
) -> JobRecord:
    """Poll the job until it ends; `on_update` sees every change."""
    deadline = time.monotonic() + timeout_s
    last: tuple[str, float] | None = None
    while time.monotonic() < deadline:
        record = get_record(job_id)
        if record is not None:
            state = (record.status, record.progress)
            if state != last:
                on_update(record)
                last = state
            if record.is_terminal:
                return record
        time.sleep(poll_s)
    raise TalkstackError(ErrorCode.GENERATION_FAILED, f"job {job_id} did not finish within {timeout_s:.0f} s")
