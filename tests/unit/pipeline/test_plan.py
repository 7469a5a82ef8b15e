"""Plan: which engine steps a job runs (per request kind), their heartbeats and timeouts (a step on
the modal backend waits longer for its first beat), kept in the jobs table for dispatch."""

from __future__ import annotations

from typing import Any

import pytest

from talkstack.contract.composition import JobRequest
from talkstack.contract.parse import parse_job_request
from talkstack.contract.record import JobRecord, JobSource
from talkstack.contract.state import Plan
from talkstack.contract.worker import WORKER_STEPS
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.dispatch import url_lifetime
from talkstack.pipeline.plan import plan_job
from talkstack.pipeline.step_results import stored_plan
from talkstack.pipeline.store import JobStore
from talkstack.settings import get_modal_deploy
from tests.support.steps import INPUT, avatar_request, make_config

IMAGE = f"s3://{INPUT}/inputs/talk/portrait.png"


def queued(store: JobStore, request: JobRequest, job_id: str = "job-1") -> str:
    assert store.create(JobRecord.new(job_id, request))
    return job_id


def request_of(kind: str, **changes: Any) -> JobRequest:
    """One request of each shape the state machine branches on."""
    if kind == "audio avatar":
        return avatar_request(**changes)
    if kind == "text avatar":
        return parse_job_request({"task": "avatar", "inputs": {"image": IMAGE, "text": "Hello."}, **changes})
    if kind == "parallel avatar":
        return avatar_request(options={"long_audio": "parallel"}, **changes)
    if kind == "voice":
        return parse_job_request({"task": "voice", "inputs": {"text": "Hello."}, **changes})
    assert kind == "video"
    return parse_job_request({"task": "video", "inputs": {"prompt": "a calm sea"}, **changes})


@pytest.mark.parametrize(
    ("kind", "steps", "voice", "main", "segment"),
    [
        ("audio avatar", ["avatar"], False, "avatar", False),
        ("text avatar", ["voice", "avatar"], True, "avatar", False),
        ("parallel avatar", ["avatar", "stitch"], False, "avatar", True),
        ("voice", ["voice"], True, "none", False),
        ("video", ["video"], False, "video", False),
    ],
)
def test_the_plan_names_the_steps_each_kind_of_request_runs(config, store, kind, steps, voice, main, segment):
    # Given a queued job of this kind
    job_id = queued(store, request_of(kind))

    # When the Plan state runs
    plan = plan_job(job_id, config, store)

    # Then the Choice states' inputs say which branch to take
    assert (plan.steps, plan.voice, plan.main, plan.segment) == (steps, voice, main, segment)
    # and every engine state finds its limits (the ASL reads $.plan.timeouts.<step> for each of them)
    assert set(plan.timeouts) == set(WORKER_STEPS)


@pytest.mark.parametrize("kind", ["audio avatar", "text avatar", "parallel avatar", "voice", "video"])
def test_the_plan_is_kept_in_the_jobs_table_for_dispatch(config, store, kind):
    job_id = queued(store, request_of(kind))

    plan = plan_job(job_id, config, store)

    # What dispatch reads back (talkstack.pipeline.step_results) is the plan the state machine carries.
    assert stored_plan(store, job_id) == plan
    assert store.get_step_result(job_id, "plan", Plan) == plan


def test_every_step_may_run_longer_than_its_heartbeat_and_at_least_the_floor(no_pipeline_environment, store):
    # Given a stack with short heartbeats (local tests) and a five-minute floor
    config = make_config(heartbeat_seconds=20, min_step_timeout_seconds=300)
    job_id = queued(store, request_of("text avatar"))

    plan = plan_job(job_id, config, store)

    for step in WORKER_STEPS:
        limits = plan.limits(step)
        # A beating worker is never cut off by its own heartbeat, and no step gets less than the floor.
        assert limits.heartbeat_s == 20
        assert limits.timeout_s > limits.heartbeat_s and limits.timeout_s >= 300


