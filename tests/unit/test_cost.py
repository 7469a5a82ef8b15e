"""Estimated job cost: GPU seconds the workers reported, priced by the GPU they reported."""

from __future__ import annotations

import ast
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from talkstack.contract import JobRecord, parse_job_request
from talkstack.pipeline.cost import (
    LAMBDA_MEMORY_MB,
    MODAL_GPU_USD_PER_S,
    engine_cost,
    estimate_cost,
    gpu_price_key,
    gpu_seconds,
    orchestration_cost,
)
from talkstack.pipeline.cost import orchestration as orchestration_of

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("driver_name", "key"),
    [  # names as torch.cuda.get_device_name() returns them on these GPUs, and Modal's own spellings
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 PCIe", "H100"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
        ("NVIDIA A100 80GB PCIe", "A100-80GB"),
        ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA L4", "L4"),
        ("Tesla T4", "T4"),
        ("NVIDIA B200", "B200"),
        ("a100-80gb", "A100-80GB"),
        ("h100", "H100"),
        ("NVIDIA GeForce RTX 4090", None),
        (None, None),
        ("", None),
    ],
)
def test_gpu_names_map_to_prices(driver_name, key):
    assert gpu_price_key(driver_name) == key
    assert key is None or key in MODAL_GPU_USD_PER_S


def _video_job(backend: str, accelerator: str | None, worker_s: float) -> JobRecord:
    request = parse_job_request(
        {"task": "video", "inputs": {"prompt": "a cat"}, "options": {"model": "ltx-video"}}
    )
    record = JobRecord.new("job-1", request, now=T0)
    record.start_step("video", backend=backend, model="ltx-video", now=T0)
    record.finish_step("video", now=T0 + timedelta(seconds=300))  # wall time incl. queue and cold start
    step = record.step("video")
    step.worker_seconds, step.accelerator = {"video-1-abc": worker_s}, accelerator
    return record


def test_modal_gpu_time_is_priced_by_the_reported_gpu():
    record = _video_job("modal", "NVIDIA H100 80GB HBM3", worker_s=120.0)
    assert engine_cost(record.step("video")) == pytest.approx(120 * 0.001097)
    on_cpu = estimate_cost(_video_job("local", None, worker_s=120.0))  # orchestration only
    assert estimate_cost(record) == pytest.approx(on_cpu + 120 * 0.001097, abs=1e-6)
    assert 0 < on_cpu < 0.001  # a few Lambda calls and transitions: fractions of a cent


def test_the_same_time_on_a_cheaper_gpu_costs_less():
    h100 = estimate_cost(_video_job("modal", "NVIDIA H100 80GB HBM3", 100.0))
    a10g = estimate_cost(_video_job("modal", "NVIDIA A10G", 100.0))
    assert h100 - a10g == pytest.approx(100 * (0.001097 - 0.000306), abs=1e-6)


@pytest.mark.parametrize(
    ("backend", "accelerator"),
    [("local", "NVIDIA H100 80GB HBM3"), ("modal", None), ("modal", "NVIDIA GeForce RTX 4090")],
)
def test_own_hardware_cpu_and_unknown_gpus_add_no_engine_cost(backend, accelerator):
    assert engine_cost(_video_job(backend, accelerator, 120.0).step("video")) == 0.0


def test_gpu_seconds_are_what_workers_reported_else_the_wall_time():
    assert gpu_seconds(_video_job("modal", "NVIDIA H100 80GB HBM3", 120.0)) == 120.0
    assert gpu_seconds(_video_job("modal", None, 0.0)) == 300.0  # a record from before workers reported


def test_parallel_chunks_add_up_and_a_redelivered_marker_does_not():
    record = _video_job("modal", "NVIDIA H100 80GB HBM3", 10.0)
    step = record.step("video")
    step.worker_seconds.update({"video-c1-1-def": 20.0, "video-c2-1-123": 30.0})
    step.worker_seconds["video-c2-1-123"] = 30.0  # the same attempt's marker, delivered again
    assert step.worker_s == 60.0 and gpu_seconds(record) == 60.0
    assert engine_cost(step) == pytest.approx(60 * MODAL_GPU_USD_PER_S["H100"])


