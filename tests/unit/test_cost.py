"""Estimated job cost: GPU seconds the workers reported, priced by the GPU they reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from talkstack.contract import JobRecord, parse_job_request
from talkstack.pipeline.cost import (
    MODAL_GPU_USD_PER_S,
    engine_cost,
    estimate_cost,
    gpu_price_key,
    gpu_seconds,
)

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