def test_a_step_on_modal_gets_the_modal_heartbeat_and_room_beyond_it(no_pipeline_environment, store):
    # Given the avatar model runs on Modal (a cold container loads its weights before it beats) and
    # the voice model on the local pool
    config = make_config(
        model_backends={"lite-avatar": "modal"}, heartbeat_seconds=60, modal_heartbeat_seconds=1800
    )
    job_id = queued(store, request_of("text avatar"))

    plan = plan_job(job_id, config, store)

    avatar, voice = plan.limits("avatar"), plan.limits("voice")
    assert avatar.heartbeat_s == 1800 and voice.heartbeat_s == 60
    # A whole modal heartbeat can pass before the first beat: the work still gets its own time after it.
    assert avatar.timeout_s >= 1800 + config.min_step_timeout_seconds


def test_a_longer_output_gets_a_longer_timeout(no_pipeline_environment, store):
    # Given a tiny floor, so that the length of the output decides
    config = make_config(min_step_timeout_seconds=1)
    short = queued(store, request_of("video", options={"duration_s": 2}), "short")
    long = queued(store, request_of("video", options={"duration_s": 60}), "long")
    capped = queued(store, request_of("audio avatar", options={"max_duration_s": 3}), "capped")
    uncapped = queued(store, request_of("audio avatar"), "uncapped")

    timeout = {
        job: plan_job(job, config, store).limits(step).timeout_s
        for job, step in [(short, "video"), (long, "video"), (capped, "avatar"), (uncapped, "avatar")]
    }

    assert timeout[long] > timeout[short]
    # An avatar cut at max_duration_s needs no more time than its cut; one without a cap gets the
    # time of the longest speech the limits allow (the Plan state reads no media).
    assert timeout[uncapped] > timeout[capped]


def test_a_job_without_a_record_has_no_plan(config, store):
    with pytest.raises(KeyError, match="job-1"):
        plan_job("job-1", config, store)
    assert store.get_step_result("job-1", "plan", Plan) is None


# --- bounded by the worker's real limit (issue 15, finding 13) ----------------------------------

HOUR = 3600
MODAL = {"multitalk": "modal", "infinitetalk": "modal", "chatterbox": "modal", "ltx-video": "modal"}


def url_lifetime_of(config, store, request, step: str, job_id: str) -> int:
    """What dispatch signs the step's URLs for: the real plan, then the real lifetime rule."""
    queued(store, request, job_id)
    return url_lifetime(plan_job(job_id, config, store).limits(step).timeout_s)


def test_a_600_s_multitalk_avatar_gets_urls_within_the_modal_timeout_not_67_hours(
    no_pipeline_environment, store
):
    # Given MultiTalk on Modal (its class stops a task after 3 h; a cold start may take the heartbeat)
    config = make_config(model_backends=MODAL, modal_heartbeat_seconds=1800)
    assert get_modal_deploy().timeout_s("avatar") == 3 * HOUR
    request = request_of("audio avatar", options={"model": "multitalk"})  # audio up to 600 s

    lifetime = url_lifetime_of(config, store, request, "avatar", "mt-600")

    # Then neither the step nor its URLs outlive the worker: 3 h of work + 30 min for a cold
    # container + 5 min (it was 67.8 h: 400 s of work a second of video, plus two heartbeats).
    assert lifetime == 3 * HOUR + 1800 + 300
    # The same bound in parallel mode holds per chunk, which gets the time of one 20 s chunk.
    parallel = avatar_request(options={"model": "multitalk", "long_audio": "parallel"})
    chunk = plan_job(queued(store, parallel, "mt-parallel"), config, store).limits("avatar").timeout_s
    assert chunk == int(60 + 400 * (20 + 0.32)) + 1800 < 3 * HOUR + 1800


