"""bench/gpu/wan_step.py in its --tiny CPU mode: every variant row and the cost arithmetic, never timings.

The real benchmark needs a GPU; this runs the same code path (diffusers' Wan transformer, the audio
stand-ins, the attention-backend switch, FirstBlockCache, torch.compile) on a toy config in seconds.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "bench" / "gpu" / "wan_step.py"
VARIANTS = [
    "sdpa",
    "flash",
    "flash3",
    "sage",
    "cudnn",
    "fbcache",
    "fbcache-floor",
    "sdpa+compile",
    "best+compile",
]
# Without CUDA these cannot run; best+compile is n/a because the fastest eager backend is then sdpa.
NOT_ON_CPU = {"flash", "flash3", "sage", "cudnn", "best+compile"}
MODES = ["default", "turbo-4", "turbo-8", "parallel×4 default", "parallel×4 turbo-4"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("bench") / "wan_step.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--tiny",
            "--device",
            "cpu",
            "--iters",
            "1",
            "--cache-steps",
            "2",
            # inductor's C++ build takes most of a minute on 2 cores; aot_eager still traces with dynamo
            "--compile-backend",
            "aot_eager",
            "--price-per-hour",
            "custom=3.6",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def table_row(stdout: str, first_cell: str) -> list[str]:
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row {first_cell!r} in:\n{stdout}")


def test_every_variant_has_a_row_in_the_table_and_the_json(run):
    stdout, report = run
    assert [v["name"] for v in report["variants"]] == VARIANTS
    for variant in report["variants"]:
        row = table_row(stdout, variant["name"])
        if variant["name"] in NOT_ON_CPU:
            assert variant["status"] == "n/a"
            assert variant["ms_per_forward"] is None
            assert variant["note"]
            assert row[4] == "n/a"  # ms/forward
        else:
            assert variant["status"] == "ok", variant
            assert variant["ms_per_forward"] > 0
            assert variant["s_per_step"] > 0
            assert row[4] != "n/a"
        assert variant["peak_gb"] is None  # no CUDA memory stats on CPU
    caches = {v["name"]: v for v in report["variants"] if v["cache"] != "none"}
    assert set(caches) == {"fbcache", "fbcache-floor"}
    assert all(0.0 <= v["cache_hit_rate"] <= 1.0 for v in caches.values())


def test_cost_table_rows_recompute_from_the_json(run):
    stdout, report = run
    cost, assumptions = report["cost"], report["assumptions"]
    rows = {r["mode"]: r for r in cost["rows"]}
    assert list(rows) == MODES
    for mode in MODES:
        table_row(stdout, mode)

    # the basis is the fastest uncached variant that ran
    uncached = [v for v in report["variants"] if v["status"] == "ok" and v["cache"] == "none"]
    fastest = min(uncached, key=lambda v: v["ms_per_forward"])
    assert cost["basis"]["variant"] == fastest["name"]
    s_fwd = cost["basis"]["s_per_forward"]
    assert s_fwd == pytest.approx(fastest["ms_per_forward"] / 1e3)

    # --tiny: 9-frame windows with 5 motion frames → 4 new frames each; one minute at 25 fps = 1500 frames
    frames, motion, per_minute = (
        assumptions["frames"],
        assumptions["motion_frames"],
        assumptions["frames_per_minute"],
    )
    assert (frames, motion, per_minute) == (9, 5, 1500)
    windows = 1 + math.ceil((per_minute - frames) / (frames - motion))
    assert assumptions["windows_per_minute"] == windows == 374

    default = rows["default"]
    assert (default["steps"], default["passes"], default["windows"]) == (40, 3, windows)
    assert default["gpu_s"] == pytest.approx(windows * 40 * 3 * s_fwd)
    assert default["wall_s"] == pytest.approx(default["gpu_s"])
    prices = cost["prices_per_second"]
    assert prices["H100"] == pytest.approx(0.001097)
    assert prices["custom"] == pytest.approx(3.6 / 3600)
    for gpu, price in prices.items():
        assert default["usd"][gpu] == pytest.approx(default["gpu_s"] * price)
    assert table_row(stdout, "default")[6 + list(prices).index("H100")] == f"{default['usd']['H100']:,.2f}"

    assert rows["turbo-4"]["gpu_s"] == pytest.approx(windows * 4 * 2 * s_fwd)

    # parallel: 4 chunks of 375 frames, each streamed on its own GPU; wall-clock is one chunk's share
    parallel = rows["parallel×4 turbo-4"]
    chunk_windows = 1 + math.ceil((math.ceil(per_minute / 4) - frames) / (frames - motion))
    assert (parallel["chunks"], parallel["windows_per_chunk"]) == (4, chunk_windows)
    assert parallel["gpu_s"] == pytest.approx(4 * chunk_windows * 4 * 2 * s_fwd)
    assert parallel["wall_s"] == pytest.approx(parallel["gpu_s"] / 4)