# The orchestration estimate, worked out by hand from the list prices (not from cost.py's constants)
# and from the path each job takes through the real state machine definition.
SFN_USD_PER_TRANSITION = 0.025 / 1000
LAMBDA_USD_PER_REQUEST = 0.20 / 1e6
LAMBDA_USD_PER_GB_S = 0.0000133334
HANDLER_S = 0.3
MB = {
    "validate": 512,
    "moderate": 512,
    "plan": 256,
    "segment": 2048,
    "dispatch": 512,
    "complete": 512,
    "finalize": 1024,
    "notify": 512,
}
ASL = Path(__file__).resolve().parents[2] / "aws" / "stepfunctions" / "job.asl.json"


def _path_through_the_state_machine(path: list[str]) -> int:
    """The number of states on `path` after checking that each follows from the one before in the
    real definition (a Next, a Choice's branch or its Default) and that it ends in success."""
    states = json.loads(ASL.read_text())["States"]
    assert path[0] == json.loads(ASL.read_text())["StartAt"]
    for a, b in itertools.pairwise(path):
        state = states[a]
        follows = {state.get("Next"), state.get("Default"), *(c["Next"] for c in state.get("Choices", []))}
        assert b in follows, f"{b} does not follow {a}"
    assert states[path[-1]]["Type"] == "Succeed"
    return len(path)


def _lambda_usd(calls: dict[str, int]) -> float:
    requests = sum(calls.values()) * LAMBDA_USD_PER_REQUEST
    gb_s = sum(n * MB[name] / 1024 * HANDLER_S for name, n in calls.items())
    return requests + gb_s * LAMBDA_USD_PER_GB_S


def _job(task: str, steps: list[tuple[str, int, dict[str, float]]], accelerator: str | None) -> JobRecord:
    """A completed job whose worker steps ran `attempts` times and reported `worker_seconds`."""
    inputs = {"prompt": "a cat"} if task == "video" else {"image": "face.png", "audio": "speech.wav"}
    options = {"model": "ltx-video"} if task == "video" else {}
    record = JobRecord.new(
        "job-1", parse_job_request({"task": task, "inputs": inputs, "options": options}), now=T0
    )
    for name, attempts, seconds in steps:
        for _ in range(attempts):  # each retry starts the step again
            record.start_step(name, backend="modal", model="ltx-video" if task == "video" else None, now=T0)
        record.finish_step(name, now=T0 + timedelta(seconds=60))
        record.step(name).worker_seconds, record.step(name).accelerator = seconds, accelerator
    return record


def test_a_video_job_costs_its_gpu_time_its_transitions_and_each_functions_requests_and_gb_seconds():
    record = _job("video", [("video", 1, {"video-1-abc": 120.0})], "NVIDIA H100 80GB HBM3")
    states = _path_through_the_state_machine(
        [
            "Validate",
            "Moderate",
            "Plan",
            "HasVoiceStep",
            "MainStep",
            "Video",
            "Finalize",
            "NotifyCompleted",
            "Completed",
        ]
    )
    # dispatch once; a progress and a result marker; notify for queued, started and completed
    calls = {
        "validate": 1,
        "moderate": 1,
        "plan": 1,
        "dispatch": 1,
        "complete": 2,
        "finalize": 1,
        "notify": 3,
    }
    orchestration = states * SFN_USD_PER_TRANSITION + _lambda_usd(calls)
    assert orchestration_cost(*orchestration_of(record)) == pytest.approx(orchestration, rel=1e-9)
    assert estimate_cost(record) == pytest.approx(120 * 0.001097 + orchestration, abs=5.1e-7)  # µ$ rounding


