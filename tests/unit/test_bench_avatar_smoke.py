"""bench/gpu/avatar_smoke.py: the offline GPU smoke kit for MultiTalk / InfiniteTalk.

Two parts, so the kit cannot rot although CI has no upstream checkout (only PyPI is reachable):
- always: the checked-in model configs against diffusers' own Wan transformer, the frame arithmetic of
  upstream's streaming loop against the numbers the engine and the issue rely on, the SDPA stand-ins
  against plain softmax attention, and the projection / table / JSON code;
- with TALKSTACK_UPSTREAM_MULTITALK / TALKSTACK_UPSTREAM_INFINITETALK pointing at checkouts of the
  pinned commits: `--tiny` end to end (the upstream generate through our AvatarEngine on CPU), and the
  configs' parameter counts against upstream's own classes.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "bench" / "gpu" / "avatar_smoke.py"
CONFIGS = ROOT / "bench" / "gpu" / "configs"
UPSTREAM = {
    "multitalk": os.environ.get("TALKSTACK_UPSTREAM_MULTITALK"),
    "infinitetalk": os.environ.get("TALKSTACK_UPSTREAM_INFINITETALK"),
}


def _kit():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("avatar_smoke", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["avatar_smoke"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


kit = _kit()


# ---------------------------------------------------------------------------------------------
# Always: no upstream code needed
# ---------------------------------------------------------------------------------------------


def test_the_14b_config_is_diffusers_wan_i2v_14b_and_counts_its_parameters() -> None:
    from diffusers import WanTransformer3DModel

    checked_in = json.loads((CONFIGS / "wan2.1-i2v-14b.json").read_text())
    original, converted = checked_in["config"], checked_in["diffusers"]["config"]
    # the original layout (what upstream reads) and diffusers' describe one model
    assert original["dim"] == converted["num_attention_heads"] * converted["attention_head_dim"]
    assert original["num_heads"] == converted["num_attention_heads"]
    assert (original["ffn_dim"], original["num_layers"], original["freq_dim"]) == (
        converted["ffn_dim"],
        converted["num_layers"],
        converted["freq_dim"],
    )
    assert (original["in_dim"], original["out_dim"]) == (converted["in_channels"], converted["out_channels"])
    with torch.device("meta"):
        model = WanTransformer3DModel(**{**converted, "patch_size": tuple(converted["patch_size"])})
    assert sum(p.numel() for p in model.parameters()) == checked_in["diffusers"]["params"]


def test_every_checked_in_config_loads_and_names_its_source() -> None:
    names = sorted(p.name for p in CONFIGS.glob("*.json") if p.name.startswith(("multitalk-", "wan2.1-")))
    assert len(names) == 7  # video_smoke.py's configs live beside these
    for name in names:
        data = json.loads((CONFIGS / name).read_text())
        assert data.get("what") and (
            data.get("source") or data.get("sources") or name == "multitalk-tiny.json"
        )
    tiny, full = kit.Sizes.load(True), kit.Sizes.load(False)
    # --tiny keeps what upstream hard-codes: 12 wav2vec2 layers x 768 for AudioProjModel, 1280-wide CLIP
    assert (tiny.wav2vec2["num_hidden_layers"], tiny.wav2vec2["hidden_size"]) == (12, 768)
    assert (full.wav2vec2["num_hidden_layers"], full.wav2vec2["hidden_size"]) == (12, 768)
    assert tiny.clip["vision_dim"] == 1280 and tiny.dit["in_dim"] == full.dit["in_dim"] == 36
    head = tiny.dit["dim"] // tiny.dit["num_heads"]
    assert head % 2 == 0 and (head // 2) == (head // 2 - 2 * (head // 2 // 3)) + 2 * (head // 2 // 3)


@pytest.mark.parametrize(
    ("model", "rows", "max_frames", "returned", "windows"),
    [
        # MultiTalk pads the embedding by end - rows + 3 and cuts that many frames: 3 short (issue 14, #3)
        ("multitalk", 150, 1000, 147, 3),
        ("multitalk", 125, 1000, 122, 2),
        ("multitalk", 83, 81, 81, 1),  # clip mode: max_frames_num == frame_num, one window
        # InfiniteTalk cuts to the embedding's own length
        ("infinitetalk", 150, 1000, 150, 2),
        ("infinitetalk", 83, 81, 81, 1),
    ],
)
def test_upstream_frame_arithmetic(
    model: str, rows: int, max_frames: int, returned: int, windows: int
) -> None:
    assert kit.upstream_frames(model, rows, max_frames=max_frames) == (returned, windows)


@pytest.mark.parametrize("model", ["multitalk", "infinitetalk"])
@pytest.mark.parametrize("rows", [82, 100, 137, 150, 194, 250, 999])
@pytest.mark.parametrize("cap", [81, 150, 1000])
def test_the_kit_and_the_engine_read_upstreams_loop_alike(model: str, rows: int, cap: int) -> None:
    """Two copies of one loop (the kit's checks the engine's; the tiny run checks both against
    upstream's own code): frames returned and windows rendered."""
    from talkstack.engines.gpu import avatar_prep as prep

    engine = prep.upstream_outcome(
        model, rows, frame_num=81, motion_frame=prep.MOTION_FRAMES[model], max_frames_num=cap
    )
    assert kit.upstream_frames(model, rows, max_frames=cap) == (engine.frames, engine.windows)
    assert kit.MOTION[model] == prep.MOTION_FRAMES[model]


@pytest.mark.parametrize("model", ["multitalk", "infinitetalk"])
@pytest.mark.parametrize("frames", [82, 125, 150, 250, 999])
def test_the_engines_plan_gets_every_frame_by_the_kits_arithmetic(model: str, frames: int) -> None:
    from talkstack.engines.gpu import avatar_prep as prep

    plan = prep.model_plan(model, frames)
    assert kit.upstream_frames(model, plan.rows, max_frames=plan.max_frames_num) == (frames, plan.windows)


def test_production_settings_come_from_the_engine() -> None:
    from talkstack.engines.gpu import avatar_prep as prep

    assert kit.production("multitalk", turbo=False) == (40, 3)
    assert kit.production("infinitetalk", turbo=True) == (prep.TURBO_STEPS, 2)


def _reference_attention(q, k, v, k_lens=None):
    """softmax(q k^T / sqrt(d)) v per batch item, keys past k_lens ignored: [B, L, heads, dim]."""
    out = []
    for b in range(q.shape[0]):
        n = k.shape[1] if k_lens is None else int(k_lens[b])
        qb, kb, vb = (t[b].transpose(0, 1).double() for t in (q, k[:, :n], v[:, :n]))
        weights = torch.softmax(qb @ kb.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        out.append((weights @ vb).transpose(0, 1))
    return torch.stack(out).float()


def test_the_sdpa_stand_ins_compute_attention() -> None:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 7, 3, 8, generator=gen) for _ in range(3))
    flash = kit.sdpa_flash_attention("math")
    torch.testing.assert_close(flash(q, k, v), _reference_attention(q, k, v), rtol=1e-4, atol=1e-5)
    lens = torch.tensor([7, 4])
    torch.testing.assert_close(
        flash(q, k, v, k_lens=lens), _reference_attention(q, k, v, lens), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(kit._sdpa_bmhk(q, k, v), _reference_attention(q, k, v), rtol=1e-4, atol=1e-5)


def test_projection_table_and_json() -> None:
    row = kit.Row(
        "multitalk", "stream", ok=True, s_per_forward=2.0, forwards=18, windows=3, generate_s=48.0, passes=3
    )
    kit.project(row, "multitalk", False, 0.001)
    per_window = 40 * 3 * 2.0 + (48.0 - 18 * 2.0) / 3  # production steps x passes x s/forward + the rest
    assert row.projected_s_per_min == pytest.approx(27 * per_window)  # 1 + ceil((1500 - 81) / 56) windows
    assert row.usd_per_min == pytest.approx(27 * per_window * 0.001)
    turbo = kit.Row(
        "infinitetalk", "turbo", ok=True, s_per_forward=2.0, forwards=4, windows=1, generate_s=10.0
    )
    kit.project(turbo, "infinitetalk", True, 0.001)
    steps, passes = kit.production("infinitetalk", turbo=True)
    assert turbo.projected_s_per_min == pytest.approx(
        21 * (steps * passes * 2.0 + 2.0)
    )  # 1 + ceil(1419 / 72)
    report = {
        "config": {
            "tiny": True,
            "weights": "files",
            "device_name": "cpu",
            "torch": torch.__version__,
            "steps": 2,
            "shims": {"xformers": "why"},
            "fixes": ["a fix"],
            "patches": ["a patch"],
            "skipped_engines": {},
            "price_gpu": "H100",
        },
        "rows": [kit.asdict(row), kit.asdict(turbo)],
        "speed": [{"engine": "multitalk", "variant": "cudnn", "s_per_forward": None, "note": "n/a: no GPU"}],
        "ok": True,
    }
    text = kit.render_report(report)
    assert "| multitalk" in text and "stand-in: xformers" in text and "n/a: no GPU" in text
    assert text.rstrip().endswith("result: PASS")
    json.dumps(report)


def test_the_kit_refuses_to_run_without_a_checkout() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "--multitalk-code" in proc.stderr


# ---------------------------------------------------------------------------------------------
# With upstream checkouts (TALKSTACK_UPSTREAM_MULTITALK / TALKSTACK_UPSTREAM_INFINITETALK)
# ---------------------------------------------------------------------------------------------

needs_upstream = pytest.mark.skipif(
    not any(UPSTREAM.values()),
    reason="no upstream checkout: set TALKSTACK_UPSTREAM_MULTITALK / TALKSTACK_UPSTREAM_INFINITETALK to "
    "checkouts of MeiGen-AI/MultiTalk c1ad840 / MeiGen-AI/InfiniteTalk 0107cd9 (bench/gpu/README.md)",
)


def _checkout_args() -> list[str]:
    args = []
    for model, path in UPSTREAM.items():
        if path:
            args += [f"--{model}-code", path]
    return args


@needs_upstream
def test_the_configs_match_upstreams_own_classes() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--count-params", *_checkout_args()],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = json.loads(proc.stdout[proc.stdout.index("{") :])
    wan = json.loads((CONFIGS / "wan2.1-i2v-14b.json").read_text())
    for name in counts.values():  # one entry per checkout
        assert name["dit"] == wan["multitalk_params"]
        # upstream's WanModel less MultiTalk's audio layers is diffusers' Wan I2V 14B, parameter for parameter
        assert name["dit_without_audio"] == wan["diffusers"]["params"]
        assert (
            name["t5_encoder"] == json.loads((CONFIGS / "wan2.1-umt5-xxl.json").read_text())["encoder_params"]
        )
        assert name["clip"] == json.loads((CONFIGS / "wan2.1-clip-vit-h-14.json").read_text())["params"]
        assert name["vae"] == json.loads((CONFIGS / "wan2.1-vae.json").read_text())["params"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path_factory.mktemp("avatar-smoke") / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--tiny",
            *_checkout_args(),
            "--speed",
            "sdpa,cudnn,fp8",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc, json.loads(out.read_text())


@needs_upstream
def test_tiny_run_of_the_upstream_code_through_our_engine(tiny_run) -> None:
    proc, report = tiny_run
    engines = [m for m, path in UPSTREAM.items() if path]
    assert report["config"]["engines"] == engines
    rows = {(r["engine"], r["row"]): r for r in report["rows"]}
    expected = {(e, name) for e in engines for name in ("stream", "teacache", "turbo")}
    assert set(rows) == expected, proc.stdout[-3000:]
    for (_, name), row in rows.items():
        # the upstream generate ran and returned what its own loop arithmetic says
        assert row["frames_returned"] is not None, row["note"]
        assert row["frames_returned"] == row["frames_predicted"], row
        assert row["passes"] == (2 if name == "turbo" else 3)
        assert row["forwards"] == row["windows"] * 2 * row["passes"]  # 2 sampling steps per window
        assert row["blocks_run"] == row["forwards"]  # TeaCache never skips within its first 5 steps
    for engine in engines:
        assert rows[(engine, "stream")]["frames_needed"] == 150  # 6 s at 25 fps
        assert rows[(engine, "stream")]["windows"] == {"multitalk": 3, "infinitetalk": 2}[engine]
        assert rows[(engine, "teacache")]["windows"] == rows[(engine, "turbo")]["windows"] == 1
    speed = {s["variant"]: s for s in report["speed"]}
    assert {s["engine"] for s in report["speed"]} == {engines[-1]}  # the last engine's DiT, after its rows
    assert speed["sdpa"]["s_per_forward"] is not None
    assert speed["cudnn"]["note"].startswith("n/a") and speed["fp8"]["note"].startswith("n/a")
    # every frame of the speech (before the engine padded to model_plan, MultiTalk returned 147 of 150)
    assert all(r["frames_returned"] >= r["frames_needed"] for r in report["rows"])
    assert not [r for r in report["rows"] if not r["ok"]]
    assert report["ok"] and proc.returncode == 0
