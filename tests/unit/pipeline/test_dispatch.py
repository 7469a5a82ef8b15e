"""Dispatch: the task document a worker gets for each kind of step (typed options, pre-signed URLs
for exactly the objects it may read and write, expiring with the step), the attempt recorded (token
under the attempt id, step running on its backend) and the worker started; a job that is already
over starts nothing."""

from __future__ import annotations

from typing import Any

import pytest

from talkstack.contract.composition import JobRequest
from talkstack.contract.parse import parse_job_request
from talkstack.contract.record import JobRecord, utc_now
from talkstack.contract.state import DispatchInput, SegmentPlan
from talkstack.contract.worker import (
    AvatarTask,
    ChunkPlan,
    StepAddress,
    StitchTask,
    VideoTask,
    VoiceTask,
    WorkerTaskBase,
    cancel_flag_key,
    marker_key,
    segment_key,
    work_key,
)
from talkstack.errors import TalkstackError
from talkstack.pipeline.dispatch import dispatch_step
from talkstack.pipeline.plan import plan_for, plan_job
from talkstack.pipeline.step_results import rejected_name, stored_plan
from talkstack.pipeline.store import AttemptToken, JobStore
from tests.support.fakes import FakeBackends, FakeS3
from tests.support.steps import INPUT, JOBS_TABLE, WORK, avatar_request, worker_result

IMAGE, VOICE = f"s3://{INPUT}/inputs/talk/portrait.png", f"s3://{INPUT}/inputs/talk/voice.wav"


@pytest.fixture
def backends() -> FakeBackends:
    return FakeBackends()


def planned(config, store: JobStore, request: JobRequest, job_id: str = "job-1") -> str:
    """A queued job the Plan state has run for (its plan is in the table)."""
    assert store.create(JobRecord.new(job_id, request))
    plan_job(job_id, config, store)
    return job_id


def dispatch(config, store, s3, backends, step: str = "avatar", **fields: Any):
    event = DispatchInput.model_validate({"task_token": "token-1", "job_id": "job-1", "step": step, **fields})
    return dispatch_step(event, config, store, s3, backends)


def grant(s3: FakeS3, url: str) -> tuple[str, str, str, str | None]:
    """What a URL in the task lets its holder do: (operation, bucket, key, content type to send)."""
    params = s3.presigned[url]
    return params["ClientMethod"], params["Bucket"], params["Key"], params.get("ContentType")


def lifetime(store: JobStore, step: str) -> int:
    # docs/pipeline.md: URLs expire 5 minutes after the step's timeout (when the attempt is over).
    limits = stored_plan(store, "job-1").limits(step)  # type: ignore[arg-type]
    return limits.timeout_s + 300


def token_items(ddb: Any, job_id: str) -> list[dict[str, Any]]:
    """The TOKEN# items of a job, read from the table itself."""
    return ddb.query(
        TableName=JOBS_TABLE,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :t)",
        ExpressionAttributeValues={":pk": {"S": f"JOB#{job_id}"}, ":t": {"S": "TOKEN#"}},
    )["Items"]


def text_avatar(**options: Any) -> JobRequest:
    inputs = {"image": IMAGE, "text": "Hello there.", "reference_voice": VOICE}
    return parse_job_request({"task": "avatar", "inputs": inputs, "options": options})


