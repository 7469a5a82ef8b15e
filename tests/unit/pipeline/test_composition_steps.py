"""A composition through the steps: its plan (one Map item per scene with that scene's flags, limits
for matte and compose), the tasks dispatch builds for a scene's engine steps, its matte step and the
compose step (inputs by scene role, outputs the compositor writes, one watermark), per-scene
progress, and finalize publishing every output of the compose step beside the video. Real step
code, the real JobStore on moto's DynamoDB, in-memory S3 and backends (tests/support/fakes.py)."""

from __future__ import annotations

from typing import Any
from unittest.mock import MagicMock, patch

import pytest

from talkstack.contract.composition import CompositionRequest, scene_role
from talkstack.contract.events import JobEvent
from talkstack.contract.parse import parse_job_request
from talkstack.contract.record import JobRecord, utc_now
from talkstack.contract.state import DispatchInput
from talkstack.contract.worker import (
    ComposeTask,
    InputUrl,
    MatteTask,
    OutputObject,
    ProgressMarker,
    ResultMarker,
    StepAddress,
    VoiceTask,
    marker_key,
    work_key,
)
from talkstack.pipeline.complete import Completer
from talkstack.pipeline.cost import gpu_seconds
from talkstack.pipeline.dispatch import dispatch_step
from talkstack.pipeline.finalize import finalize_job
from talkstack.pipeline.plan import plan_job
from talkstack.pipeline.scenes import matte_parts
from talkstack.pipeline.store import JobStore
from tests.support.fakes import FakeBackends, FakeS3
from tests.support.steps import INPUT, OUTPUT, WORK, worker_result

MEDIA = f"s3://{INPUT}/inputs/comp"


def composition(preview: bool = False, **changes: Any) -> CompositionRequest:
    """Three scenes: a text-driven avatar cut out over a colour (voice → avatar → matte), a title
    card (no engine), and an uploaded clip cut out over an image background, with a transcript."""
    raw: dict[str, Any] = {
        "task": "composition",
        "preview": preview,
        "scenes": [
            {
                "source": {
                    "type": "avatar",
                    "inputs": {"image": f"{MEDIA}/portrait.png", "text": "Welcome to the show."},
                },
                "layout": {"type": "background", "position": "right", "scale": 0.9},
                "background": {"type": "colour", "colour": "#00AA00"},
                "overlays": [{"type": "lower_third", "text": "Grace", "secondary": "Host"}],
                "transition": {"type": "crossfade", "duration_s": 0.5},
            },
            {"source": {"type": "title", "title": "Chapter one"}, "duration_s": 2},
            {
                "source": {"type": "media", "media": f"{MEDIA}/clip.mp4"},
                "layout": {"type": "background"},
                "background": {"type": "image", "media": f"{MEDIA}/studio.jpg"},
                "transcript": "This is the clip.",
            },
        ],
        "options": {"music": {"media": f"{MEDIA}/music.mp3"}},
        **changes,
    }
    request = parse_job_request(raw)
    assert isinstance(request, CompositionRequest)
    return request


@pytest.fixture
def backends() -> FakeBackends:
    return FakeBackends()


def planned(config, store: JobStore, request: CompositionRequest) -> None:
    assert store.create(JobRecord.new("job-1", request))
    plan_job("job-1", config, store)


def dispatch(config, store, s3, backends, step: str, scene: int | None = None, token: str = "token-1"):
    fields: dict[str, Any] = {"task_token": token, "job_id": "job-1", "step": step}
    if scene is not None:
        fields["scene"] = scene
    task, _, _ = dispatch_step(DispatchInput.model_validate(fields), config, store, s3, backends)
    return task


def delivered(store: JobStore, s3: FakeS3, address: StepAddress, files: dict[str, str]) -> ResultMarker:
    """A worker's result for `address`: `files` (role → file name) PUT in the work bucket."""
    attempt = f"{address.attempt_stem}-1-0123456789"
    outputs = {}
    for role, name in files.items():
        key = work_key("job-1", attempt, name)
        s3.put_object(Bucket=WORK, Key=key, Body=f"{role} of {address}".encode())
        outputs[role] = OutputObject(key=key, bytes=len(f"{role} of {address}"), content_type="video/mp4")
    marker = worker_result(s3, "job-1", attempt, roles=(), **{"duration_s": 3.0})
    marker = marker.model_copy(update={"outputs": outputs})
    store.put_step_result("job-1", address, marker)
    return marker


