"""Offline GPU smoke test of the video engine: LTX-Video and Wan2.2-TI2V-5B through OUR VideoEngine at
production sizes, with random weights and no network.

For each model: build every component (transformer, VAE, text encoder, scheduler, LTX's latent
upsampler) from the real configs checked in under bench/gpu/configs/, with random bf16 weights straight
on the device; save them in a temporary folder laid out like the weights volume
(<root>/<org>/<name>, as talkstack/engines/gpu/weights_catalog.py fetches them); load them the way the
Modal container does (`VideoEngine(model, weights_dir=root)`); render the default request (5 s, 16:9,
the engine's default size, LTX in its two-stage recipe) with 2 sampling steps. Random weights render
noise: this proves the code path, sizes, frame counts, memory and speed, never quality.

Rows per model: `sdpa` (the engine as deployed) and the speed options where the model allows them:
  cudnn      diffusers attention backend "_native_cudnn" (torch's cuDNN SDPA; CUDA only)
  fbcache    diffusers FirstBlockCache (threshold --cache-threshold) on the transformer. With random
             weights the hit rate says nothing about trained ones: read it as what a hit costs.
  fp8        torchao float8 dynamic-activation + weight quantisation of the transformer (CUDA with
             compute capability >= 8.9; n/a without torchao). Irreversible, so it runs after the others.
  compile    torch.compile of the transformer's repeated blocks (diffusers compile_repeated_blocks),
             one warm-up render then a timed one; on top of fp8 when that row ran ("fp8+compile").

    python bench/gpu/video_smoke.py --json out/video_smoke.json          # on one H100 (or larger)
    python bench/gpu/video_smoke.py --tiny --json /tmp/video_smoke.json  # tiny configs on CPU, seconds

The tokenizer is built offline from a small generated vocabulary (transformers' T5 Unigram tokenizer):
prompts tokenise to fewer, different ids than with the real SentencePiece model, but both pipelines pad
to their max_sequence_length, so the text encoder does the same work. See bench/gpu/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # wan_step: the price table and helpers
sys.path.insert(1, str(HERE.parents[1]))  # talkstack, when the repository is not pip-installed

import torch  # noqa: E402
from wan_step import PRICES_PER_SECOND, backend_unavailable, default_dtype, fmt, table  # noqa: E402

from talkstack.contract.request import VideoOptions  # noqa: E402
from talkstack.contract.worker import VideoTask, offline_task  # noqa: E402
from talkstack.engines.gpu.video import MODEL_SPECS, VideoEngine, plan_passes, plan_render  # noqa: E402

CONFIGS = HERE / "configs"
MODELS = ("ltx-video", "wan2.2-ti2v-5b")
VARIANTS = ("sdpa", "cudnn", "fbcache", "fp8", "compile")
PRICE_GPU = "H100"
PROMPT = "a red cat walks on the beach at sunset, slow camera pan"
TINY_SIZES = {"16:9": (96, 64), "9:16": (64, 96), "1:1": (64, 64)}
"""Tiny output sizes: multiples of 32 whose 2/3 stays above 32 (LTX's stage 1 is a real downscale)."""
WORDS = [
    "a",
    "an",
    "the",
    "of",
    "on",
    "in",
    "at",
    "with",
    "and",
    "slow",
    "fast",
    "camera",
    "pan",
    "zoom",
    "city",
    "street",
    "night",
    "day",
    "sun",
    "sunset",
    "sea",
    "beach",
    "waves",
    "forest",
    "tree",
    "mountain",
    "river",
    "cat",
    "dog",
    "bird",
    "person",
    "walks",
    "runs",
    "flies",
    "red",
    "blue",
    "green",
    "light",
    "rain",
    "snow",
]


@dataclass
class Row:
    model: str
    variant: str
    status: str = "pass"  # pass | fail | n/a
    reason: str = ""
    load_s: float | None = None
    render_s: float | None = None
    generate_s: float | None = None
    s_per_step: float | None = None
    s_per_refine_step: float | None = None
    steps: int | None = None
    refine_steps: int = 0
    peak_vram_gb: float | None = None
    frames: int | None = None
    size: str | None = None
    expected: dict[str, Any] = field(default_factory=dict)
    projected_s_per_min: float | None = None
    projected_usd_per_min: float | None = None


# ---------------------------------------------------------------------------------------------------------
# Build and save random-weight components laid out like the real weights
# ---------------------------------------------------------------------------------------------------------
def load_config(model: str, tiny: bool) -> dict[str, Any]:
    """The model's checked-in config; with `tiny`, its tiny overrides merged over each component."""
    cfg = json.loads((CONFIGS / f"{model}.json").read_text())
    if tiny:
        for name, changes in cfg["tiny"].items():
            target = cfg["upsampler"] if name == "upsampler" else cfg["components"][name]
            target["config"] = {**target["config"], **changes}
    return cfg


def offline_tokenizer() -> Any:
    """A T5 Unigram tokenizer (SentencePiece-style `▁` word starts) from a generated vocabulary."""
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -30.0)]
    pieces += [(f"▁{word}", -float(i + 1)) for i, word in enumerate(WORDS)]
    pieces += [(ch, -50.0) for ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-"]
    return T5TokenizerFast(vocab=pieces, extra_ids=0)


def build_component(spec: dict[str, Any]) -> Any:
    import diffusers
    import transformers

    if "config_class" in spec:  # a transformers text encoder
        config = getattr(transformers, spec["config_class"])(**spec["config"])
        return getattr(transformers, spec["class"])(config).eval()
    if spec["class"] == "LTXLatentUpsamplerModel":
        from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

        return LTXLatentUpsamplerModel(**spec["config"]).eval()
    cls = getattr(diffusers, spec["class"])
    if spec["class"].endswith("Scheduler"):
        return cls(**spec["config"])
    return cls(**spec["config"]).eval()


def write_weights(cfg: dict[str, Any], root: Path, device: torch.device) -> float:
    """Build every component with random weights on `device` (bf16 on CUDA: PyTorch's default init runs
    there in seconds) and save it under `root` as the weights volume holds it. Returns the GB written."""
    import diffusers

    spec = MODEL_SPECS[cfg["model_id"]]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.device(device), default_dtype(dtype):
        parts = {name: build_component(c) for name, c in cfg["components"].items()}
        upsampler = build_component(cfg["upsampler"]) if "upsampler" in cfg else None
    if cfg["model_id"].startswith("wan"):
        parts["vae"] = parts["vae"].float()  # the engine keeps Wan's VAE in fp32 too
    pipe = getattr(diffusers, cfg["pipeline"])(
        tokenizer=offline_tokenizer(), **parts, **cfg.get("pipeline_kwargs", {})
    )
    pipe.save_pretrained(root / spec.weights_subdir)
    if upsampler is not None and spec.refine is not None:
        # The engine reads only latent_upsampler/ of the upsampler repository (the catalogue's patterns).
        upsampler.save_pretrained(root / spec.refine.upsampler_repo_id / "latent_upsampler")
    del pipe, parts, upsampler
    free(device)
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e9


def free(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------------
# Render through the engine and measure
# ---------------------------------------------------------------------------------------------------------
def make_task(model: str, steps: int, duration_s: float) -> VideoTask:
    """A worker task as dispatch builds it; the URLs are never used (the engine is called directly)."""
    options = {"steps": steps, "duration_s": duration_s, "seed": 0}
    task = offline_task("video", model, options, text=PROMPT, job_id="smoke")
    assert isinstance(task, VideoTask)
    return task


def mean_gap(times: list[float]) -> float | None:
    """Mean time between consecutive step ends: one denoising step each (the first end also holds
    the prompt encoding and set-up, so it only closes the first gap)."""
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return sum(gaps) / len(gaps) if gaps else None


def render_once(engine: VideoEngine, task: VideoTask, outdir: Path, row: Row, device: torch.device) -> None:
    spec = engine.spec
    options = task.options
    plan = plan_render(spec, options)
    stamps: list[tuple[float, int]] = []

    def progress(_fraction: float, message: str) -> None:
        if ", step " in message and message.startswith("pass 1/"):
            stamps.append((time.perf_counter(), int(message.split("step ")[1].split("/")[0])))

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    outdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    _, result = engine(task, {}, outdir, progress)
    row.render_s = time.perf_counter() - started
    row.generate_s = result.timings.get("generate_s")
    if device.type == "cuda":
        row.peak_vram_gb = torch.cuda.max_memory_allocated() / 1e9
    refine = plan.refine.steps if plan.refine is not None else 0
    first_steps = plan.steps_per_pass - refine
    row.steps, row.refine_steps = first_steps, refine
    row.s_per_step = mean_gap([t for t, step in stamps if step <= first_steps])
    row.s_per_refine_step = mean_gap([t for t, step in stamps if step > first_steps]) if refine else None
    row.frames, row.size = result.frames, f"{result.width}×{result.height}"
    row.expected = {"frames": plan.frames, "size": f"{plan.width}×{plan.height}", "passes": plan.passes}
    if stamps[-1][1] != plan.steps_per_pass or len(stamps) != plan.steps_per_pass:
        raise AssertionError(f"{len(stamps)} step callbacks, expected {plan.steps_per_pass}")
    if (row.frames, row.size) != (plan.frames, row.expected["size"]):
        raise AssertionError(f"rendered {row.frames} frames of {row.size}, expected {row.expected}")
    project(row, spec.model_id, options)


def project(row: Row, model: str, options: VideoOptions) -> None:
    """Seconds and dollars per output minute with the model's production steps: the measured pass plus
    the missing steps at the measured s/step, per output frame (linear in frames: longer passes cost
    somewhat more per frame, attention grows faster than linearly), plus encoding per frame."""
    spec = MODEL_SPECS[model]
    if row.generate_s is None or row.render_s is None or row.s_per_step is None or not row.frames:
        return
    production = len(spec.default_timesteps) if spec.default_timesteps else spec.default_steps
    generate = row.generate_s + (production - (row.steps or 0)) * row.s_per_step
    passes, pass_frames = plan_passes(spec, row.frames)
    new_frames = pass_frames + (passes - 1) * (pass_frames - 1)
    minute_frames = 60 * options.fps
    row.projected_s_per_min = (
        generate / new_frames * minute_frames + (row.render_s - row.generate_s) / (row.frames) * minute_frames
    )
    row.projected_usd_per_min = row.projected_s_per_min * PRICES_PER_SECOND[PRICE_GPU]


def unavailable(variant: str, device: torch.device) -> str | None:
    if variant == "cudnn":
        return backend_unavailable("_native_cudnn", device)
    if variant == "fp8":
        try:
            import torchao  # noqa: F401
        except ImportError:
            return "torchao is not installed (pip install torchao)"
        if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
            return "float8 matmuls need a CUDA GPU of compute capability 8.9 or newer"
    return None


@contextlib.contextmanager
def variant_applied(variant: str, transformer: Any, args: argparse.Namespace) -> Iterator[None]:
    if variant == "cudnn":
        transformer.set_attention_backend("_native_cudnn")
        try:
            yield
        finally:
            transformer.set_attention_backend("native")
    elif variant == "fbcache":
        from diffusers.hooks import FirstBlockCacheConfig

        transformer.enable_cache(FirstBlockCacheConfig(threshold=args.cache_threshold))
        try:
            yield
        finally:
            transformer.disable_cache()
    elif variant == "fp8":
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, quantize_

        quantize_(transformer, Float8DynamicActivationFloat8WeightConfig())
        yield
    elif variant == "compile":
        transformer.compile_repeated_blocks(backend=args.compile_backend)
        yield
    else:
        yield


def run_model(model: str, args: argparse.Namespace, device: torch.device, work: Path) -> list[Row]:
    cfg = load_config(model, args.tiny)
    spec = MODEL_SPECS[model]
    if args.tiny:  # tiny output sizes and short prompts; everything else as in production
        import dataclasses

        spec = dataclasses.replace(spec, sizes=TINY_SIZES, max_sequence_length=16)
    rows: list[Row] = []
    base = Row(model, "sdpa")
    root = work / model / "weights"
    task = make_task(model, args.steps, args.duration_s)
    try:
        t0 = time.perf_counter()
        written_gb = write_weights(cfg, root, device)
        print(f"{model}: wrote {written_gb:.2f} GB of random weights in {time.perf_counter() - t0:.0f} s")
        engine = VideoEngine(model, weights_dir=root, device=str(device), spec=spec)
        t0 = time.perf_counter()
        engine.load()
        base.load_s = time.perf_counter() - t0
        render_once(engine, task, work / model / "sdpa", base, device)
    except Exception as exc:  # report, then go on with the next model
        base.status, base.reason = "fail", f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        traceback.print_exc()
        shutil.rmtree(work / model, ignore_errors=True)
        return [base, *(Row(model, v, "n/a", "the sdpa row failed") for v in args.variants if v != "sdpa")]
    rows.append(base)
    transformer = engine.pipelines["text"].transformer
    fp8_done = False
    for variant in (v for v in VARIANTS if v in args.variants and v != "sdpa"):
        name = "fp8+compile" if variant == "compile" and fp8_done else variant
        row = Row(model, name)
        reason = unavailable(variant, device)
        if reason is not None:
            row.status, row.reason = "n/a", reason
            rows.append(row)
            continue
        row.load_s = base.load_s
        try:
            with variant_applied(variant, transformer, args):
                if variant == "compile":  # the first render compiles; time the second
                    render_once(engine, task, work / model / f"{variant}-warmup", Row(model, name), device)
                render_once(engine, task, work / model / variant, row, device)
            fp8_done = fp8_done or variant == "fp8"
        except Exception as exc:
            row.status, row.reason = "fail", f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            traceback.print_exc()
        rows.append(row)
    del engine, transformer
    free(device)
    shutil.rmtree(work / model, ignore_errors=True)
    return rows


# ---------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------
HEADERS = [
    "model",
    "variant",
    "status",
    "load s",
    "s/step",
    "refine s/step",
    "render s",
    "peak VRAM GB",
    "frames",
    "size",
    "proj s/min",
    f"proj $/min ({PRICE_GPU})",
]


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            r["model"],
            r["variant"],
            r["status"] if not r["reason"] else f"{r['status']}: {r['reason']}"[:70],
            fmt(r["load_s"], 1),
            fmt(r["s_per_step"], 3),
            fmt(r["s_per_refine_step"], 3),
            fmt(r["render_s"], 1),
            fmt(r["peak_vram_gb"], 1),
            "n/a" if r["frames"] is None else str(r["frames"]),
            r["size"] or "n/a",
            fmt(r["projected_s_per_min"], 0),
            fmt(r["projected_usd_per_min"], 3),
        ]
        for r in rows
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny configs and sizes (CPU, seconds)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=2, help="sampling steps (LTX: of stage 1)")
    parser.add_argument("--duration-s", type=float, default=VideoOptions().duration_s)
    parser.add_argument("--cache-threshold", type=float, default=0.05)
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--workdir", type=Path, default=None, help="where the random weights go (temp dir)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = set(args.models) - set(MODELS) | set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown models/variants: {sorted(unknown)}")
    if "sdpa" not in args.variants:
        args.variants.insert(0, "sdpa")  # every other row is measured against the engine as deployed
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):  # keep the log to what the kit prints
        library.disable_progress_bar()
        library.set_verbosity_error()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        torch.set_num_threads(1)  # tiny tensors: one thread avoids oversubscribing shared cores
    started = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="video_smoke-") as tmp:
        for model in args.models:
            rows.extend(run_model(model, args, device, Path(tmp)))
    report = {
        "kit": "video_smoke",
        "tiny": args.tiny,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
        "torch": torch.__version__,
        "steps": args.steps,
        "duration_s": args.duration_s,
        "price_per_second": {PRICE_GPU: PRICES_PER_SECOND[PRICE_GPU]},
        "wall_s": time.perf_counter() - started,
        "rows": [asdict(r) for r in rows],
        "passed": {m: any(r.model == m and r.variant == "sdpa" and r.status == "pass" for r in rows)
                   for m in args.models},
    }  # fmt: skip
    print(f"\nvideo_smoke on {report['device']}{' (tiny configs)' if args.tiny else ''}, {args.steps} steps")
    print(table(HEADERS, table_rows(report["rows"])))
    for model, ok in report["passed"].items():
        print(f"{model}: {'PASS' if ok else 'FAIL'}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str))
    failed = [r for r in rows if r.status == "fail"]
    return 1 if failed or not all(report["passed"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