def test_each_retry_is_another_transition_dispatch_and_two_markers():
    # The video step failed twice (transient) and delivered on the third attempt.
    once = _job("video", [("video", 1, {"video-1-abc": 120.0})], None)
    thrice = _job("video", [("video", 3, {"video-3-abc": 120.0})], None)
    extra = 2 * SFN_USD_PER_TRANSITION + _lambda_usd({"dispatch": 2, "complete": 4})
    assert orchestration_cost(*orchestration_of(thrice)) - orchestration_cost(*orchestration_of(once)) == (
        pytest.approx(extra, rel=1e-9)
    )


def test_a_spoken_avatar_enters_the_voice_and_avatar_states():
    record = _job("avatar", [("voice", 1, {"voice-1-a": 4.0}), ("avatar", 2, {"avatar-2-b": 30.0})], None)
    states = _path_through_the_state_machine(
        [
            "Validate",
            "Moderate",
            "Plan",
            "HasVoiceStep",
            "Voice",
            "MainStep",
            "Avatar",
            "Finalize",
            "NotifyCompleted",
            "Completed",
        ]
    )
    retry = 1  # the avatar's second attempt enters Avatar again
    calls = {
        "validate": 1,
        "moderate": 1,
        "plan": 1,
        "dispatch": 3,
        "complete": 6,
        "finalize": 1,
        "notify": 3,
    }
    expected = (states + retry) * SFN_USD_PER_TRANSITION + _lambda_usd(calls)
    assert orchestration_cost(*orchestration_of(record)) == pytest.approx(expected, rel=1e-9)
    assert estimate_cost(record) == pytest.approx(expected, abs=5.1e-7)  # CPU workers: no GPU price


def test_a_parallel_avatar_counts_segment_every_chunk_and_the_stitch():
    # Three chunks rendered side by side (the step's attempts count chunk 0's only), then the stitch.
    chunks = {"avatar-c0-1-a": 20.0, "avatar-c1-1-b": 21.0, "avatar-c2-1-c": 19.0}
    record = _job("avatar", [("avatar", 1, chunks), ("stitch", 1, {"stitch-1-d": 5.0})], "NVIDIA A10G")
    path = [
        "Validate",
        "Moderate",
        "Plan",
        "HasVoiceStep",
        "MainStep",
        "Segment",
        "HasChunks",
        "AvatarChunks",
        "Stitch",
    ]
    states = _path_through_the_state_machine([*path, "Finalize", "NotifyCompleted", "Completed"])
    chunk_tasks = 3  # AvatarChunk, inside the Map, once per chunk
    calls = {
        "validate": 1,
        "moderate": 1,
        "plan": 1,
        "segment": 1,
        "dispatch": 4,
        "complete": 8,
        "finalize": 1,
        "notify": 3,
    }
    expected = (states + chunk_tasks) * SFN_USD_PER_TRANSITION + _lambda_usd(calls)
    assert orchestration_cost(*orchestration_of(record)) == pytest.approx(expected, rel=1e-9)
    assert estimate_cost(record) == pytest.approx(65 * 0.000306 + expected, abs=5.1e-7)


def test_the_memory_priced_is_the_memory_each_function_is_deployed_with():
    # Read from the CDK app's source (importing it starts the jsii runtime): FunctionSpec(name, …,
    # memory_mb=…), the dataclass default where it is not given.
    tree = ast.parse((ASL.parents[2] / "infra" / "cdk" / "talkstack_cdk" / "functions.py").read_text())
    spec = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "FunctionSpec")
    default = next(
        n.value.value for n in spec.body if isinstance(n, ast.AnnAssign) and n.target.id == "memory_mb"
    )
    deployed = {
        call.args[0].value: next((k.value.value for k in call.keywords if k.arg == "memory_mb"), default)
        for call in ast.walk(tree)
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "FunctionSpec"
    }
    assert {name: deployed[name] for name in LAMBDA_MEMORY_MB} == LAMBDA_MEMORY_MB == MB