def grant(s3: FakeS3, url: str) -> tuple[str, str, str]:
    params = s3.presigned[url]
    return params["ClientMethod"], params["Bucket"], params["Key"]


# --- plan ---------------------------------------------------------------------------------------


def test_the_plan_has_one_map_item_per_scene_with_its_steps(config, store):
    planned(config, store, composition())
    record = store.get("job-1")
    from talkstack.pipeline.step_results import stored_plan

    plan = stored_plan(store, "job-1")
    assert plan.main == "composition" and not plan.voice and not plan.segment
    assert [(s.index, s.voice, s.main, s.matte) for s in plan.scenes] == [
        (0, True, "avatar", True),
        (1, False, "none", False),
        (2, False, "none", True),
    ]
    assert plan.steps == ["voice", "avatar", "matte", "compose"]
    # compose and matte are planned for the whole video (≥ the minimum step time)
    assert plan.limits("compose").timeout_s >= config.min_step_timeout_seconds
    assert plan.limits("matte").timeout_s >= config.min_step_timeout_seconds
    assert record.status == "queued"


def test_a_preview_plans_no_engine_for_a_generated_clip(config, store):
    request = composition(preview=True)
    data = request.model_dump(mode="json", exclude_unset=True)
    data["scenes"][1] = {"source": {"type": "video", "inputs": {"prompt": "a sunrise"}}}
    planned(config, store, parse_job_request(data))
    from talkstack.pipeline.step_results import stored_plan

    assert stored_plan(store, "job-1").scenes[1].main == "none"


@pytest.mark.parametrize(
    ("backends", "caps", "expected"),
    [
        ("lite-avatar=modal", {"AVATAR": 2}, 2),  # scene 0's avatar step
        ("lite-matte=modal", {"MATTE": 3, "AVATAR": 1}, 3),  # scenes 0 and 2 cut out; no avatar there
        ("", {"AVATAR": 1}, 8),  # the local pool: what the key was given
    ],
)
def test_scenes_on_modal_never_outnumber_the_containers_of_the_classes_they_use(
    store, monkeypatch, backends, caps, expected
):
    # A scene started beyond its class's container cap would wait in Modal's queue without a
    # heartbeat, its attempt (and its URLs) running out before it began.
    from talkstack.contract.record import JobSource
    from talkstack.pipeline.plan import max_concurrency
    from talkstack.settings.modal_deploy import get_modal_deploy
    from tests.support.steps import make_config

    for family, cap in caps.items():
        monkeypatch.setenv(f"TALKSTACK_{family}_MAX_CONTAINERS", str(cap))
    get_modal_deploy.cache_clear()
    try:
        config = make_config(model_backends=backends, parallel_max_concurrency=16)
        source = JobSource(kind="api", api_key_id="k1", gpu_slots=8)
        assert max_concurrency(source, composition(), config) == expected
    finally:
        get_modal_deploy.cache_clear()


# --- dispatch -----------------------------------------------------------------------------------


def test_a_scenes_voice_step_also_writes_its_word_timings_and_is_not_watermarked(config, store, s3, backends):
    planned(config, store, composition())

    task = dispatch(config, store, s3, backends, "voice", scene=0)

    assert isinstance(task, VoiceTask) and task.text == "Welcome to the show."
    assert task.attempt_id.startswith("voice-s0-")
    assert set(task.outputs) == {"audio", "words"}
    assert task.outputs["words"].content_type == "application/json"
    assert grant(s3, task.outputs["words"].url) == (
        "put_object",
        WORK,
        work_key("job-1", task.attempt_id, "words.json"),
    )
    assert task.watermark is False  # compose marks the finished video once


def test_a_scenes_avatar_step_speaks_its_own_voice_steps_audio(config, store, s3, backends):
    planned(config, store, composition())
    voice = delivered(
        store, s3, StepAddress(step="voice", scene=0), {"audio": "speech.wav", "words": "words.json"}
    )

    task = dispatch(config, store, s3, backends, "avatar", scene=0)

    assert task.model == "lite-avatar" and task.options.fps == 25 and task.watermark is False
    assert grant(s3, task.inputs["audio"].url) == ("get_object", WORK, voice.outputs["audio"].key)
    assert grant(s3, task.inputs["image"].url) == ("get_object", INPUT, "inputs/comp/portrait.png")
    assert set(task.outputs) == {"video", "thumbnail"}