def test_the_bound_follows_the_modal_timeout_setting(no_pipeline_environment, store, monkeypatch):
    monkeypatch.setenv("TALKSTACK_AVATAR_TIMEOUT_S", str(2 * HOUR))
    get_modal_deploy.cache_clear()
    try:
        config = make_config(model_backends=MODAL, modal_heartbeat_seconds=600)
        lifetime = url_lifetime_of(
            config, store, request_of("audio avatar", options={"model": "infinitetalk"}), "avatar", "it"
        )
    finally:
        get_modal_deploy.cache_clear()
    assert lifetime == 2 * HOUR + 600 + 300


def test_a_declared_length_that_cannot_render_before_modal_stops_the_worker_is_refused(
    no_pipeline_environment, store
):
    config = make_config(model_backends=MODAL)
    too_long = request_of("audio avatar", options={"model": "multitalk", "max_duration_s": 600})

    with pytest.raises(TalkstackError) as refused:
        plan_job(queued(store, too_long, "too-long"), config, store)

    assert refused.value.code == ErrorCode.AUDIO_TOO_LONG
    assert refused.value.message.startswith("options.max_duration_s: 600 s of multitalk takes about 66.7 h")
    assert 'long_audio "parallel"' in refused.value.message
    assert refused.value.details["worker_limit_s"] == 3 * HOUR
    # Turbo (4 steps, not 40) renders a minute well within it, and is planned.
    turbo = request_of("audio avatar", options={"model": "multitalk", "max_duration_s": 60, "turbo": True})
    assert (
        plan_job(queued(store, turbo, "turbo"), config, store).limits("avatar").timeout_s <= 3 * HOUR + 1800
    )


def test_the_local_pool_keeps_the_planned_time(no_pipeline_environment, store):
    # The local pool stops a task only at the step's own timeout: nothing to bound it by, nothing refused.
    config = make_config(local_engines={"multitalk": "tests.support.fake:engine"}, min_step_timeout_seconds=1)
    request = request_of("audio avatar", options={"model": "multitalk", "max_duration_s": 600})
    assert (
        plan_job(queued(store, request, "local"), config, store).limits("avatar").timeout_s == 60 + 400 * 600
    )


@pytest.mark.parametrize(("slots", "cap", "expected"), [(8, 4, 4), (2, 4, 2), (None, 3, 3)])
def test_chunks_on_modal_never_outnumber_the_avatar_classs_containers(
    no_pipeline_environment, store, monkeypatch, slots, cap, expected
):
    # A chunk started beyond the class's container cap waits in Modal's queue without a heartbeat:
    # its attempt, and its URLs, could run out before it began rendering.
    monkeypatch.setenv("TALKSTACK_AVATAR_MAX_CONTAINERS", str(cap))
    get_modal_deploy.cache_clear()
    try:
        config = make_config(model_backends=MODAL, parallel_max_concurrency=16)
        parallel = avatar_request(options={"model": "multitalk", "long_audio": "parallel"})
        job_id = queued(store, parallel, f"mt-{slots}-{cap}")
        if slots is not None:
            store.update(
                job_id,
                lambda r: setattr(r, "source", JobSource(kind="api", api_key_id="k1", gpu_slots=slots)),
            )
        assert plan_job(job_id, config, store).max_concurrency == expected
        # The local pool is not Modal: its chunks take what the key was given.
        local = make_config(parallel_max_concurrency=16)
        lite = queued(store, avatar_request(options={"long_audio": "parallel"}), f"lite-{slots}-{cap}")
        assert plan_job(lite, local, store).max_concurrency == 16
    finally:
        get_modal_deploy.cache_clear()


def test_a_keys_slots_never_exceed_the_operators_setting(no_pipeline_environment, store):
    # Admission may give a big tier more GPU slots than the stack allows one job: the stack's wins
    config = make_config(parallel_max_concurrency=3)
    job_id = queued(store, avatar_request(options={"long_audio": "parallel"}), "big-tier")
    store.update(job_id, lambda r: setattr(r, "source", JobSource(kind="api", api_key_id="k1", gpu_slots=8)))

    assert plan_job(job_id, config, store).max_concurrency == 3