def test_an_avatar_task_grants_its_inputs_outputs_and_markers_until_the_step_is_over(
    config, store, s3, backends
):
    # Given a queued audio avatar with its plan
    request = avatar_request(options={"seed": 7, "max_duration_s": 12})
    planned(config, store, request)
    before = utc_now()

    # When the Avatar state dispatches it
    task, record, first = dispatch(config, store, s3, backends)

    # Then the worker got an avatar task with the request's typed options
    assert isinstance(task, AvatarTask) and backends.submitted == [task]
    assert task.model == "lite-avatar" and task.options == request.options and task.text is None
    attempt = task.attempt_id
    assert attempt.startswith("avatar-1-") and task.attempt == 1
    # GETs of the request's media, named as the engine expects them
    assert {name: (grant(s3, i.url), i.filename) for name, i in task.inputs.items()} == {
        "image": (("get_object", INPUT, "inputs/talk/portrait.png", None), "image.png"),
        "audio": (("get_object", INPUT, "inputs/talk/speech.wav", None), "audio.wav"),
    }
    # PUTs of its outputs under work/<job>/<attempt>/, with the content type the worker must send
    assert {role: grant(s3, o.url) for role, o in task.outputs.items()} == {
        "video": ("put_object", WORK, work_key("job-1", attempt, "video.mp4"), "video/mp4"),
        "thumbnail": ("put_object", WORK, work_key("job-1", attempt, "thumbnail.jpg"), "image/jpeg"),
    }
    assert all(o.key == grant(s3, o.url)[2] for o in task.outputs.values())
    # PUTs of the three markers (whose keys lead complete back to this attempt), GET of the cancel flag
    for kind in ("progress", "result", "error"):
        assert grant(s3, getattr(task.markers, kind).url) == (
            "put_object",
            WORK,
            marker_key("job-1", attempt, kind),
            "application/json",
        )
    assert grant(s3, task.cancel_url) == ("get_object", WORK, cancel_flag_key("job-1"), None)
    # Every URL expires shortly after the step's own time is up, and the deadline says when
    expiry = lifetime(store, "avatar")
    presigned = s3.called("generate_presigned_url")
    assert len(presigned) == 2 + 2 + 3 + 1 and {p["ExpiresIn"] for p in presigned} == {expiry}
    assert before.timestamp() + expiry <= task.deadline.timestamp() <= utc_now().timestamp() + expiry
    limits = stored_plan(store, "job-1").limits("avatar")
    assert task.heartbeat_interval_s == limits.heartbeat_s / 3

    # And the attempt is recorded: its token and its call under the attempt id, the step running on
    # its backend
    assert store.get_token("job-1", attempt) == AttemptToken(
        "token-1", StepAddress(step="avatar"), "waiting", call_id="local:call-1"
    )
    stored = store.get("job-1")
    assert stored == record and first and stored.status == "running"
    step = stored.step("avatar")
    assert (step.status, step.backend, step.model, step.attempts) == ("running", "local", "lite-avatar", 1)
    assert step.call_id == "local:call-1"
    assert backends.models == ["lite-avatar"]


def test_a_retry_is_a_new_attempt_of_the_same_step(config, store, s3, backends, ddb):
    # Given the first attempt was dispatched (and timed out)
    planned(config, store, avatar_request())
    first, _, _ = dispatch(config, store, s3, backends)

    # When Step Functions retries the state with a new token
    again, record, first_step = dispatch(config, store, s3, backends, task_token="token-2", retry_count=1)

    # Then it is attempt 2, under its own id and token; the first attempt's token is still its own
    assert again.attempt_id.startswith("avatar-2-") and again.attempt == 2
    assert again.attempt_id != first.attempt_id and not first_step
    assert store.get_token("job-1", again.attempt_id).token == "token-2"
    assert store.get_token("job-1", first.attempt_id).token == "token-1"
    assert len(token_items(ddb, "job-1")) == 2
    step = record.step("avatar")
    assert step.attempts == 2 and step.call_id == "local:call-2"


def test_a_step_on_modal_records_the_modal_call(config, store, s3):
    planned(config, store, avatar_request())
    backends = FakeBackends(name="modal")

    task, _, _ = dispatch(config, store, s3, backends)

    step = store.get("job-1").step("avatar")
    assert step.backend == "modal" and step.call_id == "modal:call-1" and backends.submitted == [task]


def test_a_text_avatar_speaks_first_with_its_voice_options_then_renders_the_speech(
    config, store, s3, backends
):
    # Given a text-driven avatar with a voice to clone
    request = text_avatar(speed=1.2, emotion="happy", voice={"pitch": 2.0})
    planned(config, store, request)

    # When the Voice state dispatches
    voice, _, first = dispatch(config, store, s3, backends, step="voice")

    # Then the voice task carries the avatar's voice options (always WAV), the text and the voice to
    # clone, and nothing of the avatar's
    assert isinstance(voice, VoiceTask) and first
    assert voice.options == request.voice_step_options() and voice.options.format == "wav"
    assert voice.options.speed == 1.2 and voice.options.pitch == 2.0 and voice.text == "Hello there."
    assert {n: grant(s3, i.url)[1:3] for n, i in voice.inputs.items()} == {
        "reference_voice": (INPUT, "inputs/talk/voice.wav")
    }
    assert {role: grant(s3, o.url)[2:] for role, o in voice.outputs.items()} == {
        "audio": (work_key("job-1", voice.attempt_id, "speech.wav"), "audio/wav")
    }
    assert store.get_token("job-1", voice.attempt_id).step == StepAddress(step="voice")

    # When the voice step has delivered and the Avatar state dispatches
    speech = worker_result(s3, "job-1", voice.attempt_id, roles=("audio",))
    store.put_step_result("job-1", StepAddress(step="voice"), speech)
    avatar, record, first = dispatch(config, store, s3, backends, task_token="token-2")

    # Then the avatar renders the voice step's speech from the work bucket, and the photo
    assert isinstance(avatar, AvatarTask) and not first and avatar.text is None
    assert {n: (grant(s3, i.url), i.filename) for n, i in avatar.inputs.items()} == {
        "image": (("get_object", INPUT, "inputs/talk/portrait.png", None), "image.png"),
        "audio": (("get_object", WORK, speech.outputs["audio"].key, None), "audio.wav"),
    }
    assert record.step("avatar").status == "running"


