"""Finalize: the main step's outputs are copied from the work bucket to their final keys (tagged with
the job id), the job is completed with what the steps reported, and result.json is written beside
the video. A completed job only gets its result.json again; a cancelled one publishes nothing, and
a cancel that wins while finalize copies takes back what was copied."""

from __future__ import annotations

import json
from typing import Any

import pytest

from talkstack.contract.composition import JobRequest
from talkstack.contract.events import JobEvent
from talkstack.contract.parse import parse_job_request
from talkstack.contract.quality import QualityReport
from talkstack.contract.record import JobRecord
from talkstack.contract.state import SegmentPlan
from talkstack.contract.worker import ChunkPlan, ResultMarker, StepAddress
from talkstack.pipeline.finalize import finalize_job
from talkstack.pipeline.store import JobStore
from tests.support.fakes import FakeS3, client_error
from tests.support.steps import (
    INPUT,
    OUTPUT,
    WORK,
    avatar_request,
    output_keys,
    quality_report,
    worker_result,
)

JOB_ID_METADATA = {"talkstack-job-id": "job-1"}


def rendered(
    store: JobStore, s3: FakeS3, request: JobRequest, main: str = "avatar", **result: Any
) -> ResultMarker:
    """A job whose engine steps are done: `main` step's result stored (its outputs in the work
    bucket), its steps finished, as complete leaves them."""
    record = JobRecord.new("job-1", request)
    for step in request.worker_steps:
        if step != "stitch" or main == "stitch":
            record.start_step(step, model=request.primary_model)  # type: ignore[arg-type]
            record.finish_step(step)  # type: ignore[arg-type]
    assert store.create(record)
    roles = ("audio",) if main == "voice" else ("video", "thumbnail")
    marker = worker_result(s3, "job-1", f"{main}-1-0123456789", roles=roles, **result)
    store.put_step_result("job-1", StepAddress(step=main), marker)  # type: ignore[arg-type]
    return marker


def segmented(store: JobStore, chunks: int) -> None:
    """The segment step's cut of a parallel avatar's speech into `chunks` chunks of 2 s."""
    plan = SegmentPlan(
        chunks=[
            ChunkPlan(
                index=k,
                start_s=2 * k,
                end_s=2 * k + 2,
                render_start_s=2 * k,
                render_end_s=2 * k + 2,
                at_pause=True,
            )
            for k in range(chunks)
        ],
        audio_keys=[] if chunks == 1 else [f"work/job-1/segments/chunk-{k:03d}.wav" for k in range(chunks)],
        source=(INPUT, "inputs/talk/speech.wav"),
    )
    store.put_step_result("job-1", "segment", plan)


def published(s3: FakeS3, bucket: str, key: str) -> tuple[bytes, dict[str, str], str]:
    obj = s3.objects[(bucket, key)]
    return obj.body, obj.metadata, obj.content_type


def test_the_outputs_are_published_and_the_job_completed(config, store, s3):
    # Given the avatar step delivered a 2 s 480×480 video and its thumbnail to the work bucket
    request = avatar_request()
    marker = rendered(store, s3, request, warnings=["face box guessed"])
    video, thumbnail = marker.outputs["video"], marker.outputs["thumbnail"]

    record = finalize_job("job-1", config, store, s3)

    # Then both are at their final keys, server-side copies tagged with the job id
    keys = output_keys(record)
    work = {role: s3.objects[(WORK, o.key)].body for role, o in marker.outputs.items()}
    assert published(s3, OUTPUT, keys["video"]) == (work["video"], JOB_ID_METADATA, "video/mp4")
    assert published(s3, OUTPUT, keys["thumbnail"]) == (work["thumbnail"], JOB_ID_METADATA, "image/jpeg")
    copies = s3.called("CopyObject")
    assert {c["CopySource"] for c in copies} == {f"{WORK}/{video.key}", f"{WORK}/{thumbnail.key}"}
    assert all(c["MetadataDirective"] == "REPLACE" for c in copies)
    # the job is completed with what the worker measured, and a finalize step
    stored = store.get("job-1")
    assert stored == record and stored.status == "completed" and stored.progress == 1.0
    result = stored.result
    assert [(o.kind, o.bucket, o.key, o.bytes) for o in result.outputs] == [
        ("video", OUTPUT, keys["video"], video.bytes),
        ("thumbnail", OUTPUT, keys["thumbnail"], thumbnail.bytes),
    ]
    assert (result.duration_s, result.width, result.height, result.fps) == (2.0, 480, 480, 25.0)
    assert result.bytes == video.bytes + thumbnail.bytes and result.warnings == ["face box guessed"]
    assert result.estimated_cost_usd is not None
    assert stored.step("finalize").status == "completed" and "finalize" in stored.timings
    # and result.json beside the video is the completed record
    body, metadata, content_type = published(s3, OUTPUT, keys["result"])
    assert JobRecord.model_validate_json(body) == stored
    assert (metadata, content_type) == (JOB_ID_METADATA, "application/json")
    # the inputs are untouched
    assert s3.keys(INPUT) == set()


