"""Segment: a parallel long avatar's speech is cut in its pauses into chunks the Map renders side by
side; each chunk's slice goes to the work bucket and the cut is kept for dispatch and stitch.
Speech that fits one chunk is not cut. Real audio throughout: tones with silences between them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile

from talkstack.contract.parse import parse_job_request
from talkstack.contract.record import JobRecord
from talkstack.contract.state import SegmentOutput, SegmentPlan
from talkstack.contract.worker import StepAddress, segment_key
from talkstack.media.audio import write_wav
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.segment import segment_job
from talkstack.pipeline.store import JobStore
from tests.support.fakes import FakeS3
from tests.support.steps import INPUT, WORK, avatar_request, make_config, worker_result

RATE = 16_000
SPEECH_KEY = "inputs/talk/speech.wav"
PHRASE_S, PAUSE_S = 2.5, 0.5


@pytest.fixture
def config(no_pipeline_environment: None) -> PipelineConfig:
    # Chunks of at most 6 s, at least 2 s (the defaults, 20 s and 5 s, would need minutes of speech)
    return make_config(parallel_chunk_seconds=6, parallel_min_chunk_seconds=2)


def speech(tmp_path: Path, phrases: int, name: str = "speech.wav") -> bytes:
    """`phrases` phrases of 2.5 s (a voiced tone with harmonics), each followed by a 0.5 s pause."""
    t = np.arange(int(PHRASE_S * RATE)) / RATE
    phrase = (0.3 * np.sin(2 * np.pi * 180 * t) + 0.1 * np.sin(2 * np.pi * 540 * t)).astype(np.float32)
    pause = np.zeros(int(PAUSE_S * RATE), np.float32)
    samples = np.concatenate([part for _ in range(phrases) for part in (phrase, pause)])
    return write_wav(tmp_path / name, samples, RATE).read_bytes()


def pauses(phrases: int) -> list[tuple[float, float]]:
    return [((i + 1) * 3.0 - PAUSE_S, (i + 1) * 3.0) for i in range(phrases)]


def queued(store: JobStore, s3: FakeS3, audio: bytes, **options: object) -> None:
    s3.put_object(Bucket=INPUT, Key=SPEECH_KEY, Body=audio)
    assert store.create(JobRecord.new("job-1", avatar_request(options={"long_audio": "parallel", **options})))


def duration(body: bytes) -> float:
    info = soundfile.info(io.BytesIO(body))
    return info.frames / info.samplerate


def test_speech_that_fits_one_chunk_is_not_cut(config, store, s3, tmp_path):
    # Given 6 s of speech (two phrases), no longer than a chunk
    queued(store, s3, speech(tmp_path, 2))

    output = segment_job("job-1", config, store, s3)

    # Then one chunk: the Map is skipped (count 1 → the single Avatar state), nothing is uploaded
    assert output == SegmentOutput(count=1, chunks=[{"index": 0}])
    assert s3.keys(WORK) == set()
    plan = store.get_step_result("job-1", "segment", SegmentPlan)
    assert not plan.parallel and plan.audio_keys == []
    (chunk,) = plan.chunks
    assert (chunk.start_s, chunk.end_s) == (0.0, pytest.approx(6.0))
    assert plan.source == (INPUT, SPEECH_KEY)


def test_long_speech_is_cut_in_its_pauses_and_each_slice_uploaded(config, store, s3, tmp_path):
    # Given 15 s of speech: five phrases with a pause after each
    queued(store, s3, speech(tmp_path, 5))

    output = segment_job("job-1", config, store, s3)

    # Then several chunks, each within the chunk limit, covering the whole speech without gaps
    plan = store.get_step_result("job-1", "segment", SegmentPlan)
    assert plan.parallel and output == SegmentOutput.of(plan) and output.count == len(plan.chunks) >= 3
    assert [c.index for c in plan.chunks] == list(range(output.count))
    assert plan.chunks[0].start_s == 0.0 and plan.chunks[-1].end_s == pytest.approx(15.0)
    for before, after in zip(plan.chunks, plan.chunks[1:], strict=False):
        assert before.end_s == after.start_s
    assert all(2 <= c.end_s - c.start_s <= 6 for c in plan.chunks)
    # every cut falls in a pause, never in a phrase
    for chunk in plan.chunks[1:]:
        assert chunk.at_pause and any(a <= chunk.start_s <= b for a, b in pauses(5)), chunk
    # and each chunk's slice (its share plus the overlap around the cuts) is in the work bucket
    assert plan.audio_keys == [segment_key("job-1", f"chunk-{c.index:03d}.wav") for c in plan.chunks]
    assert s3.keys(WORK) == set(plan.audio_keys)
    for chunk, key in zip(plan.chunks, plan.audio_keys, strict=True):
        sliced = duration(s3.objects[(WORK, key)].body)
        assert sliced == pytest.approx(chunk.render_end_s - chunk.render_start_s, abs=1 / RATE)
    assert plan.chunks[1].render_start_s < plan.chunks[1].start_s  # rendered with overlap, for the crossfade


@pytest.mark.parametrize(("cap", "chunked"), [(5.0, False), (10.0, True)])
def test_max_duration_cuts_the_speech_before_it_is_chunked(config, store, s3, tmp_path, cap, chunked):
    # Given 15 s of speech, and a request for only the first `cap` seconds of video
    queued(store, s3, speech(tmp_path, 5), max_duration_s=cap)

    segment_job("job-1", config, store, s3)

    plan = store.get_step_result("job-1", "segment", SegmentPlan)
    assert plan.chunks[-1].end_s == pytest.approx(cap) and plan.parallel == chunked
    if chunked:  # no slice reaches past the cap
        assert sum(duration(s3.objects[(WORK, k)].body) for k in plan.audio_keys) < cap + 1.0


def test_a_text_avatar_cuts_the_voice_steps_speech(config, store, s3, tmp_path):
    # Given a text-driven parallel avatar whose voice step delivered 15 s of speech
    request = parse_job_request(
        {
            "task": "avatar",
            "inputs": {"image": f"s3://{INPUT}/inputs/talk/portrait.png", "text": "A long speech."},
            "options": {"long_audio": "parallel"},
        }
    )
    assert store.create(JobRecord.new("job-1", request))
    voice = worker_result(s3, "job-1", "voice-1-0123456789", roles=("audio",), upload=False)
    key = voice.outputs["audio"].key
    s3.put_object(Bucket=WORK, Key=key, Body=speech(tmp_path, 5))
    store.put_step_result("job-1", StepAddress(step="voice"), voice)

    output = segment_job("job-1", config, store, s3)

    plan = store.get_step_result("job-1", "segment", SegmentPlan)
    assert plan.source == (WORK, key) and output.count > 1


def test_only_an_avatar_can_be_segmented(config, store, s3):
    assert store.create(
        JobRecord.new("job-1", parse_job_request({"task": "voice", "inputs": {"text": "Hi."}}))
    )

    with pytest.raises(KeyError, match="no avatar request"):
        segment_job("job-1", config, store, s3)
    assert store.get_step_result("job-1", "segment", SegmentPlan) is None
