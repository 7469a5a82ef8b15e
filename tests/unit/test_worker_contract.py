"""The worker boundary's contract (talkstack/contract/worker.py) and the state machine's typed data
(talkstack/contract/state.py): keys built and parsed in one place, step addresses, task kinds with
typed options, and the published JSON Schemas agreeing with the models."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import jsonschema
import pytest
from pydantic import ValidationError

from talkstack.contract.request import AvatarOptions, VideoOptions, VoiceOptions
from talkstack.contract.state import (
    DispatchInput,
    FailureInput,
    JobInput,
    NotifyRequest,
    Plan,
    SegmentOutput,
    SegmentPlan,
    StateInput,
    ValidateInput,
)
from talkstack.contract.worker import (
    CONTROL_PREFIX,
    MARKER_KINDS,
    MARKERS_PREFIX,
    WORK_BUCKET_PREFIXES,
    WORK_PREFIX,
    AvatarTask,
    ChunkPlan,
    ErrorMarker,
    Markers,
    OutputUrl,
    ProgressMarker,
    ResultMarker,
    StepAddress,
    StitchTask,
    VideoTask,
    VoiceTask,
    cancel_flag_key,
    marker_key,
    offline_task,
    parse_marker_key,
    parse_worker_task,
    segment_key,
    task_options,
    work_key,
)
from talkstack.engines.base import RenderResult
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.workers.runner import run_task
from tests.support.steps import quality_report

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
PUT = OutputUrl(url="https://s3.test/put", key="k", content_type="application/json")
CHUNK = ChunkPlan(index=0, start_s=0, end_s=4.2, render_start_s=0, render_end_s=4.36, at_pause=True)


def _common(step: str) -> dict:
    return {
        "job_id": "job-1",
        "attempt_id": f"{step}-1-abcdef0123",
        "attempt": 1,
        "outputs": {"video": PUT},
        "markers": Markers(progress=PUT, result=PUT, error=PUT),
        "heartbeat_interval_s": 10,
        "deadline": datetime.now(UTC) + timedelta(hours=1),
    }


TASKS = [
    VoiceTask(
        model="chatterbox", text="Hello.", options=VoiceOptions(model="chatterbox"), **_common("voice")
    ),
    AvatarTask(model="multitalk", options=AvatarOptions(model="multitalk", turbo=True), **_common("avatar")),
    VideoTask(model="ltx-video", text="a cat", options=VideoOptions(duration_s=3), **_common("video")),
    StitchTask(model="stitch", options={"chunks": [CHUNK]}, **_common("stitch")),
]


@pytest.mark.parametrize("label", ["voice", "avatar", "avatar#0", "avatar#12", "video", "stitch"])
def test_a_step_address_round_trips_through_its_label(label):
    address = StepAddress.parse(label)
    assert address.label == label == str(address)
    assert "#" not in address.attempt_stem  # attempt ids are key segments


@pytest.mark.parametrize("label", ["finalize", "avatar#", "avatar#x", "avatar#-1", "#3", ""])
def test_labels_that_name_no_worker_step_are_refused(label):
    with pytest.raises((ValidationError, ValueError)):
        StepAddress.parse(label)


@pytest.mark.parametrize("kind", MARKER_KINDS)
def test_every_marker_key_parses_back_to_what_built_it(kind):
    key = marker_key("avatar-0123abcd", "avatar-c3-2-0123456789", kind)
    assert key.startswith(MARKERS_PREFIX)
    ref = parse_marker_key(key)
    assert ref is not None and (ref.job_id, ref.attempt_id, ref.kind) == (
        "avatar-0123abcd",
        "avatar-c3-2-0123456789",
        kind,
    )


@pytest.mark.parametrize(
    "key",
    [
        "markers/job/attempt/done.json",  # not a marker kind
        "markers/job/attempt/result.txt",
        "markers/job/a/b/result.json",  # nested
        "markers/job/../result.json",
        "work/job/attempt/result.json",  # another prefix
        "control/job/cancel.json",
        "markers/job/attempt/result.json.tmp",
    ],
)
def test_keys_that_are_not_markers_are_not_parsed(key):
    assert parse_marker_key(key) is None


def test_every_key_builder_stays_under_a_prefix_the_lifecycle_rules_expire():
    built = {
        work_key("j", "a", "video.mp4"): WORK_PREFIX,
        segment_key("j", "chunk-000.wav"): WORK_PREFIX,
        marker_key("j", "a", "result"): MARKERS_PREFIX,
        cancel_flag_key("j"): CONTROL_PREFIX,
    }
    for key, prefix in built.items():
        assert key.startswith(prefix) and prefix in WORK_BUCKET_PREFIXES


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.step)
def test_a_task_document_parses_back_to_its_kind_with_typed_options(task):
    for form in (task.model_dump_json(), json.loads(task.model_dump_json())):
        parsed = parse_worker_task(form)
        assert type(parsed) is type(task) and parsed == task
    assert parse_worker_task(task) is task  # already a task: passed through


def test_the_step_decides_which_options_a_task_may_carry():
    document = json.loads(TASKS[0].model_dump_json())
    document["options"] = {"model": "multitalk"}  # avatar options on a voice task
    with pytest.raises(ValidationError, match=r"options\.model"):
        parse_worker_task(document)
    document["step"] = "finalize"
    with pytest.raises(ValidationError):
        parse_worker_task(document)


def test_an_engine_asking_for_another_kinds_options_gets_a_clear_error():
    with pytest.raises(TalkstackError) as caught:
        task_options(TASKS[0], AvatarOptions)
    assert caught.value.code == ErrorCode.INVALID_REQUEST
    assert "AvatarOptions" in caught.value.message and "VoiceOptions" in caught.value.message
    assert task_options(TASKS[1], AvatarOptions).turbo is True


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.step)
def test_task_documents_validate_against_the_published_schema(task):
    schema = json.loads((SCHEMAS / "worker-task.schema.json").read_text())
    jsonschema.validate(json.loads(task.model_dump_json()), schema)


def test_markers_validate_against_the_published_schema():
    schema = json.loads((SCHEMAS / "worker-marker.schema.json").read_text())
    now = datetime.now(UTC)
    progress = ProgressMarker(attempt_id="a", progress=0.5, message="half", at=now)
    error = ErrorMarker(
        attempt_id="a",
        error={"code": "INVALID_REQUEST", "message": "no"},
        retryable=False,
        worker="host:1",
        at=now,
    )
    result = ResultMarker(
        attempt_id="a",
        outputs={"video": {"key": "work/job-1/a/video.mp4", "bytes": 10, "content_type": "video/mp4"}},
        engine_s=1.0,
        quality=quality_report(lipsync=0.1),
        worker="host:1",
        started_at=now,
        at=now,
    )
    for marker in (progress, error, result):
        jsonschema.validate(json.loads(marker.model_dump_json()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"attempt_id": "a"}, schema)
    # A result marker whose report is not a report is refused by the schema, as by the model
    broken = json.loads(result.model_dump_json())
    broken["quality"]["lipsync"] = "good"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    # and a worker that predates the report still writes a valid result marker
    assert ResultMarker.model_validate_json(result.model_dump_json(exclude={"quality"})).quality is None


def test_the_runner_sends_the_engines_quality_report_in_its_result_marker(tmp_path):
    report = quality_report(lipsync=0.42)
    written: dict[str, bytes] = {}

    def s3(request: httpx.Request) -> httpx.Response:  # the pre-signed URLs' side: S3 answering
        if request.method == "PUT":
            written[request.url.path] = request.read()
            return httpx.Response(200)
        return httpx.Response(404 if request.url.path.endswith("cancel.json") else 200, content=b"x")

    def engine(task, inputs, outdir, progress):
        video = outdir / "video.mp4"
        video.write_bytes(b"mp4")
        return {"video": video}, RenderResult(output=video, bytes=3, duration_s=2.0, quality=report)

    def put(name: str) -> OutputUrl:
        return OutputUrl(url=f"https://s3.test/{name}", key=name, content_type="application/json")

    markers = Markers(progress=put("progress.json"), result=put("result.json"), error=put("error.json"))
    task = AvatarTask(
        **{**_common("avatar"), "outputs": {"video": put("video.mp4")}, "markers": markers},
        model="multitalk",
    )
    with httpx.Client(transport=httpx.MockTransport(s3)) as client:
        assert run_task(task, client, step=engine)

    marker = ResultMarker.model_validate_json(written["/result.json"])
    assert marker.quality == report


STATE_INPUTS: dict[str, type[StateInput]] = {
    "${ValidateFunctionArn}": ValidateInput,
    "${ModerateFunctionArn}": JobInput,
    "${PlanFunctionArn}": JobInput,
    "${SegmentFunctionArn}": JobInput,
    "${FinalizeFunctionArn}": JobInput,
    "${DispatchFunctionArn}": DispatchInput,
    "${FailFunctionArn}": FailureInput,
    "${NotifyFunctionArn}": NotifyRequest,
}


def _task_payloads(states: dict) -> list[tuple[str, str, dict]]:
    """(state name, FunctionName, Payload) of every Lambda task, Map item processors included."""
    found = []
    for name, state in states.items():
        parameters = state.get("Parameters", {})
        if "FunctionName" in parameters:
            found.append((name, parameters["FunctionName"], parameters["Payload"]))
        if "ItemProcessor" in state:
            found.extend(_task_payloads(state["ItemProcessor"]["States"]))
    return found


def test_every_state_input_model_matches_the_payload_the_asl_builds():
    definition = json.loads((SCHEMAS.parent / "aws" / "stepfunctions" / "job.asl.json").read_text())
    payloads = _task_payloads(definition["States"])
    assert {function for _, function, _ in payloads} == set(STATE_INPUTS)
    for state, function, payload in payloads:
        model = STATE_INPUTS[function]
        sent = {key.removesuffix(".$") for key in payload}
        required = {name for name, field in model.model_fields.items() if field.is_required()}
        assert sent <= set(model.model_fields), f"{state} sends {sorted(sent - set(model.model_fields))}"
        assert required <= sent, f"{state} does not send {sorted(required - sent)}"


def test_validate_takes_any_execution_input_and_leaves_refusing_it_to_the_step():
    # A direct StartExecution may pass JSON text (States.JsonToString from another state machine):
    # the validate step parses or refuses it with a job error, so the event itself is never refused.
    for raw in ('{"task": "voice", "inputs": {"text": "hi"}}', ["not", "a", "request"], None):
        assert ValidateInput.model_validate({"input": raw, "execution_name": "n"}).input == raw


def test_state_inputs_are_exactly_what_the_asl_sends():
    event = {"task_token": "t", "job_id": "j", "step": "avatar", "chunk": 3, "retry_count": 1}
    assert DispatchInput.model_validate(event).address == StepAddress(step="avatar", chunk=3)
    with pytest.raises(ValidationError, match="task_token"):
        DispatchInput.model_validate({k: v for k, v in event.items() if k != "task_token"})
    with pytest.raises(ValidationError, match="timeouts"):  # a field the definition does not send
        DispatchInput.model_validate({**event, "timeouts": {}})
    with pytest.raises(ValidationError, match="step"):
        DispatchInput.model_validate({**event, "step": "finalize"})


def test_notify_takes_one_shape_with_or_without_the_event():
    from_state_machine = NotifyRequest.model_validate({"job_id": "j", "type": "job.failed"})
    assert from_state_machine.event is None
    with pytest.raises(ValidationError):
        NotifyRequest.model_validate({"event": {"job_id": "j"}})  # the old handler-only shape


def test_the_plan_and_the_segment_output_keep_the_asl_shapes():
    plan = Plan(
        steps=["avatar"],
        voice=False,
        main="avatar",
        segment=False,
        timeouts={"avatar": {"heartbeat_s": 30, "timeout_s": 400}},
    )
    # The Plan state's ResultSelector reads these four (aws/stepfunctions/job.asl.json).
    assert {"voice", "main", "timeouts", "segment"} <= set(plan.model_dump(mode="json"))
    assert plan.limits("avatar").timeout_s == 400
    cut = SegmentPlan(
        chunks=[CHUNK, CHUNK.model_copy(update={"index": 1})],
        audio_keys=["a", "b"],
        source=("b", "k"),
    )
    assert SegmentOutput.of(cut).model_dump() == {"count": 2, "chunks": [{"index": 0}, {"index": 1}]}


@pytest.mark.parametrize(
    "step, model, options, inputs, kind, outputs",
    [
        (
            "avatar",
            "multitalk",
            {"turbo": True},
            {"image": "p.png", "audio": "s.wav"},
            AvatarTask,
            {"video", "thumbnail"},
        ),
        ("video", "ltx-video", {"steps": 2}, {}, VideoTask, {"video", "thumbnail"}),
        ("voice", "chatterbox", {}, {}, VoiceTask, {"audio"}),
    ],
)
def test_an_offline_task_is_a_real_task_whose_transfers_go_nowhere(
    step, model, options, inputs, kind, outputs
):
    # what the Modal smoke jobs and the GPU smoke kit hand an engine's render
    task = offline_task(step, model, options, inputs, text="hi")
    assert isinstance(task, kind) and task.model == model and set(task.outputs) == outputs
    assert {role: i.filename for role, i in task.inputs.items()} == inputs
    assert task.options.model_dump(exclude_unset=True) == {"model": model, **options}  # typed, as parsed
    urls = [str(u.url) for u in [*task.inputs.values(), *task.outputs.values()]]
    urls += [str(task.markers.progress.url), str(task.markers.result.url), str(task.markers.error.url)]
    assert {urlsplit(u).hostname for u in urls} == {"render.invalid"}  # RFC 6761: never resolves
