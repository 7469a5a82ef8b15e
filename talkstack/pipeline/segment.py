"""Segment step (parallel long avatars): cut the speech at pauses into chunks the Map state renders
at once, one worker task per chunk; the stitch step joins them.

Runs after the voice step (a text-driven avatar's speech only exists then). Speech shorter than
the chunk limit, or a request that did not ask for `long_audio: "parallel"`, stays one chunk and
takes the ordinary single Avatar step. The chunk audio files go to the work bucket; the plan (cut
points, overlap) is kept as the step result for dispatch and stitch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from talkstack.contract.request import AvatarRequest
from talkstack.contract.state import SegmentOutput, SegmentPlan
from talkstack.contract.worker import ChunkPlan, segment_key
from talkstack.media.audio import read_audio, write_wav
from talkstack.media.segments import plan_chunks
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.step_results import SEGMENT_RESULT, source_audio


def segment_job(job_id: str, config: PipelineConfig, store: Any, s3: Any) -> SegmentOutput:
    record = store.get(job_id)
    if record is None or not isinstance(record.request, AvatarRequest):
        raise KeyError(f"job {job_id} has no avatar request")
    request = record.request
    bucket, key = source_audio(request, job_id, config, store)
    with tempfile.TemporaryDirectory(prefix=f"segment-{job_id}-") as tmp:
        local = Path(tmp) / ("speech" + Path(key).suffix)
        s3.download_file(bucket, key, str(local))
        clip = read_audio(local)
        samples = clip.samples
        if request.options.max_duration_s is not None:
            samples = samples[: int(request.options.max_duration_s * clip.sample_rate)]
        chunks = plan_chunks(
            samples,
            clip.sample_rate,
            max_chunk_s=config.parallel_chunk_seconds,
            min_chunk_s=config.parallel_min_chunk_seconds,
            overlap_s=config.parallel_overlap_seconds,
        )
        keys = []
        if len(chunks) > 1:
            for chunk in chunks:
                a, b = (
                    int(chunk.render_start_s * clip.sample_rate),
                    int(chunk.render_end_s * clip.sample_rate),
                )
                path = write_wav(Path(tmp) / f"chunk-{chunk.index:03d}.wav", samples[a:b], clip.sample_rate)
                keys.append(segment_key(job_id, path.name))
                s3.upload_file(str(path), config.work_bucket, keys[-1])
    plan = SegmentPlan(
        chunks=[ChunkPlan.model_validate(c.as_dict()) for c in chunks],
        audio_keys=keys,
        source=(bucket, key),
    )
    store.put_step_result(job_id, SEGMENT_RESULT, plan)
    # The Map state iterates over this list; the details stay in the table (state payloads are small).
    return SegmentOutput.of(plan)
