"""Client side of the S3 drop: upload media and a manifest under the input prefix, follow the job
in the jobs table, download its outputs. What `talkstack submit`/`download`, `make demo` and the
tests do; any S3 client that writes and reads the same objects gets the same result.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from talkstack.contract.composition import CompositionRequest
from talkstack.contract.fields import MediaRef
from talkstack.contract.parse import is_multitalk_v0_manifest
from talkstack.contract.record import JobRecord
from talkstack.contract.request import AvatarRequest, VideoRequest, VoiceRequest
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.jobids import job_id_for_object, manifest_job_name, slug

_REQUESTS = {"avatar": AvatarRequest, "voice": VoiceRequest, "video": VideoRequest}
_V0_MEDIA = ("audio_s3_url", "reference_image_s3_url")
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Dropped:
    job_id: str
    bucket: str
    manifest_key: str
    uploaded: list[str]


def media_fields(task: str) -> frozenset[str]:
    """The input fields of `task` that name media files (the others, like `text`, are not files)."""
    request = _REQUESTS.get(task)
    if request is None:
        return frozenset()
    fields = getattr(request.model_fields["inputs"].annotation, "model_fields", {})
    return frozenset(n for n, f in fields.items() if MediaRef in (f.annotation, *get_args(f.annotation)))


def relative_media(manifest: Mapping[str, Any]) -> dict[str, str]:
    """The manifest's media refs that are keys relative to it: {field path: key}. Native manifests
    (their inputs and `consent.clip`) and MultiTalk API v0 manifests (`input.*_s3_url`) alike; what
    is not a valid ref is left for the pipeline to refuse with its own message."""
    if manifest.get("task") == "composition":
        return _composition_media(manifest)
    if is_multitalk_v0_manifest(manifest):
        section, names = "input", frozenset(_V0_MEDIA)
    else:
        task = manifest.get("task", "avatar")
        section, names = "inputs", media_fields(task if isinstance(task, str) else "")
    inputs = manifest.get(section)
    refs: dict[str, str] = {}
    for name in sorted(names & inputs.keys()) if isinstance(inputs, Mapping) else []:
        try:
            ref = MediaRef.parse(inputs[name])
        except ValueError:
            continue
        if ref.is_relative:
            refs[f"{section}.{name}"] = ref.key
    consent = manifest.get("consent")
    if isinstance(consent, Mapping) and isinstance(consent.get("clip"), str):
        try:  # the consent clip is kept with the job's inputs: it is uploaded beside them
            ref = MediaRef.parse(consent["clip"])
        except ValueError:
            return refs
        if ref.is_relative:
            refs["consent.clip"] = ref.key
    return refs


def _composition_media(manifest: Mapping[str, Any]) -> dict[str, str]:
    """A composition's relative media refs, wherever they sit in its scenes (dotted paths such as
    `scenes.0.source.inputs.image`); a manifest that does not parse names none (the pipeline refuses
    it with its own message)."""
    try:
        request = CompositionRequest.model_validate(manifest)
    except ValidationError:
        return {}
    return {path: ref.key for path, ref in request.referenced_media().items() if ref.is_relative}


def set_media_ref(document: dict[str, Any], path: str, value: str) -> None:
    """Put `value` at a dotted media path of a manifest (`inputs.audio`, `scenes.0.music.media`)."""
    *parents, leaf = path.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[leaf] = value


def local_media(
    manifest: Mapping[str, Any], base: Path, *, skip: Callable[[str], bool] = lambda key: False
) -> dict[str, Path]:
    """The files a manifest's relative media refs name, all of which must exist beside it:
    {ref: path}. INPUT_NOT_FOUND names the first one missing and the folder it was looked for in,
    before anything is uploaded. `skip` keeps refs that are not files (the API's upload ids)."""
    found: dict[str, Path] = {}
    for field, key in relative_media(manifest).items():
        if skip(key):
            continue
        path = base / key
        if not path.is_file():
            raise TalkstackError(
                ErrorCode.INPUT_NOT_FOUND,
                f"{field}: no file {key!r} in {base.resolve()} (relative media are read from the "
                "manifest's folder); nothing was uploaded",
                field=field,
            )
        found[key] = path
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


def download_outputs(s3: Any, record: JobRecord, folder: Path) -> list[Path]:
    """Download a completed job's outputs into `folder`, each under its key's file name; returns the
    files written. Each file is written under a temporary name and renamed when whole, so an
    interrupted or failed download leaves no partial file behind (and no stale one replaced)."""
    if record.status != "completed" or record.result is None:
        if record.error is not None:
            raise TalkstackError(
                record.error.code,
                f"job {record.job_id} {record.status}: {record.error.message}; it has no outputs",
            )
        raise TalkstackError(
            ErrorCode.CONFLICT,
            f"job {record.job_id} is {record.status} ({record.progress:.0%}); download it once it has "
            f"completed (talkstack status {record.job_id})",
        )
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for output in record.result.outputs:
        path = folder / (Path(output.key).name or f"{output.kind}.bin")
        partial = folder / f".{path.name}.{secrets.token_hex(4)}.part"
        try:
            body = s3.get_object(Bucket=output.bucket, Key=output.key)["Body"]
            with body, partial.open("xb") as f:
                for chunk in body.iter_chunks(CHUNK_BYTES):
                    f.write(chunk)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        written.append(path)
    return written