def test_matte_takes_the_scenes_render_and_photo_or_its_upload(config, store, s3, backends):
    planned(config, store, composition())
    avatar = delivered(store, s3, StepAddress(step="avatar", scene=0), {"video": "video.mp4"})

    rendered = dispatch(config, store, s3, backends, "matte", scene=0, token="token-a")
    uploaded = dispatch(config, store, s3, backends, "matte", scene=2, token="token-b")

    assert isinstance(rendered, MatteTask) and rendered.model == "lite-matte"
    assert rendered.options.scene == 0 and rendered.options.model == "lite-matte"
    assert grant(s3, rendered.inputs["video"].url) == ("get_object", WORK, avatar.outputs["video"].key)
    assert grant(s3, rendered.inputs["image"].url) == ("get_object", INPUT, "inputs/comp/portrait.png")
    assert set(rendered.outputs) == {"mask"} and rendered.outputs["mask"].key.endswith("/mask.mp4")
    assert grant(s3, uploaded.inputs["video"].url) == ("get_object", INPUT, "inputs/comp/clip.mp4")
    assert uploaded.inputs["video"].filename == "video.mp4" and "image" not in uploaded.inputs


def test_a_preview_cuts_people_out_with_lite_matte_whatever_the_request_names(config, store, s3, backends):
    # A preview holds none of the key's GPU tasks and is never charged GPU time: a GPU matte model
    # named in the request (or the deployment's) must not run in it.
    gpu_config = config.model_copy(update={"matte_model": "vitmatte"})
    planned(gpu_config, store, composition(preview=True, options={"matte_model": "vitmatte"}))
    delivered(store, s3, StepAddress(step="avatar", scene=0), {"video": "video.mp4"})

    task = dispatch(gpu_config, store, s3, backends, "matte", scene=0)

    assert isinstance(task, MatteTask) and task.model == "lite-matte"
    assert task.options.model == "lite-matte"
    assert store.get("job-1").step("matte").model == "lite-matte"


def test_a_full_render_cuts_people_out_with_the_matte_model_it_names(config, store, s3, backends):
    planned(config, store, composition(options={"matte_model": "vitmatte"}))
    delivered(store, s3, StepAddress(step="avatar", scene=0), {"video": "video.mp4"})

    task = dispatch(config, store, s3, backends, "matte", scene=0)

    assert isinstance(task, MatteTask) and task.model == "vitmatte"


class _Signer:
    def get(self, bucket: str, key: str, filename: str) -> InputUrl:
        return InputUrl(url=f"https://{bucket}/{key}", filename=filename)


def test_only_a_lite_avatars_matte_gets_its_photo(config, store, s3, backends):
    """A GPU engine redraws the whole frame: its matte is made frame by frame, without the photo
    (as the offline render does); a preview renders it with lite-avatar, whose matte gets it."""
    for preview, photo in ((False, False), (True, True)):
        request = composition(preview)
        data = request.model_dump(mode="json", exclude_none=True)
        data["scenes"][0]["source"]["options"] = {"model": "multitalk"}
        request = parse_job_request(data)
        assert isinstance(request, CompositionRequest)
        address = StepAddress(step="matte", scene=0)
        render = MagicMock(outputs={"video": MagicMock(key="work/job-1/avatar@0/video.mp4")})
        with patch("talkstack.pipeline.scenes.scene_render", return_value=render):
            _, inputs, _ = matte_parts(request, address, "job-1", config, store, _Signer())
        assert ("image" in inputs) is photo, preview