def test_warnings_of_every_step_are_kept_once(config, store, s3):
    # Given a text avatar whose voice step and avatar step both reported warnings
    request = parse_job_request(
        {"task": "avatar", "inputs": {"image": f"s3://{INPUT}/inputs/talk/portrait.png", "text": "Hi."}}
    )
    rendered(store, s3, request, warnings=["text was normalised", "face box guessed"])
    voice = worker_result(
        s3, "job-1", "voice-1-0123456789", roles=("audio",), warnings=["text was normalised"]
    )
    store.put_step_result("job-1", StepAddress(step="voice"), voice)

    record = finalize_job("job-1", config, store, s3)

    assert record.result.warnings == ["text was normalised", "face box guessed"]
    # the voice step's speech is an intermediate: only the avatar's outputs are published
    assert [o.kind for o in record.result.outputs] == ["video", "thumbnail"]


def test_a_voice_job_publishes_its_audio(config, store, s3):
    request = parse_job_request({"task": "voice", "inputs": {"text": "Hi."}})
    marker = rendered(store, s3, request, main="voice", width=None, height=None, fps=None)

    record = finalize_job("job-1", config, store, s3)

    (audio,) = record.result.outputs
    assert (audio.kind, audio.key, audio.content_type) == ("audio", "job-1/speech.wav", "audio/wav")
    assert published(s3, OUTPUT, audio.key)[:2] == (
        s3.objects[(WORK, marker.outputs["audio"].key)].body,
        JOB_ID_METADATA,
    )


def test_outputs_go_where_the_request_asked(config, store, s3):
    # Given a request for its own bucket, a shared prefix and its own file name
    s3.buckets.add("their-bucket")
    request = avatar_request(output={"bucket": "their-bucket", "prefix": "shared", "filename": "mine.mp4"})
    rendered(store, s3, request)

    finalize_job("job-1", config, store, s3)

    assert s3.keys("their-bucket") == {
        "shared/mine.mp4",
        "shared/mine.thumbnail.jpg",
        "shared/mine.result.json",
    }
    assert s3.keys(OUTPUT) == set()


def test_a_parallel_avatar_publishes_the_stitched_video(config, store, s3):
    # Given the chunks were rendered and stitched
    request = avatar_request(options={"long_audio": "parallel"})
    stitched = rendered(store, s3, request, main="stitch")
    segmented(store, 2)
    for k in range(2):
        chunk = worker_result(s3, "job-1", f"avatar-c{k}-1-0123456789")
        store.put_step_result("job-1", StepAddress(step="avatar", chunk=k), chunk)

    record = finalize_job("job-1", config, store, s3)

    keys = output_keys(record)
    assert s3.objects[(OUTPUT, keys["video"])].body == s3.objects[(WORK, stitched.outputs["video"].key)].body
    assert record.status == "completed"


def test_a_parallel_avatar_whose_speech_fit_one_chunk_publishes_the_avatar_steps_video(config, store, s3):
    # Given a parallel avatar whose speech the segment step left in one chunk: the state machine took
    # the single Avatar state (HasChunks → Avatar), so no stitch step ran
    request = avatar_request(options={"long_audio": "parallel"})
    marker = rendered(store, s3, request, main="avatar")
    segmented(store, 1)

    record = finalize_job("job-1", config, store, s3)

    keys = output_keys(record)
    assert record.status == "completed"
    assert s3.objects[(OUTPUT, keys["video"])].body == s3.objects[(WORK, marker.outputs["video"].key)].body


def test_finalizing_a_completed_job_again_only_rewrites_result_json(config, store, s3):
    # Given finalize ran and completed the job (and its Lambda is retried)
    rendered(store, s3, avatar_request())
    first = finalize_job("job-1", config, store, s3)
    copies, puts = len(s3.called("CopyObject")), len(s3.called("PutObject"))

    again = finalize_job("job-1", config, store, s3)

    # Then nothing is copied twice and the record is the same; result.json is written again
    assert again == first == store.get("job-1")
    assert len(s3.called("CopyObject")) == copies
    (rewrite,) = s3.called("PutObject")[puts:]
    assert rewrite["Key"] == output_keys(first)["result"]