def test_a_voice_job_writes_its_format(config, store, s3, backends):
    request = parse_job_request({"task": "voice", "inputs": {"text": "Hi."}, "options": {"format": "mp3"}})
    planned(config, store, request)

    task, _, _ = dispatch(config, store, s3, backends, step="voice")

    assert isinstance(task, VoiceTask) and task.options == request.options and task.text == "Hi."
    assert task.inputs == {}
    assert {role: grant(s3, o.url)[2:] for role, o in task.outputs.items()} == {
        "audio": (work_key("job-1", task.attempt_id, "speech.mp3"), "audio/mpeg")
    }


def test_a_video_task_carries_the_prompt_and_the_first_frame(config, store, s3, backends):
    request = parse_job_request(
        {"task": "video", "inputs": {"prompt": "waves", "image": IMAGE}, "options": {"duration_s": 3}}
    )
    planned(config, store, request)

    task, record, _ = dispatch(config, store, s3, backends, step="video")

    assert isinstance(task, VideoTask) and task.options == request.options and task.text == "waves"
    assert task.model == "ltx-video" and record.step("video").model == "ltx-video"
    assert {n: grant(s3, i.url)[1:3] for n, i in task.inputs.items()} == {
        "image": (INPUT, "inputs/talk/portrait.png")
    }
    assert set(task.outputs) == {"video", "thumbnail"}


def cut_in_three(store: JobStore, job_id: str = "job-1") -> SegmentPlan:
    """What the segment step leaves for a speech cut into three chunks."""
    bounds = [(0.0, 6.0), (6.0, 12.0), (12.0, 16.0)]
    plan = SegmentPlan(
        chunks=[
            ChunkPlan(
                index=i,
                start_s=a,
                end_s=b,
                render_start_s=max(0.0, a - 0.16),
                render_end_s=min(16.0, b + 0.16),
                at_pause=True,
            )
            for i, (a, b) in enumerate(bounds)
        ],
        audio_keys=[segment_key(job_id, f"chunk-{i:03d}.wav") for i in range(3)],
        source=(INPUT, "inputs/talk/speech.wav"),
    )
    store.put_step_result(job_id, "segment", plan)
    return plan


def test_a_chunk_renders_its_slice_of_the_speech_uncut(config, store, s3, backends):
    # Given a parallel long avatar capped at 15 s, whose speech the segment step cut in three
    request = avatar_request(options={"long_audio": "parallel", "max_duration_s": 15})
    planned(config, store, request)
    segments = cut_in_three(store)

    # When the Map dispatches chunk 1
    task, record, _ = dispatch(config, store, s3, backends, chunk=1)

    # Then it renders chunk 1's slice from the work bucket with no second cap (the slice is cut already)
    assert isinstance(task, AvatarTask)
    assert grant(s3, task.inputs["audio"].url) == ("get_object", WORK, segments.audio_keys[1], None)
    assert task.inputs["audio"].filename == "audio.wav"
    assert grant(s3, task.inputs["image"].url)[1:3] == (INPUT, "inputs/talk/portrait.png")
    assert task.options.max_duration_s is None
    assert task.options == request.options.model_copy(update={"max_duration_s": None})
    # Its attempt id names the chunk (ids are key segments: no "#"), and so does its token
    assert task.attempt_id.startswith("avatar-c1-1-")
    assert store.get_token("job-1", task.attempt_id).step == StepAddress(step="avatar", chunk=1)
    assert record.step("avatar").status == "running"


@pytest.mark.parametrize("seed, again", [(None, 1), (7, 8), (2**32 - 1, 0)])
def test_a_chunk_rendered_again_for_quality_gets_another_seed(config, store, s3, backends, seed, again):
    # Given chunk 1's first render was set aside for quality (complete keeps it as rejected:avatar#1)
    options = {"long_audio": "parallel"} | ({} if seed is None else {"seed": seed})
    planned(config, store, avatar_request(options=options))
    cut_in_three(store)
    first, _, _ = dispatch(config, store, s3, backends, chunk=1, task_token="token-1")
    rejected = worker_result(s3, "job-1", first.attempt_id)
    store.put_step_result("job-1", rejected_name(StepAddress(step="avatar", chunk=1)), rejected)

    # When the AvatarChunk retrier dispatches chunk 1 again
    retry, _, _ = dispatch(config, store, s3, backends, chunk=1, task_token="token-2", retry_count=1)

    # Then the new render draws with another seed (the engines are seeded and deterministic: the same
    # seed would render the same failing video), and chunk 0 keeps the job's own
    assert isinstance(first, AvatarTask) and isinstance(retry, AvatarTask)
    assert first.options.seed == seed and retry.options.seed == again
    other, _, _ = dispatch(config, store, s3, backends, chunk=0, task_token="token-0")
    assert isinstance(other, AvatarTask) and other.options.seed == seed


