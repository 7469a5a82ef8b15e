"""The ASL file that CDK deploys and local mode runs: its shape is the contract of the pipeline."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from talkstack.contract.state import Plan
from talkstack.local.resources import HANDLERS, LocalResources, definition_path
from talkstack.local.stack import StackError, load_definition
from talkstack.pipeline.quality import RERENDER_ERROR

DEFINITION = json.loads(definition_path().read_text())
STATES = DEFINITION["States"]
WORKER_STATES = ("Voice", "Avatar", "Video", "Compose")
FAILURE_PATH = ("RecordFailure", "NotifyFailed", "NotifyCompleted")


def test_jsonpath_only_and_no_unsupported_features():
    text = definition_path().read_text()
    assert DEFINITION.get("QueryLanguage", "JSONPath") == "JSONPath"
    for feature in ('"Assign"', '"Arguments"', '"Output"', "startExecution.sync"):
        assert feature not in text


def test_every_placeholder_is_a_handler_arn_and_all_resolve():
    text = load_definition(LocalResources().definition_substitutions())
    assert "${" not in text
    for name in ("Validate", "Plan", "Dispatch", "Finalize", "Fail", "Notify"):
        assert LocalResources().function_arn(name.lower()) in text
    assert {n.capitalize() for n in HANDLERS} >= {
        "Validate",
        "Plan",
        "Dispatch",
        "Finalize",
        "Fail",
        "Notify",
    }


def test_unresolved_placeholder_is_refused(tmp_path):
    path = tmp_path / "x.asl.json"
    path.write_text(
        '{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "${Missing}", "End": true}}}'
    )
    with pytest.raises(StackError, match=r"\$\{Missing\}"):
        load_definition({}, path)


@pytest.mark.parametrize("name", WORKER_STATES)
def test_worker_steps_use_the_callback_pattern_with_limits_retries_and_catch(name):
    state = STATES[name]
    assert state["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert state["Parameters"]["Payload"]["task_token.$"] == "$$.Task.Token"
    assert state["HeartbeatSecondsPath"].startswith("$.plan.timeouts.")
    assert state["TimeoutSecondsPath"].startswith("$.plan.timeouts.")
    worker_retry = state["Retry"][0]
    assert set(worker_retry["ErrorEquals"]) == {"Worker.Transient", "States.HeartbeatTimeout"}
    assert worker_retry["BackoffRate"] > 1 and worker_retry["JitterStrategy"] == "FULL"
    assert "Worker.Fatal" not in json.dumps(state["Retry"])
    assert state["Catch"][0]["ErrorEquals"] == ["States.ALL"] and state["Catch"][0]["Next"] == "RecordFailure"


def test_every_task_outside_the_failure_path_is_caught_into_record_failure():
    for name, state in STATES.items():
        if state["Type"] != "Task" or name in FAILURE_PATH:
            continue
        assert any(
            c["Next"] == "RecordFailure" and "States.ALL" in c["ErrorEquals"] for c in state["Catch"]
        ), name


def test_failure_path_ends_in_a_fail_state_even_if_recording_fails():
    assert STATES["RecordFailure"]["Next"] == "NotifyFailed"
    assert STATES["NotifyFailed"]["Next"] == "Failed"
    assert STATES["Failed"]["Type"] == "Fail"
    assert STATES["RecordFailure"]["Catch"][0]["Next"] == "FailedUnrecorded"
    # a webhook outage must never turn a finished job into a failed execution
    assert STATES["NotifyCompleted"]["Catch"][0]["Next"] == "Completed"


def test_text_driven_avatar_runs_voice_before_the_main_step():
    choice = STATES["HasVoiceStep"]["Choices"][0]
    assert choice["Variable"] == "$.plan.voice" and choice["Next"] == "Voice"
    assert STATES["Voice"]["Next"] == "MainStep"
    segment, *plain = STATES["MainStep"]["Choices"]
    assert segment["Next"] == "Segment"  # parallel long avatars are segmented first
    assert {"Variable": "$.plan.segment", "BooleanEquals": True} in segment["And"]
    targets = {c["StringEquals"]: c["Next"] for c in plain}
    assert targets == {"avatar": "Avatar", "video": "Video", "composition": "Scenes"}


def test_parallel_long_avatars_map_over_chunks_then_stitch():
    assert STATES["Segment"]["Next"] == "HasChunks"
    [many] = STATES["HasChunks"]["Choices"]
    assert (many["Variable"], many["NumericGreaterThan"], many["Next"]) == (
        "$.segments.count",
        1,
        "AvatarChunks",
    )
    assert STATES["HasChunks"]["Default"] == "Avatar"  # one chunk: the ordinary single step
    chunks = STATES["AvatarChunks"]
    assert chunks["Type"] == "Map" and chunks["ItemsPath"] == "$.segments.chunks"
    inner = chunks["ItemProcessor"]["States"]["AvatarChunk"]
    assert inner["Resource"].endswith("waitForTaskToken")
    assert inner["Parameters"]["Payload"]["chunk.$"] == "$.chunk"
    assert inner["HeartbeatSecondsPath"] == "$.timeouts.avatar.heartbeat_s"
    assert {"Worker.Transient", "States.HeartbeatTimeout"} <= set(inner["Retry"][0]["ErrorEquals"])
    assert chunks["Catch"][0]["Next"] == "RecordFailure" and chunks["Next"] == "Stitch"
    assert STATES["Stitch"]["Parameters"]["Payload"]["step"] == "stitch"
    assert STATES["Stitch"]["Next"] == "Finalize"


def test_a_chunk_sent_back_for_quality_is_retried_once_and_only_a_chunk():
    # complete.py fails a chunk's task with RERENDER_ERROR when its first render fails the quality
    # checks; the chunk state retries it once (a new attempt: $$.State.RetryCount goes up), never twice
    inner = STATES["AvatarChunks"]["ItemProcessor"]["States"]["AvatarChunk"]
    (rerender,) = [r for r in inner["Retry"] if RERENDER_ERROR in r["ErrorEquals"]]
    assert rerender["ErrorEquals"] == [RERENDER_ERROR] and rerender["MaxAttempts"] == 1
    assert inner["Parameters"]["Payload"]["retry_count.$"] == "$$.State.RetryCount"
    for name, state in STATES.items():
        assert name == "AvatarChunks" or RERENDER_ERROR not in json.dumps(state.get("Retry", [])), name


def test_the_chunk_map_renders_as_many_chunks_at_once_as_the_plan_allows():
    # The key's tier decides (talkstack.api.limits.Admission → Plan.max_concurrency); a fixed
    # MaxConcurrency would let a free key's one job run 16 GPU tasks.
    chunks = STATES["AvatarChunks"]
    assert "MaxConcurrency" not in chunks
    assert chunks["MaxConcurrencyPath"] == "$.plan.max_concurrency"
    assert STATES["Plan"]["ResultSelector"]["max_concurrency.$"] == "$.Payload.max_concurrency"
    # 0 would mean "no limit" to Step Functions: the plan can never carry it
    with pytest.raises(ValidationError):
        Plan(steps=["avatar"], voice=False, main="avatar", segment=True, timeouts={}, max_concurrency=0)


# --- compositions ------------------------------------------------------------------------------

SCENE_STATES = {"SceneVoice": "voice", "SceneAvatar": "avatar", "SceneVideo": "video", "SceneMatte": "matte"}


def _scene_path(item: dict, states: dict, start: str) -> list[str]:
    """The Task states one Map item passes through, following its Choice states by its flags."""
    path, name = [], start
    while True:
        state = states[name]
        if state["Type"] == "Succeed" or state.get("End"):
            return path + ([name] if state["Type"] == "Task" else [])
        if state["Type"] == "Task":
            path.append(name)
            name = state["Next"]
            continue
        assert state["Type"] == "Choice", name
        for choice in state["Choices"]:
            value = item[choice["Variable"].removeprefix("$.")]
            if value == choice.get("BooleanEquals", choice.get("StringEquals")):
                name = choice["Next"]
                break
        else:
            name = state["Default"]


def test_a_composition_maps_over_its_scenes_then_composes_then_finalizes():
    assert STATES["Plan"]["ResultSelector"]["scenes.$"] == "$.Payload.scenes"
    scenes = STATES["Scenes"]
    assert scenes["Type"] == "Map" and scenes["ItemsPath"] == "$.plan.scenes"
    assert scenes["MaxConcurrencyPath"] == "$.plan.max_concurrency"
    selector = scenes["ItemSelector"]
    assert selector["scene.$"] == "$$.Map.Item.Value.index"
    for flag in ("voice", "main", "matte"):
        assert selector[f"{flag}.$"] == f"$$.Map.Item.Value.{flag}"
    assert selector["timeouts.$"] == "$.plan.timeouts" and selector["job_id.$"] == "$.job_id"
    assert scenes["Catch"][0]["Next"] == "RecordFailure" and scenes["Next"] == "Compose"
    assert STATES["Compose"]["Parameters"]["Payload"]["step"] == "compose"
    assert STATES["Compose"]["HeartbeatSecondsPath"] == "$.plan.timeouts.compose.heartbeat_s"
    assert STATES["Compose"]["Next"] == "Finalize"


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"voice": True, "main": "avatar", "matte": True}, ["SceneVoice", "SceneAvatar", "SceneMatte"]),
        ({"voice": False, "main": "avatar", "matte": False}, ["SceneAvatar"]),
        ({"voice": False, "main": "video", "matte": False}, ["SceneVideo"]),
        ({"voice": False, "main": "none", "matte": True}, ["SceneMatte"]),  # a cut-out upload
        ({"voice": False, "main": "none", "matte": False}, []),  # a title card: straight through
    ],
)
def test_each_scene_runs_exactly_the_steps_its_plan_flags(item, expected):
    processor = STATES["Scenes"]["ItemProcessor"]
    assert _scene_path(item, processor["States"], processor["StartAt"]) == expected


@pytest.mark.parametrize("name", sorted(SCENE_STATES))
def test_scene_steps_are_callbacks_naming_their_scene_with_the_engine_retries(name):
    state = STATES["Scenes"]["ItemProcessor"]["States"][name]
    step = SCENE_STATES[name]
    payload = state["Parameters"]["Payload"]
    assert state["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert payload["step"] == step and payload["scene.$"] == "$.scene"
    assert payload["retry_count.$"] == "$$.State.RetryCount"
    assert state["HeartbeatSecondsPath"] == f"$.timeouts.{step}.heartbeat_s"
    assert state["TimeoutSecondsPath"] == f"$.timeouts.{step}.timeout_s"
    assert state["Retry"] == STATES["Video"]["Retry"]  # the same as the single job's engine states
    assert "Catch" not in state  # a failing scene fails the Map, whose Catch records it