def test_a_job_cancelled_before_finalize_publishes_nothing(config, store, s3):
    rendered(store, s3, avatar_request())
    store.update("job-1", lambda r: r.mark_cancelled())
    work_objects = dict(s3.objects)

    record = finalize_job("job-1", config, store, s3)

    assert record.status == "cancelled" and store.get("job-1").status == "cancelled"
    assert s3.keys(OUTPUT) == set() and s3.objects == work_objects


class CancelWinsTheRace:
    """The DynamoDB client, but just before finalize's conditional write of the completed record
    lands, cancel takes the record (a real conditional write of its own, on the same table)."""

    def __init__(self, ddb: Any, store: JobStore) -> None:
        self.ddb, self.store, self.raced = ddb, store, False

    def put_item(self, **params: Any) -> Any:
        if not self.raced and params.get("ConditionExpression", "").startswith("version"):
            self.raced = True
            self.store.update("job-1", lambda r: r.mark_cancelled())
        return self.ddb.put_item(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ddb, name)


def test_a_cancel_that_wins_while_finalize_copies_takes_back_the_copies(config, store, ddb, s3):
    # Given the outputs are copied, then cancel writes the record before finalize can
    rendered(store, s3, avatar_request())
    racing = JobStore(store.table, CancelWinsTheRace(ddb, store))

    record = finalize_job("job-1", config, racing, s3)

    # Then the cancel stands and this job leaves nothing in the output bucket (no result.json either)
    assert record.status == "cancelled" and store.get("job-1").status == "cancelled"
    assert len(s3.called("CopyObject")) == 2 and s3.keys(OUTPUT) == set()


def test_a_job_whose_main_step_left_no_result_is_a_bug(config, store, s3):
    assert store.create(JobRecord.new("job-1", avatar_request()))

    with pytest.raises(RuntimeError, match="avatar step left no result"):
        finalize_job("job-1", config, store, s3)

    assert s3.keys(OUTPUT) == set() and store.get("job-1").status == "queued"


# --- the quality report ----------------------------------------------------------------------------


def test_the_avatar_steps_quality_report_is_the_jobs(config, store, s3):
    report = quality_report(lipsync=0.1)
    rendered(store, s3, avatar_request(), quality=report)

    record = finalize_job("job-1", config, store, s3)

    # On the record, in result.json beside the video, and in the job.completed event built from it
    assert record.result.quality == report and not record.result.quality.passed
    body = s3.objects[(OUTPUT, output_keys(record)["result"])].body
    assert JobRecord.model_validate_json(body).result.quality == report
    event = JobEvent.from_record(record, "job.completed")
    assert event.result.quality == report
    assert json.loads(event.model_dump_json())["result"]["quality"]["checks"][0]["name"] == "lipsync"


def test_a_job_without_a_report_has_none(config, store, s3):
    rendered(store, s3, avatar_request())

    assert finalize_job("job-1", config, store, s3).result.quality is None


def parallel_job(store: JobStore, s3: FakeS3, stitched: QualityReport | None, *chunks: ResultMarker) -> None:
    request = avatar_request(options={"long_audio": "parallel"})
    rendered(store, s3, request, main="stitch", quality=stitched)
    segmented(store, len(chunks))
    for k, chunk in enumerate(chunks):
        store.put_step_result("job-1", StepAddress(step="avatar", chunk=k), chunk)


def test_a_stitched_avatar_takes_the_stitch_steps_report_when_it_has_one(config, store, s3):
    stitched = quality_report(lipsync=0.5, colour_drift=1.0)
    chunks = [
        worker_result(s3, "job-1", f"avatar-c{k}-1-0123456789", quality=quality_report()) for k in (0, 1)
    ]
    parallel_job(store, s3, stitched, *chunks)

    assert finalize_job("job-1", config, store, s3).result.quality == stitched