def test_chunks_side_by_side_are_one_avatar_step(config, store, s3, backends):
    planned(config, store, avatar_request(options={"long_audio": "parallel"}))
    cut_in_three(store)

    tasks = [dispatch(config, store, s3, backends, chunk=k, task_token=f"token-{k}")[0] for k in range(3)]

    # Three workers, three attempts with their own tokens, but one avatar step started once
    assert len(backends.submitted) == 3 and len({t.attempt_id for t in tasks}) == 3
    assert [store.get_token("job-1", t.attempt_id).step.chunk for t in tasks] == [0, 1, 2]
    steps = store.get("job-1").steps
    assert [(s.name, s.status, s.attempts) for s in steps] == [("avatar", "running", 1)]


def test_stitch_joins_every_chunks_video_under_the_original_speech(config, store, s3, backends):
    # Given every chunk of a parallel avatar has delivered
    planned(config, store, avatar_request(options={"long_audio": "parallel"}))
    segments = cut_in_three(store)
    chunk_videos = []
    for k in range(3):
        chunk, _, _ = dispatch(config, store, s3, backends, chunk=k, task_token=f"token-{k}")
        result = worker_result(s3, "job-1", chunk.attempt_id)
        store.put_step_result("job-1", StepAddress(step="avatar", chunk=k), result)
        chunk_videos.append(result.outputs["video"].key)

    # When the Stitch state dispatches
    task, record, _ = dispatch(config, store, s3, backends, step="stitch", task_token="token-s")

    # Then the stitcher gets the cut points, each chunk's video, the speech they were cut from and
    # the photo (the chunks' colour reference and the quality report's identity reference)
    assert isinstance(task, StitchTask) and task.options.chunks == segments.chunks
    assert {n: (grant(s3, i.url)[1:3], i.filename) for n, i in task.inputs.items()} == {
        "chunk_0": ((WORK, chunk_videos[0]), "chunk_0.mp4"),
        "chunk_1": ((WORK, chunk_videos[1]), "chunk_1.mp4"),
        "chunk_2": ((WORK, chunk_videos[2]), "chunk_2.mp4"),
        "audio": ((INPUT, "inputs/talk/speech.wav"), "audio.wav"),
        "image": ((INPUT, "inputs/talk/portrait.png"), "image.png"),
    }
    assert set(task.outputs) == {"video", "thumbnail"} and task.model == "stitch"
    # and every chunk being in, the avatar step is done and the stitch step runs
    assert record.step("avatar").status == "completed" and record.step("stitch").status == "running"


def test_a_cancelled_job_starts_no_worker(config, store, s3, backends, ddb):
    # Given the job was cancelled while the execution was on its way to the engine state
    planned(config, store, avatar_request())
    store.update("job-1", lambda r: r.mark_cancelled())

    with pytest.raises(TalkstackError) as caught:
        dispatch(config, store, s3, backends)

    # Then it is a conflict; no worker, no token, no step
    assert caught.value.code == "CONFLICT" and "cancelled" in caught.value.message
    assert backends.submitted == [] and token_items(ddb, "job-1") == []
    assert store.get("job-1").steps == []


def test_a_job_planned_without_a_stored_plan_is_planned_again(config, store, s3, backends, ddb):
    # Given a job whose Plan state ran under a version that did not store the plan (in flight across
    # a deploy)
    request = avatar_request()
    assert store.create(JobRecord.new("job-1", request))

    task, _, _ = dispatch(config, store, s3, backends)

    # Then its worker starts with the limits the request implies, as the Plan state computes them
    limits = plan_for(request, config).limits("avatar")
    assert task.heartbeat_interval_s == max(0.5, limits.heartbeat_s / 3)
    assert len(backends.submitted) == 1 and len(token_items(ddb, "job-1")) == 1


def test_an_avatar_before_its_voice_step_delivered_is_a_bug(config, store, s3, backends, ddb):
    planned(config, store, text_avatar())

    with pytest.raises(RuntimeError, match="voice step left no result"):
        dispatch(config, store, s3, backends)

    assert backends.submitted == [] and token_items(ddb, "job-1") == []


def test_a_job_without_a_record_is_refused(config, store, s3, backends):
    with pytest.raises(KeyError, match="job-1"):
        dispatch(config, store, s3, backends)
    assert backends.submitted == []


def test_every_task_is_a_valid_worker_document(config, store, s3, backends):
    # The task the worker receives parses as the step's own kind (FakeBackends sends it through JSON)
    planned(config, store, avatar_request())
    task, _, _ = dispatch(config, store, s3, backends)
    (received,) = backends.submitted
    assert isinstance(received, WorkerTaskBase) and type(received) is type(task) and received == task
