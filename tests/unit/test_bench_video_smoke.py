"""bench/gpu/video_smoke.py in its --tiny CPU mode: the same code path as on a GPU (random weights
built from the checked-in configs, saved like the weights volume, loaded and rendered by our
VideoEngine, speed-option rows), never timings. And the checked-in real configs build the real
diffusers / transformers classes at the published sizes (on the meta device: no memory)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).parents[2] / "bench" / "gpu"
MODELS = ["ltx-video", "wan2.2-ti2v-5b"]
VARIANTS = ["sdpa", "cudnn", "fbcache", "fp8", "compile"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict]:
    """The kit as bench/gpu/smoke_kit.py runs it (the one command of the GPU machine): the video kit,
    and the avatar kit skipped for want of an upstream checkout (CI can reach PyPI only)."""
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "smoke_kit.py"),
            "--tiny",
            "--out",
            str(out),
            # inductor's C++ build takes most of a minute on 2 cores; aot_eager still traces with dynamo
            "--video-args",
            "--device cpu --compile-backend aot_eager",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = out / "video.json"
    return proc, json.loads(out.read_text())


def test_every_engine_passes_at_the_sizes_and_frames_the_engine_planned(run):
    _, report = run
    assert report["tiny"] is True and report["passed"] == dict.fromkeys(MODELS, True)
    rows = {(r["model"], r["variant"]): r for r in report["rows"]}
    assert list(rows) == [(m, v) for m in MODELS for v in VARIANTS]
    for model in MODELS:
        base = rows[(model, "sdpa")]
        assert base["status"] == "pass" and base["reason"] == ""
        # The default request: 5 s at 24 fps, one pass, the engine's default (16:9) size.
        assert base["expected"] == {"frames": 120, "size": "96×64", "passes": 1}
        assert (base["frames"], base["size"]) == (120, "96×64")
        assert base["steps"] == 2 and base["load_s"] > 0 and base["render_s"] > 0
        assert base["projected_s_per_min"] > 0 and base["projected_usd_per_min"] > 0
    # LTX runs the two-stage recipe: 2 steps, then the refine steps diffusers kept.
    assert rows[("ltx-video", "sdpa")]["refine_steps"] == 4
    assert rows[("ltx-video", "sdpa")]["s_per_refine_step"] is not None
    assert rows[("wan2.2-ti2v-5b", "sdpa")]["refine_steps"] == 0


def test_speed_options_run_or_say_why_not(run):
    _, report = run
    for row in report["rows"]:
        if row["variant"] in ("fbcache", "compile"):  # run on CPU too
            assert row["status"] == "pass", row
            assert (row["frames"], row["size"]) == (120, "96×64")
        elif row["variant"] == "cudnn":
            assert (row["status"], row["reason"]) == ("n/a", "needs a CUDA device")
        elif row["variant"] == "fp8":  # torchao missing, or no CUDA: either way a reason, no numbers
            assert row["status"] == "n/a" and row["reason"] and row["s_per_step"] is None


def test_the_table_shows_every_json_row(run):
    proc, report = run
    kit_output = proc.stdout[: proc.stdout.rindex("| kit | engine |")]  # before the runner's summary
    lines = [line for line in kit_output.splitlines() if line.startswith("| ")]
    header, body = lines[0], lines[1:]
    assert "s/step" in header and "peak VRAM GB" in header and "proj $/min (H100)" in header
    assert len(body) == len(report["rows"])
    for line, row in zip(body, report["rows"], strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:2] == [row["model"], row["variant"]]
        assert cells[2].startswith(row["status"])
        assert cells[8] == ("n/a" if row["frames"] is None else str(row["frames"]))
    for model in MODELS:
        assert f"{model}: PASS" in proc.stdout


def test_the_price_comes_from_the_wan_step_table(run):
    _, report = run
    sys.path.insert(0, str(BENCH))
    try:
        from wan_step import PRICES_PER_SECOND
    finally:
        sys.path.remove(str(BENCH))
    assert report["price_per_second"] == {"H100": PRICES_PER_SECOND["H100"]}
    for row in report["rows"]:
        if row["projected_s_per_min"] is not None:
            expected = row["projected_s_per_min"] * PRICES_PER_SECOND["H100"]
            assert row["projected_usd_per_min"] == pytest.approx(expected)


# Published sizes: LTX-Video 0.9.7 is the "13B" model; Wan2.2-TI2V-5B; T5-v1.1-XXL's encoder 4.7B;
# UMT5-XXL's encoder 5.7B (its 256k vocabulary); the 0.9.7 upsampler's single file is 505 MB in fp32.
PUBLISHED_B = {
    ("ltx-video", "transformer"): 13.0,
    ("ltx-video", "text_encoder"): 4.76,
    ("ltx-video", "upsampler"): 0.505 / 4,
    ("wan2.2-ti2v-5b", "transformer"): 5.0,
    ("wan2.2-ti2v-5b", "text_encoder"): 5.68,
}


@pytest.mark.parametrize("model", MODELS)
def test_the_real_configs_build_the_real_classes_at_their_published_sizes(model):
    sys.path.insert(0, str(BENCH))
    try:
        import video_smoke
    finally:
        sys.path.remove(str(BENCH))
    from talkstack.engines.gpu.video import MODEL_SPECS

    cfg = video_smoke.load_config(model, tiny=False)
    models = {n: c for n, c in cfg["components"].items() if not c["class"].endswith("Scheduler")}
    for name in set(cfg["components"]) - set(models):  # schedulers hold no weights: build them for real
        video_smoke.build_component(cfg["components"][name])
    with torch.device("meta"):
        parts = {name: video_smoke.build_component(c) for name, c in models.items()}
        if "upsampler" in cfg:
            parts["upsampler"] = video_smoke.build_component(cfg["upsampler"])
    for (m, name), billions in PUBLISHED_B.items():
        if m == model:
            count = sum(p.numel() for p in parts[name].parameters()) / 1e9
            assert count == pytest.approx(billions, rel=0.02), (name, count)
    # The VAE compresses as the engine's spec says (its size multiple and frame rule).
    spec, vae = MODEL_SPECS[model], parts["vae"]
    spatial = getattr(vae, "spatial_compression_ratio", None) or vae.config.scale_factor_spatial
    temporal = getattr(vae, "temporal_compression_ratio", None) or vae.config.scale_factor_temporal
    assert temporal == spec.frame_step and spec.size_multiple % spatial == 0
    text_dim = parts["text_encoder"].config.d_model
    transformer = parts["transformer"].config
    assert text_dim == transformer.get("caption_channels", transformer.get("text_dim"))


def test_the_kit_runner_sums_up_both_kits(run):
    proc, report = run
    summary = proc.stdout[proc.stdout.rindex("| kit | engine |") :]
    for model in MODELS:
        assert f"| video | {model} | {'pass' if report['passed'][model] else 'FAIL'} |" in summary
    assert "| avatar | — | skipped: no upstream checkout given" in summary