def test_a_stitched_avatar_without_one_combines_its_chunks_reports(config, store, s3):
    # Given chunk 1 was rendered twice and failed twice (lip sync), chunk 0 drifted in colour but passed
    good = quality_report(lipsync=0.7, colour_drift=4.0)
    poor = quality_report(lipsync=0.2, colour_drift=1.0, av_offset_s=-0.04)
    warning = "chunk 1 was rendered again: … and was stitched anyway"
    chunks = [
        worker_result(s3, "job-1", "avatar-c0-1-0123456789", quality=good, warnings=["face box guessed"]),
        worker_result(s3, "job-1", "avatar-c1-2-0123456789", quality=poor, warnings=[warning]),
    ]
    parallel_job(store, s3, None, *chunks)

    result = finalize_job("job-1", config, store, s3).result

    # Then the job shows the worst of each measure, and fails as the failing chunk did
    quality = result.quality
    assert (quality.lipsync, quality.colour_drift, quality.av_offset_s) == (0.2, 4.0, -0.04)
    assert quality.frames == 100 and quality.passed is False
    checks = {c.name: c for c in quality.checks}
    assert checks["lipsync"].passed is False and checks["lipsync"].detail == "chunk 1"
    assert checks["colour"].value == 4.0 and checks["colour"].detail == "chunk 0"
    # and every chunk's warnings, the re-render's among them, are the job's
    assert result.warnings == ["face box guessed", warning]


# --- a completed job never loses its result (issue 15, finding 7) -----------------------------------


class WatchesTheCompletingWrite:
    """The DynamoDB client, noting what the output bucket holds at the moment the conditional write
    that turns the record completed is sent."""

    def __init__(self, ddb: Any, s3: FakeS3) -> None:
        self.ddb, self.s3 = ddb, s3
        self.seen: dict[str, bytes] | None = None

    def put_item(self, **params: Any) -> Any:
        record = json.loads(params["Item"].get("record", {}).get("S", "{}"))
        if record.get("status") == "completed" and self.seen is None:
            self.seen = {key: obj.body for (bucket, key), obj in self.s3.objects.items() if bucket == OUTPUT}
        return self.ddb.put_item(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ddb, name)


def test_result_json_is_in_place_before_the_record_says_completed(config, store, ddb, s3):
    # Given a job whose avatar step is done
    rendered(store, s3, avatar_request())
    watching = WatchesTheCompletingWrite(ddb, s3)

    record = finalize_job("job-1", config, JobStore(store.table, watching), s3)

    # Then when the record turned completed, every output and result.json (that very record) were there
    keys = output_keys(record)
    assert watching.seen is not None and set(watching.seen) == set(keys.values())
    assert JobRecord.model_validate_json(watching.seen[keys["result"]]) == record == store.get("job-1")


class ResultJsonFailsOnce(FakeS3):
    """S3, but the first PUT of a result.json fails (a throttled or dropped request)."""

    def __init__(self, s3: FakeS3) -> None:
        self.__dict__.update(s3.__dict__)
        self.failed = False

    def put_object(self, **params: Any) -> dict[str, Any]:
        if params["Key"].endswith("result.json") and not self.failed:
            self.failed = True
            raise client_error("PutObject", "SlowDown", "Please reduce your request rate.")
        return super().put_object(**params)


def test_a_failure_writing_result_json_leaves_the_job_running_and_the_retry_completes_it(config, store, s3):
    rendered(store, s3, avatar_request())
    flaky = ResultJsonFailsOnce(s3)

    # When writing result.json fails, finalize fails (the state machine retries it: job.asl.json)
    with pytest.raises(Exception, match="SlowDown"):
        finalize_job("job-1", config, store, flaky)
    # Then the record is not completed without its result.json
    assert store.get("job-1").status == "running"

    # and the retried finalize completes the job, result.json being the completed record
    record = finalize_job("job-1", config, store, flaky)
    assert record.status == "completed" and store.get("job-1") == record
    body, metadata, _ = published(flaky, OUTPUT, output_keys(record)["result"])
    assert JobRecord.model_validate_json(body) == record and metadata == JOB_ID_METADATA


class FailureWinsTheRace(CancelWinsTheRace):
    """Just before finalize's conditional write lands, the failure path records a failure (a step
    timeout while this Lambda still ran)."""

    def put_item(self, **params: Any) -> Any:
        if not self.raced and params.get("ConditionExpression", "").startswith("version"):
            self.raced = True
            self.store.update("job-1", lambda r: r.mark_failed(RuntimeError("timed out"), step="finalize"))
        return self.ddb.put_item(**params)


def test_a_job_failed_while_finalize_copies_keeps_nothing_and_stays_failed(config, store, ddb, s3):
    rendered(store, s3, avatar_request())
    racing = JobStore(store.table, FailureWinsTheRace(ddb, store))

    record = finalize_job("job-1", config, racing, s3)

    # Then the failure stands, and nothing of this job is left in the output bucket (result.json neither)
    assert record.status == "failed" and store.get("job-1").status == "failed"
    assert s3.keys(OUTPUT) == set()