def test_compose_gets_every_file_by_scene_role_and_asks_for_what_applies(config, store, s3, backends):
    planned(config, store, composition())
    voice = delivered(
        store, s3, StepAddress(step="voice", scene=0), {"audio": "speech.wav", "words": "words.json"}
    )
    avatar = delivered(store, s3, StepAddress(step="avatar", scene=0), {"video": "video.mp4"})
    mask0 = delivered(store, s3, StepAddress(step="matte", scene=0), {"mask": "mask.mp4"})
    mask2 = delivered(store, s3, StepAddress(step="matte", scene=2), {"mask": "mask.mp4"})

    task = dispatch(config, store, s3, backends, "compose")

    assert isinstance(task, ComposeTask) and task.model == "compose" and task.watermark is True
    assert {role: grant(s3, i.url)[2] for role, i in task.inputs.items()} == {
        scene_role(0, "video"): avatar.outputs["video"].key,
        scene_role(0, "words"): voice.outputs["words"].key,
        scene_role(0, "mask"): mask0.outputs["mask"].key,
        scene_role(2, "media"): "inputs/comp/clip.mp4",
        scene_role(2, "mask"): mask2.outputs["mask"].key,
        scene_role(2, "background"): "inputs/comp/studio.jpg",
        "music": "inputs/comp/music.mp3",
    }
    options = task.options
    assert (options.width, options.height, options.preview) == (1280, 720, False)
    assert [(s.rendered, s.words, s.mask) for s in options.scenes] == [
        (True, True, True),
        (False, False, False),
        (False, False, True),
    ]
    # captions (scene 0 has word timings), the animated preview, one still per scene; no alpha files
    assert set(task.outputs) == {
        "video",
        "thumbnail",
        "preview",
        "captions_srt",
        "captions_vtt",
        "scene_thumbnail_0",
        "scene_thumbnail_1",
        "scene_thumbnail_2",
    }
    assert task.outputs["captions_vtt"].content_type == "text/vtt"
    assert task.outputs["preview"].content_type == "image/webp"


def test_one_step_record_per_kind_counts_every_scene_and_compose_closes_them(config, store, s3, backends):
    request = composition()
    data = request.model_dump(mode="json", exclude_unset=True)
    data["scenes"][1] = data["scenes"][0]  # two avatar scenes
    planned(config, store, parse_job_request(data))

    for scene in (0, 1):
        delivered(store, s3, StepAddress(step="voice", scene=scene), {"audio": "a.wav", "words": "w.json"})
        delivered(store, s3, StepAddress(step="avatar", scene=scene), {"video": "video.mp4"})
    dispatch(config, store, s3, backends, "matte", scene=0, token="token-a")
    dispatch(config, store, s3, backends, "matte", scene=1, token="token-b")
    record = store.get("job-1")
    [matte] = [s for s in record.steps if s.name == "matte"]
    assert matte.status == "running" and matte.attempts == 2

    for scene in (0, 1):
        delivered(store, s3, StepAddress(step="matte", scene=scene), {"mask": "mask.mp4"})
    delivered(store, s3, StepAddress(step="matte", scene=2), {"mask": "mask.mp4"})
    dispatch(config, store, s3, backends, "compose", token="token-c")

    steps = {s.name: s.status for s in store.get("job-1").steps}
    assert steps == {"matte": "completed", "compose": "running"}


# --- complete: per-scene progress ---------------------------------------------------------------


def test_progress_names_its_scene_and_scenes_move_the_job_by_their_mean(config, store, s3, sfn, emit):
    request = composition()
    data = request.model_dump(mode="json", exclude_unset=True)
    data["scenes"][1] = data["scenes"][0]  # scenes 0 and 1 render side by side
    planned(config, store, parse_job_request(data))
    complete = Completer(config, store, s3, sfn, emit)
    for scene in (0, 1):
        store.put_token(
            "job-1", f"avatar-s{scene}-1-x", StepAddress(step="avatar", scene=scene), f"t{scene}", 60
        )
    store.update("job-1", lambda r: r.start_step("avatar"))

    def land(attempt: str, value: float) -> None:
        marker = ProgressMarker(attempt_id=attempt, progress=value, message="rendering", at=utc_now())
        key = marker_key("job-1", attempt, "progress")
        s3.put_object(Bucket=WORK, Key=key, Body=marker.model_dump_json().encode())
        complete.handle(WORK, key)

    land("avatar-s0-1-x", 1.0)  # scene 0's avatar done with its render
    first = store.get("job-1")
    land("avatar-s1-1-x", 0.5)
    second = store.get("job-1")

    # scene 0 alone: its voice (0.15) and avatar share of three scene steps, averaged over the
    # three scenes that have steps (0, 1 and the clip's matte), within the scenes' 75 %
    assert first.progress_scene == 0 and first.progress_message.startswith("scene 1 of 3: ")
    assert 0.0 < first.progress < 0.75 / 3 + 1e-9
    # the second scene adds to the mean instead of replacing it
    assert second.progress > first.progress and second.progress_scene == 1
    event = JobEvent.from_record(second, "job.progress")
    assert event.scene == 1
    assert any(e[1] == "job.progress" for e in emit.events)


# --- finalize -----------------------------------------------------------------------------------