def test_a_cancelled_finalize_never_takes_back_another_jobs_result_json_at_a_shared_key(
    config, store, ddb, s3
):
    # Given two jobs sharing a prefix: this avatar job's video is prefix/video.mp4, but both jobs'
    # result.json default to prefix/result.json, and the other job publishes its own there while this
    # one copies; then this job is cancelled before its record completes
    rendered(store, s3, avatar_request(output={"prefix": "shared"}))
    other = b'{"job_id": "voice-2"}'

    class OtherJobPublishesThenCancel(CancelWinsTheRace):
        def put_item(self, **params: Any) -> Any:
            if not self.raced and params.get("ConditionExpression", "").startswith("version"):
                s3.put_object(
                    Bucket=OUTPUT,
                    Key="shared/result.json",
                    Body=other,
                    Metadata={"talkstack-job-id": "voice-2"},
                )
            return super().put_item(**params)

    record = finalize_job("job-1", config, JobStore(store.table, OtherJobPublishesThenCancel(ddb, store)), s3)

    # Then this job's copies are gone, and the other job's result.json is untouched
    assert record.status == "cancelled"
    assert s3.keys(OUTPUT) == {"shared/result.json"}
    assert s3.get_object(Bucket=OUTPUT, Key="shared/result.json")["Body"].read() == other


class AnotherRunCompletesFirst:
    """The DynamoDB client of a finalize run that loses the race for the record: right after its
    update has read the record (still running), another run of the step completes the job."""

    def __init__(self, ddb: Any, winner: Any) -> None:
        self.ddb, self.winner, self.reads = ddb, winner, 0

    def get_item(self, **params: Any) -> Any:
        answer = self.ddb.get_item(**params)
        if params["Key"]["sk"]["S"] == "RECORD":
            self.reads += 1
            if self.reads == 2:  # the first is finalize's own look at the record; the second, update's
                self.winner()
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ddb, name)


def test_when_two_finalize_runs_race_result_json_is_the_stored_records(config, store, ddb, s3):
    rendered(store, s3, avatar_request())
    racing = JobStore(
        store.table, AnotherRunCompletesFirst(ddb, lambda: finalize_job("job-1", config, store, s3))
    )

    # When the losing run's callback writes result.json of its own record, its write of the record
    # fails, and its retry finds the record completed by the other run
    record = finalize_job("job-1", config, racing, s3)

    # Then result.json is the record that was stored, not the losing run's
    stored = store.get("job-1")
    assert record.status == "completed"
    written = json.loads(s3.get_object(Bucket=OUTPUT, Key="job-1/result.json")["Body"].read())
    assert written == json.loads(stored.model_dump_json())


def test_a_job_cancelled_before_finalize_is_never_copied_even_for_a_moment(config, store, s3):
    # A copy taken back afterwards would still be readable (and downloadable) in between
    rendered(store, s3, avatar_request())
    store.update("job-1", lambda r: r.mark_cancelled())
    s3.calls.clear()

    finalize_job("job-1", config, store, s3)

    assert [c for c in s3.calls if c[0] in ("CopyObject", "PutObject", "DeleteObject")] == []


def test_the_video_is_listed_first_whatever_order_the_worker_reported(config, store, s3):
    # Given a worker whose result names its thumbnail before its video
    record = JobRecord.new("job-1", avatar_request())
    record.start_step("avatar", model="lite-avatar")
    record.finish_step("avatar")
    assert store.create(record)
    marker = worker_result(s3, "job-1", "avatar-1-0123456789", roles=("thumbnail", "video"))
    store.put_step_result("job-1", StepAddress(step="avatar"), marker)
    assert list(marker.outputs) == ["thumbnail", "video"]

    done = finalize_job("job-1", config, store, s3)

    # Then the job's outputs are in their fixed order: the video first, then the thumbnail
    assert [o.kind for o in done.result.outputs] == ["video", "thumbnail"]


def test_each_target_is_looked_at_once_before_it_is_copied(config, store, s3):
    # The check before publishing found each target's write condition; the copies use it rather
    # than HEAD every target a second time.
    request = avatar_request()
    rendered(store, s3, request)

    record = finalize_job("job-1", config, store, s3)

    keys = output_keys(record)
    heads = [c["Key"] for c in s3.called("HeadObject") if c["Bucket"] == OUTPUT]
    assert heads.count(keys["video"]) == 1 and heads.count(keys["thumbnail"]) == 1