COMPOSED = {
    "video": "video.mp4",
    "thumbnail": "thumbnail.jpg",
    "preview": "preview.webp",
    "captions_srt": "captions.srt",
    "captions_vtt": "captions.vtt",
    "scene_thumbnail_0": "scene-0.jpg",
    "scene_thumbnail_1": "scene-1.jpg",
    "scene_thumbnail_2": "scene-2.jpg",
}


def test_finalize_publishes_every_compose_output_beside_the_video(config, store, s3):
    request = composition(preview=True, output={"prefix": "films/intro", "filename": "intro.mp4"})
    record = JobRecord.new("job-1", request)
    for step in request.worker_steps:
        record.start_step(step)  # type: ignore[arg-type]
        record.finish_step(step)  # type: ignore[arg-type]
    assert store.create(record)
    delivered(store, s3, StepAddress(step="compose"), COMPOSED)

    done = finalize_job("job-1", config, store, s3)

    assert done.status == "completed" and done.result.preview is True
    keys = {(o.kind, o.key) for o in done.result.outputs}
    assert keys == {
        ("video", "films/intro/intro.mp4"),
        ("thumbnail", "films/intro/intro.thumbnail.jpg"),
        ("preview", "films/intro/intro.preview.webp"),
        ("captions", "films/intro/intro.srt"),
        ("captions", "films/intro/intro.vtt"),
        ("scene_thumbnail", "films/intro/intro.scene-1.jpg"),
        ("scene_thumbnail", "films/intro/intro.scene-2.jpg"),
        ("scene_thumbnail", "films/intro/intro.scene-3.jpg"),
    }
    assert done.result.primary.key == "films/intro/intro.mp4"
    scene_stills = [o.key for o in done.result.outputs if o.kind == "scene_thumbnail"]
    assert scene_stills == sorted(scene_stills)  # scene order
    for _, key in keys:
        obj = s3.objects[(OUTPUT, key)]
        assert obj.metadata == {"talkstack-job-id": "job-1"}
    assert (OUTPUT, "films/intro/intro.result.json") in s3.objects
    assert gpu_seconds(done) == 0.0  # a preview is never charged GPU time


def test_a_gpu_scene_after_a_lite_one_is_counted_as_gpu_time(config, store, s3, backends):
    # All scenes share one step record per kind; the first scene dispatched must not decide that
    # the step's worker time (every scene's) is not GPU time.
    speaker = {"image": f"{MEDIA}/portrait.png", "audio": f"{MEDIA}/speech.wav"}
    request = parse_job_request(
        {
            "task": "composition",
            "scenes": [
                {"source": {"type": "avatar", "inputs": speaker, "options": {"model": "lite-avatar"}}},
                {"source": {"type": "avatar", "inputs": speaker, "options": {"model": "multitalk"}}},
            ],
        }
    )
    planned(config, store, request)

    dispatch(config, store, s3, backends, "avatar", scene=0, token="token-a")
    dispatch(config, store, s3, backends, "avatar", scene=1, token="token-b")

    record = store.get("job-1")
    step = record.step("avatar")
    assert step.model == "multitalk" and step.attempts == 2
    step.worker_seconds.update({"avatar-s0-1": 5.0, "avatar-s1-1": 100.0})  # as completes record them
    assert gpu_seconds(record) == 105.0


# --- cost ---------------------------------------------------------------------------------------


def test_a_composition_counts_its_scenes_states_and_a_preview_no_gpu_time():
    from talkstack.pipeline.cost import BASE_TRANSITIONS, estimate_cost, orchestration

    def steps_of(request: CompositionRequest) -> JobRecord:
        record = JobRecord.new("job-1", request)
        for name in ("voice", "avatar", "matte", "compose"):
            step = record.start_step(name, backend="modal")  # type: ignore[arg-type]
            step.worker_seconds[f"{name}-1"] = 100.0
            step.accelerator = "NVIDIA H100 80GB HBM3"
        return record

    full, preview = steps_of(composition()), steps_of(composition(preview=True))
    transitions, invocations = orchestration(full)
    # the Scenes Map, 4 states per scene (3 Choice + an end), one dispatch per step attempt
    assert transitions == BASE_TRANSITIONS + 4 + 1 + 4 * 3
    assert invocations["dispatch"] == 4
    assert estimate_cost(full) > 4 * 100 * 0.001  # GPU seconds on an H100 are charged
    assert estimate_cost(preview) < 0.001 and gpu_seconds(preview) == 0.0
