"""GPU benchmark: a MultiTalk denoising step on the Wan2.1-I2V-14B transformer, and a video minute's cost.

Builds the Wan2.1-I2V-14B transformer (diffusers' `WanTransformer3DModel`) with RANDOM bf16 weights,
adds shape-faithful stand-ins for MultiTalk's audio layers, and times transformer forward passes at
480×832 × 81 frames. No weights are downloaded: the figures are speed and memory, never quality.

A denoising step is N forward passes (MultiTalk, wan/multitalk.py):
  default  3 passes: conditional, drop-text, drop-audio+text (text guide 5, audio guide 4)
  turbo    2 passes: with a distillation LoRA and `sample_text_guide_scale=1` MultiTalk runs only
           conditional + drop-audio (lightx2v: 4 steps, FusionX: 8 steps). The LoRA is merged into the
           weights (wan/wan_lora.py), so a turbo pass costs the same as a default one.

Variants (one table row each; "n/a" with the reason where a package or a CUDA device is missing):
  sdpa            eager, torch scaled_dot_product_attention (diffusers' "native" backend)
  flash / flash3 / sage / cudnn
                  eager, diffusers attention backend "flash" (flash-attn 2), "_flash_3" (FA3),
                  "sage" (SageAttention), "_native_cudnn" (torch's cuDNN attention, CUDA only)
  fbcache         the fastest eager backend + diffusers FirstBlockCache over --cache-steps real steps
                  (3 passes each, one cache context per pass). The hit rate with random weights says
                  nothing about trained ones: read it as "what a hit costs", not "how often it hits".
  fbcache-floor   the same with an infinite threshold: after the first step every pass is a cache hit,
                  so ms/forward is the cost of a hit (first block + bookkeeping). A step at hit rate h
                  costs about (1 - h) × full + h × floor.
  sdpa+compile    torch.compile of the repeated blocks (diffusers `compile_repeated_blocks`), SDPA
  best+compile    the same with the fastest eager backend (n/a when that is sdpa itself)

Then a cost table: GPU-seconds and dollars per minute of output video (25 fps, 81-frame windows of
which 25 are motion frames carried over from the previous window in streaming mode) for default,
turbo and parallel (chunked) modes, at Modal's per-second list prices (PRICES_PER_SECOND below).

    python bench/gpu/wan_step.py                         # full 14B config on cuda
    python bench/gpu/wan_step.py --variants sdpa,cudnn --iters 3 --json out/wan_step.json
    python bench/gpu/wan_step.py --tiny --device cpu --iters 1   # smoke run, seconds on CPU

See bench/gpu/README.md for the assumptions and how to read the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

# ---------------------------------------------------------------------------------------------------------
# Prices: Modal list prices, USD per GPU-second, base region, preemptible (modal.com/pricing). H100, A100-80GB
# and L40S as quoted by techbytes.app "Serverless GPU Pricing Matrix" (verified 2026-05-07: H100
# $0.001097/s = $3.9492/h, A100-80GB $2.4984/h, L40S $1.9512/h); H200 $0.001261/s as copied from
# modal.com/pricing into several public repositories (one dated 2026-10-08). Not read from modal.com itself
# here. Container CPU and memory are billed on top (see README). Override with --price-per-hour NAME=USD.
# ---------------------------------------------------------------------------------------------------------
PRICES_PER_SECOND: dict[str, float] = {
    "H100": 0.001097,
    "H200": 0.001261,
    "A100-80GB": 0.000694,
    "L40S": 0.000542,
}

# Wan2.1-I2V-14B-480P transformer, as diffusers' scripts/convert_wan_to_diffusers.py ("Wan-I2V-14B-480p")
# configures it; the same numbers as MultiTalk's wan/configs/wan_multitalk_14B.py (dim 5120 = 40 heads × 128,
# ffn 13824, 40 layers, freq 256, eps 1e-6, patch (1, 2, 2), qk/cross-attn norms) with in_channels 36
# (16 noise + 4 mask + 16 first-frame latents), text_dim 4096 (umt5-xxl) and the CLIP ViT-H image
# branch (image_dim 1280 projected to 5120 = added_kv_proj_dim).
WAN_I2V_14B: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 40,
    "attention_head_dim": 128,
    "in_channels": 36,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 13824,
    "num_layers": 40,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": 1280,
    "added_kv_proj_dim": 5120,
    "rope_max_seq_len": 1024,
}

# MultiTalk's audio adapter (wan/modules/multitalk_model.py WanModel defaults; wav2vec2-base features):
# per video frame a window of 5 wav2vec2 frames × 12 hidden layers × 768 channels; latent frames after
# the first gather the windows of 4 video frames into 5 + 4 - 1 = 8; a 3-layer MLP makes 32 context
# tokens of 768 per latent frame; every block cross-attends each latent frame's tokens to them.
MULTITALK_AUDIO: dict[str, int] = {
    "window": 5,
    "window_vf": 8,
    "layers": 12,
    "channels": 768,
    "intermediate_dim": 512,
    "context_tokens": 32,
    "output_dim": 768,
}

# --tiny: same structure, toy sizes, runs on CPU in seconds (the smoke test).
TINY_WAN: dict[str, Any] = {
    **WAN_I2V_14B,
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "text_dim": 32,
    "freq_dim": 32,
    "ffn_dim": 64,
    "num_layers": 2,
    "image_dim": 16,
    "added_kv_proj_dim": 32,
}
TINY_AUDIO: dict[str, int] = {
    "window": 5,
    "window_vf": 8,
    "layers": 2,
    "channels": 8,
    "intermediate_dim": 16,
    "context_tokens": 4,
    "output_dim": 16,
}

TEXT_TOKENS = 512  # umt5 context length; diffusers' Wan processor hard-codes it
IMAGE_TOKENS = 257  # CLIP ViT-H/14 at 224 px: 256 patches + class token
VAE_STRIDE = (4, 8, 8)  # Wan VAE: 4× temporal, 8× spatial
DEFAULT_STEPS = 40  # generate_multitalk.py: sample_steps defaults to 40
DEFAULT_PASSES = 3
TURBO_STEPS = (4, 8)  # lightx2v LoRA 4 steps, FusionX LoRA 8 steps (MultiTalk README)
TURBO_PASSES = 2
SAMPLE_SHIFT = 7.0  # generate_multitalk.py: 480p flow-matching shift
TEXT_GUIDE, AUDIO_GUIDE = 5.0, 4.0

EAGER_BACKENDS: dict[str, str] = {
    "sdpa": "native",
    "flash": "flash",
    "flash3": "_flash_3",
    "sage": "sage",
    "cudnn": "_native_cudnn",
}
ALL_VARIANTS: tuple[str, ...] = (*EAGER_BACKENDS, "fbcache", "fbcache-floor", "sdpa+compile", "best+compile")


# ---------------------------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shapes:
    frames: int
    height: int
    width: int
    patch: tuple[int, int, int]

    @property
    def latent(self) -> tuple[int, int, int]:
        return (
            (self.frames - 1) // VAE_STRIDE[0] + 1,
            self.height // VAE_STRIDE[1],
            self.width // VAE_STRIDE[2],
        )

    @property
    def frame_tokens(self) -> int:
        _, h, w = self.latent
        return (h // self.patch[1]) * (w // self.patch[2])

    @property
    def tokens(self) -> int:
        return self.latent[0] // self.patch[0] * self.frame_tokens


# ---------------------------------------------------------------------------------------------------------
# MultiTalk's audio layers: a shape-faithful re-implementation for timing only (own code, not MultiTalk's).
# Same parameter shapes and the same matmul/attention work per forward as MultiTalk's AudioProjModel,
# SingleStreamAttention (one speaker) and the reference-attention map its self-attention computes in every
# block (get_attn_map_with_target). Numerics are irrelevant here: the weights are random.
# ---------------------------------------------------------------------------------------------------------
class AudioSlot:
    """The current forward's audio context, read by every block (the block signature has no slot for it)."""

    def __init__(self) -> None:
        self.context: torch.Tensor | None = None


class AudioProjection(nn.Module):
    """wav2vec2 windows → `context_tokens` audio tokens per latent frame (runs once per forward)."""

    def __init__(self, cfg: dict[str, int]) -> None:
        super().__init__()
        per_frame = cfg["layers"] * cfg["channels"]
        self.first = nn.Linear(cfg["window"] * per_frame, cfg["intermediate_dim"])
        self.rest = nn.Linear(cfg["window_vf"] * per_frame, cfg["intermediate_dim"])
        self.mid = nn.Linear(cfg["intermediate_dim"], cfg["intermediate_dim"])
        self.out = nn.Linear(cfg["intermediate_dim"], cfg["context_tokens"] * cfg["output_dim"])
        self.norm = nn.LayerNorm(cfg["output_dim"])
        self.tokens, self.dim = cfg["context_tokens"], cfg["output_dim"]

    def forward(self, first: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
        # first: [B, 1, window, layers, channels]; rest: [B, T-1, window_vf, layers, channels]
        h = torch.cat([self.first(first.flatten(2)).relu(), self.rest(rest.flatten(2)).relu()], dim=1)
        h = self.out(self.mid(h).relu())
        return self.norm(h.unflatten(-1, (self.tokens, self.dim)))  # [B, T, tokens, dim]


class AudioCrossAttention(nn.Module):
    """Each latent frame's video tokens attend to that frame's audio tokens (MultiTalk, one speaker)."""

    def __init__(self, dim: int, heads: int, audio_dim: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps).float()  # MultiTalk's norm_x: affine, computed in fp32
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(audio_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.heads = heads
        self.attention_backend: str | None = None

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        from diffusers.models.attention_dispatch import dispatch_attention_fn

        batch, seq, dim = x.shape
        frames = context.shape[0] // batch  # context: [B*T, tokens, audio_dim]
        xn = self.norm(x.float()).type_as(x)
        q = self.q(xn).reshape(batch * frames, seq // frames, self.heads, -1)
        k, v = self.kv(context).unflatten(-1, (2, self.heads, -1)).unbind(2)
        out = dispatch_attention_fn(q, k, v, backend=self.attention_backend)
        return self.proj(out.reshape(batch, seq, dim).type_as(x))


class CrossAttnWithAudio(nn.Module):
    """Replaces a block's attn2 (and takes over its norm2) so the block computes MultiTalk's order:
    x + cross(norm2(x)) + audio(norm_x(x + cross(norm2(x)))), with the block's own code unchanged."""

    def __init__(self, text_attn: nn.Module, norm2: nn.Module, audio: AudioCrossAttention, slot: AudioSlot):
        super().__init__()
        self.text_attn, self.norm2, self.audio, self.slot = text_attn, norm2, audio, slot

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: Any = None,
    ) -> torch.Tensor:
        x = hidden_states  # raw: the block's norm2 is an Identity now
        cross = self.text_attn(
            self.norm2(x.float()).type_as(x), encoder_hidden_states, attention_mask, rotary_emb
        )
        assert self.slot.context is not None, "TimingModel.forward sets the audio context"
        return cross + self.audio(x + cross, self.slot.context)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs by diffusers' Wan 3-D RoPE angles (cos/sin repeated per pair)."""
    xf = x.to(cos.dtype)  # float64, like both diffusers and MultiTalk
    pairs = xf.unflatten(-1, (-1, 2))
    turned = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return (xf * cos + turned * sin).type_as(x)


def reference_attention_map(
    q: torch.Tensor, k_ref: torch.Tensor, masks: torch.Tensor, head_chunks: int = 2
) -> torch.Tensor:
    """MultiTalk's per-block map of how much each video token attends to each person's region of the
    first frame: softmax(q·k_ref) materialised over half the heads at a time (as MultiTalk does; that is
    the memory cost), reduced against each region mask.

    q: [B, S, H, D], k_ref: [B, R, H, D], masks: [M, R] → [B, S, M]."""
    heads = q.shape[2]
    step = max(1, heads // head_chunks)
    weights = (masks / masks.sum(-1, keepdim=True)).t().to(q.dtype)  # [R, M]
    total: torch.Tensor | None = None
    for start in range(0, heads, step):
        qc = (q[:, :, start : start + step] * q.shape[-1] ** -0.5).transpose(1, 2)
        kc = k_ref[:, :, start : start + step].transpose(1, 2)
        probs = (qc @ kc.transpose(-1, -2)).softmax(-1)  # [B, h, S, R]
        part = (probs @ weights).mean(1)  # [B, S, M]
        total = part if total is None else total + part
    assert total is not None
    return total / math.ceil(heads / step)


class SelfAttnWithRefMap:
    """attn1 processor: Wan self-attention (3-D RoPE, backend via diffusers' dispatcher) plus MultiTalk's
    reference-attention map. With one speaker MultiTalk computes the map and does not use it; a zero-valued
    tensor ties it to the output so torch.compile cannot drop the work."""

    _attention_backend: str | None = None
    _parallel_config: Any = None

    def __init__(self, frame_tokens: int, masks: torch.Tensor) -> None:
        self.frame_tokens = frame_tokens
        self.masks = masks
        self.zero = torch.zeros((), device=masks.device, dtype=masks.dtype)

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        from diffusers.models.attention_dispatch import dispatch_attention_fn

        heads = attn.heads
        q = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (heads, -1))
        k = attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (heads, -1))
        v = attn.to_v(hidden_states).unflatten(2, (heads, -1))
        if rotary_emb is not None:
            q, k = apply_rope(q, *rotary_emb), apply_rope(k, *rotary_emb)
        out = dispatch_attention_fn(q, k, v, attn_mask=attention_mask, backend=self._attention_backend)
        out = out.flatten(2, 3).type_as(q)
        ref_map = reference_attention_map(q, k[:, : self.frame_tokens], self.masks)
        out = out + (self.zero * ref_map.mean()).to(out.dtype)
        return attn.to_out[0](out)


class TimingModel(nn.Module):
    """The diffusers transformer plus the audio projection: one call = one MultiTalk forward pass."""

    def __init__(self, transformer: nn.Module, audio_proj: AudioProjection | None, slot: AudioSlot) -> None:
        super().__init__()
        self.transformer, self.audio_proj, self.slot = transformer, audio_proj, slot

    def forward(
        self, inputs: dict[str, torch.Tensor], text: torch.Tensor, audio_scale: float = 1.0
    ) -> torch.Tensor:
        if self.audio_proj is not None:
            ctx = self.audio_proj(inputs["audio_first"] * audio_scale, inputs["audio_rest"] * audio_scale)
            self.slot.context = ctx.flatten(0, 1)
        return self.transformer(
            hidden_states=inputs["latents"],
            timestep=inputs["timestep"],
            encoder_hidden_states=text,
            encoder_hidden_states_image=inputs["image"],
            return_dict=False,
        )[0]

    def audio_modules(self) -> Iterator[AudioCrossAttention]:
        return (m for m in self.modules() if isinstance(m, AudioCrossAttention))

    def set_backend(self, backend: str) -> None:
        self.transformer.set_attention_backend(backend)
        for m in self.audio_modules():
            m.attention_backend = backend


# ---------------------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def build_model(
    wan_cfg: dict[str, Any], audio_cfg: dict[str, int] | None, shapes: Shapes, device: torch.device
) -> TimingModel:
    """Allocate and initialise straight on `device` in bf16: the ~19B parameters get PyTorch's default
    (uniform) init on the GPU in seconds, instead of an fp32 build on the host."""
    from diffusers import WanTransformer3DModel

    with torch.device(device), default_dtype(torch.bfloat16):
        transformer = WanTransformer3DModel(**wan_cfg)
        # diffusers keeps these in fp32 when it loads the real checkpoint in bf16
        keep = set(WanTransformer3DModel._keep_in_fp32_modules)
        for name, param in transformer.named_parameters():
            if keep.intersection(name.split(".")):
                param.data = param.data.float()
        slot = AudioSlot()
        audio_proj = None
        if audio_cfg is not None:
            audio_proj = AudioProjection(audio_cfg)
            dim = wan_cfg["num_attention_heads"] * wan_cfg["attention_head_dim"]
            # one speaker: MultiTalk passes 3 region masks (person 1, person 2, background), all ones
            masks = torch.ones(3, shapes.frame_tokens)
            for block in transformer.blocks:
                audio = AudioCrossAttention(
                    dim, wan_cfg["num_attention_heads"], audio_cfg["output_dim"], wan_cfg["eps"]
                )
                block.attn2 = CrossAttnWithAudio(block.attn2, block.norm2, audio, slot)
                block.norm2 = nn.Identity()
                block.attn1.set_processor(SelfAttnWithRefMap(shapes.frame_tokens, masks))
    return TimingModel(transformer, audio_proj, slot).eval()


def make_inputs(
    wan_cfg: dict[str, Any], audio_cfg: dict[str, int] | None, shapes: Shapes, device: torch.device
) -> dict[str, torch.Tensor]:
    gen = torch.Generator(device="cpu").manual_seed(0)

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=gen).to(device=device, dtype=torch.bfloat16)

    t, h, w = shapes.latent
    inputs = {
        "latents": randn(1, wan_cfg["in_channels"], t, h, w),
        "timestep": torch.tensor([999.0], device=device),
        "text": randn(1, TEXT_TOKENS, wan_cfg["text_dim"]),
        "null_text": randn(1, TEXT_TOKENS, wan_cfg["text_dim"]),
        "image": randn(1, IMAGE_TOKENS, wan_cfg["image_dim"]),
    }
    if audio_cfg is not None:
        per_frame = (audio_cfg["layers"], audio_cfg["channels"])
        inputs["audio_first"] = randn(1, 1, audio_cfg["window"], *per_frame)
        inputs["audio_rest"] = randn(1, t - 1, audio_cfg["window_vf"], *per_frame)
    return inputs


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def param_count_base(model: TimingModel) -> int:
    """Parameters of the Wan transformer without the audio layers."""
    audio = sum(param_count(m) for m in model.audio_modules())
    proj = param_count(model.audio_proj) if model.audio_proj is not None else 0
    return param_count(model) - audio - proj


def forward_tflop(wan_cfg: dict[str, Any], audio_cfg: dict[str, int] | None, shapes: Shapes) -> float:
    """Matmul FLOPs of one forward pass (2 per multiply-add), for the achieved-TFLOP/s sanity column."""
    c = wan_cfg["num_attention_heads"] * wan_cfg["attention_head_dim"]
    s, ctx = shapes.tokens, TEXT_TOKENS + IMAGE_TOKENS
    per_block = (
        2 * s * c * c * 4  # self-attention q, k, v, o
        + 2 * 2 * s * s * c  # self-attention scores and values
        + 2 * s * c * c * 2  # cross-attention q, o
        + 2 * ctx * c * c * 2  # cross-attention k, v (text + image)
        + 2 * 2 * s * ctx * c  # cross-attention scores and values
        + 2 * s * c * wan_cfg["ffn_dim"] * 2  # feed-forward
    )
    if audio_cfg is not None:
        t = shapes.latent[0]
        a = audio_cfg["context_tokens"]
        per_block += (
            2 * s * c * c * 2  # audio q, proj
            + 2 * t * a * audio_cfg["output_dim"] * 2 * c  # audio kv
            + 2 * 2 * s * a * c  # audio scores and values (per latent frame)
            + 2 * s * shapes.frame_tokens * c  # reference map scores
            + 2 * s * shapes.frame_tokens * 3 * wan_cfg["num_attention_heads"]  # reference map reduction
        )
    return per_block * wan_cfg["num_layers"] / 1e12


# ---------------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    attention: str
    compile: bool
    cache: str
    status: str = "n/a"  # ok | n/a | error | oom
    note: str = ""
    ms_per_forward: float | None = None
    s_per_step: float | None = None
    passes: int = DEFAULT_PASSES
    peak_gb: float | None = None
    tflops: float | None = None
    cache_hit_rate: float | None = None
    times_ms: list[float] = field(default_factory=list)


class Bench:
    def __init__(self, model: TimingModel, inputs: dict[str, torch.Tensor], device: torch.device, args: Any):
        self.model, self.inputs, self.device, self.args = model, inputs, device, args
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gb(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / 1e9 if self.cuda else None

    def forward(self) -> torch.Tensor:
        return self.model(self.inputs, self.inputs["text"])

    def time_forwards(self, warmup: int) -> list[float]:
        with torch.inference_mode():
            for _ in range(warmup):
                self.forward()
            self.sync()
            times = []
            for _ in range(self.args.iters):
                start = time.perf_counter()
                self.forward()
                self.sync()
                times.append((time.perf_counter() - start) * 1e3)
        return times

    def run_steps(self, steps: int) -> tuple[list[float], int]:
        """Real denoising steps (3 passes, CFG combine, Euler update) on the first `steps` of the 40-step
        schedule, each pass in its own cache context. Returns step times (ms) and the number of forwards
        computed in full."""
        computed = 0

        def count(_module: nn.Module, _args: Any) -> None:
            nonlocal computed
            computed += 1

        # the last block's ffn only runs when the cache did not skip the tail of the network
        handle = self.model.transformer.blocks[-1].ffn.register_forward_pre_hook(count)
        sigmas = flow_sigmas(DEFAULT_STEPS, SAMPLE_SHIFT)
        latents = self.inputs["latents"].clone()
        noise_channels = self.model.transformer.config.out_channels
        inputs = dict(self.inputs, latents=latents)
        times = []
        try:
            with torch.inference_mode():
                for i in range(steps):
                    self.sync()
                    start = time.perf_counter()
                    inputs["timestep"] = torch.tensor([sigmas[i] * 1000.0], device=self.device)
                    passes = {}
                    for name, text, audio_scale in (
                        ("cond", inputs["text"], 1.0),
                        ("drop_text", inputs["null_text"], 1.0),
                        ("uncond", inputs["null_text"], 0.0),
                    ):
                        with self.model.transformer.cache_context(name):
                            passes[name] = self.model(inputs, text, audio_scale)
                    guided = (
                        passes["uncond"]
                        + TEXT_GUIDE * (passes["cond"] - passes["drop_text"])
                        + AUDIO_GUIDE * (passes["drop_text"] - passes["uncond"])
                    )
                    latents[:, :noise_channels] += (sigmas[i + 1] - sigmas[i]) * guided
                    self.sync()
                    times.append((time.perf_counter() - start) * 1e3)
        finally:
            handle.remove()
        return times, computed


def flow_sigmas(steps: int, shift: float) -> list[float]:
    """Flow-matching noise levels from 1 to 0 with MultiTalk's time shift."""
    raw = [1.0 - i / steps for i in range(steps + 1)]
    return [shift * s / (1.0 + (shift - 1.0) * s) for s in raw]


def backend_unavailable(backend: str, device: torch.device) -> str | None:
    from diffusers.models.attention_dispatch import attention_backend

    if backend != "native" and device.type != "cuda":
        return "needs a CUDA device"
    try:
        with attention_backend(backend):  # runs diffusers' own package/version checks
            pass
    except (RuntimeError, ValueError, ImportError) as exc:
        return str(exc).split(". ")[0]
    return None


def run_eager(bench: Bench, res: Result, backend: str) -> None:
    bench.model.set_backend(backend)
    bench.reset_peak()
    res.times_ms = bench.time_forwards(bench.args.warmup)
    res.ms_per_forward = statistics.median(res.times_ms)
    res.peak_gb = bench.peak_gb()


def run_cache(bench: Bench, res: Result, backend: str, threshold: float) -> None:
    from diffusers import FirstBlockCacheConfig

    transformer = bench.model.transformer
    bench.model.set_backend(backend)
    with torch.inference_mode():
        bench.forward()  # kernels warm before the cache starts counting
    bench.reset_peak()
    transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    try:
        times, computed = bench.run_steps(bench.args.cache_steps)
    finally:
        transformer.disable_cache()
    forwards = DEFAULT_PASSES * len(times)
    res.cache_hit_rate = 1.0 - computed / forwards
    res.peak_gb = bench.peak_gb()
    if threshold == math.inf:
        # the first step fills the cache; the rest are all hits: their forward is the cost of a hit
        hits = times[1:] or times
        res.times_ms = [t / DEFAULT_PASSES for t in hits]
        res.ms_per_forward = statistics.median(res.times_ms)
        res.note = f"every pass after step 1 a hit ({len(hits)} step{'s' * (len(hits) > 1)} timed)"
    else:
        res.times_ms = times
        res.s_per_step = statistics.mean(times) / 1e3
        res.ms_per_forward = statistics.mean(times) / DEFAULT_PASSES
        res.note = f"mean of {len(times)} steps incl. the first (always full); hit rate from random weights"


def run_compiled(bench: Bench, res: Result, backend: str) -> None:
    torch._dynamo.reset()
    bench.model.set_backend(backend)
    bench.model.transformer.compile_repeated_blocks(backend=bench.args.compile_backend)
    bench.reset_peak()
    start = time.perf_counter()
    with torch.inference_mode():
        bench.forward()  # compiles
    bench.sync()
    compile_s = time.perf_counter() - start
    res.times_ms = bench.time_forwards(max(bench.args.warmup, 1))
    res.ms_per_forward = statistics.median(res.times_ms)
    res.peak_gb = bench.peak_gb()
    res.note = f"first call {compile_s:.1f} s (compile, backend {bench.args.compile_backend})"


def run_variants(bench: Bench, names: list[str], tflop: float) -> list[Result]:
    results: dict[str, Result] = {}
    eager_ok: dict[str, float] = {}

    def attempt(res: Result, fn: Callable[[], None]) -> None:
        try:
            fn()
            res.status = "ok"
        except torch.cuda.OutOfMemoryError as exc:
            res.status, res.note = "oom", str(exc).split("\n")[0][:120]
        except Exception as exc:  # one failing variant must not lose the others' numbers
            res.status, res.note = "error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        finally:
            if bench.cuda:
                torch.cuda.empty_cache()
        if res.status == "ok" and res.ms_per_forward is not None:
            if res.s_per_step is None:
                res.s_per_step = res.passes * res.ms_per_forward / 1e3
            if res.cache == "none":  # a cached forward skips most of the FLOPs
                res.tflops = tflop / (res.ms_per_forward / 1e3)
        print(
            f"  {res.name:<14} {res.status:<5} {fmt(res.ms_per_forward, 1)} ms/forward  {res.note}",
            flush=True,
        )

    for name, backend in EAGER_BACKENDS.items():
        if name not in names:
            continue
        res = results[name] = Result(name, backend, False, "none")
        reason = backend_unavailable(backend, bench.device)
        if reason:
            res.note = reason
            print(f"  {name:<14} n/a   {reason}", flush=True)
            continue
        attempt(res, lambda res=res, backend=backend: run_eager(bench, res, backend))
        if res.status == "ok" and res.ms_per_forward is not None:
            eager_ok[name] = res.ms_per_forward
    best = min(eager_ok, key=lambda n: eager_ok[n]) if eager_ok else "sdpa"
    best_backend = EAGER_BACKENDS[best]

    for name, threshold in (("fbcache", bench.args.cache_threshold), ("fbcache-floor", math.inf)):
        if name in names:
            res = results[name] = Result(name, best_backend, False, f"FirstBlockCache({threshold})")
            attempt(res, lambda res=res, threshold=threshold: run_cache(bench, res, best_backend, threshold))

    if "sdpa+compile" in names:
        res = results["sdpa+compile"] = Result("sdpa+compile", "native", True, "none")
        attempt(res, lambda res=res: run_compiled(bench, res, "native"))
    if "best+compile" in names:
        res = results["best+compile"] = Result("best+compile", best_backend, True, "none")
        if best == "sdpa":
            res.note = "fastest eager backend is sdpa: see sdpa+compile"
            print(f"  {'best+compile':<14} n/a   {res.note}", flush=True)
        else:
            attempt(res, lambda res=res: run_compiled(bench, res, best_backend))
    return [results[n] for n in ALL_VARIANTS if n in results]


# ---------------------------------------------------------------------------------------------------------
# Cost
# ---------------------------------------------------------------------------------------------------------
def windows_for(frames_needed: int, window: int, motion: int) -> int:
    """Streaming windows to cover `frames_needed`: the first gives `window` frames, each later one
    `window - motion` new frames (it re-generates the last `motion` frames of its predecessor)."""
    return 1 + max(0, math.ceil((frames_needed - window) / (window - motion)))


def cost_rows(s_per_forward: float, args: Any, prices: dict[str, float]) -> list[dict[str, Any]]:
    frames_per_minute = 60 * args.fps
    chunk_frames = math.ceil(frames_per_minute / args.parallel_chunks) + args.chunk_overlap
    serial = windows_for(frames_per_minute, args.frames, args.motion_frames)
    per_chunk = windows_for(chunk_frames, args.frames, args.motion_frames)
    k = args.parallel_chunks
    modes = [
        ("default", DEFAULT_STEPS, DEFAULT_PASSES, 1, serial),
        *((f"turbo-{n}", n, TURBO_PASSES, 1, serial) for n in TURBO_STEPS),
        (f"parallel×{k} default", DEFAULT_STEPS, DEFAULT_PASSES, k, per_chunk),
        (f"parallel×{k} turbo-{TURBO_STEPS[0]}", TURBO_STEPS[0], TURBO_PASSES, k, per_chunk),
    ]
    rows = []
    for mode, steps, passes, chunks, windows_per_chunk in modes:
        per_window = steps * passes * s_per_forward
        gpu_s = chunks * windows_per_chunk * per_window
        rows.append(
            {
                "mode": mode,
                "steps": steps,
                "passes": passes,
                "chunks": chunks,
                "windows": chunks * windows_per_chunk,
                "windows_per_chunk": windows_per_chunk,
                "gpu_s_per_window": per_window,
                "gpu_s": gpu_s,
                "wall_s": windows_per_chunk * per_window,
                "usd": {gpu: gpu_s * price for gpu, price in prices.items()},
            }
        )
    return rows


def parse_prices(overrides: list[str]) -> dict[str, float]:
    prices = dict(PRICES_PER_SECOND)
    for item in overrides:
        name, _, usd = item.rpartition("=")
        prices[name or "custom"] = float(usd) / 3600.0
    return prices


# ---------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------
def fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def count(n: float) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, rule, *body])


def render(report: dict[str, Any]) -> str:
    cfg, results, cost = report["config"], report["variants"], report["cost"]
    out = [
        f"Wan2.1-I2V-14B{' + MultiTalk audio' if cfg['multitalk'] else ''} ({cfg['model']}), "
        f"{cfg['height']}×{cfg['width']} × {cfg['frames']} frames → latent {cfg['latent']} "
        f"= {cfg['tokens']:,} tokens; "
        f"{count(cfg['params_b'] * 1e9)} params; {cfg['device_name']}",
        "",
        table(
            [
                "variant",
                "attention",
                "compile",
                "cache",
                "ms/forward",
                "s/step (3 passes)",
                "peak GB",
                "TFLOP/s",
                "note",
            ],
            [
                [
                    r["name"],
                    r["attention"],
                    "yes" if r["compile"] else "no",
                    r["cache"]
                    if r["cache_hit_rate"] is None
                    else f"{r['cache']} hits {r['cache_hit_rate']:.0%}",
                    fmt(r["ms_per_forward"], 1),
                    fmt(r["s_per_step"], 2),
                    fmt(r["peak_gb"], 1),
                    fmt(r["tflops"], 0),
                    r["note"] if r["status"] in ("ok", "n/a") else f"{r['status']}: {r['note']}",
                ]
                for r in results
            ],
        ),
        "",
    ]
    if cost is None:
        out.append("No cost table: no variant produced a time.")
        return "\n".join(out)
    a = report["assumptions"]
    gpus = list(cost["prices_per_second"])
    out += [
        f"Cost per video minute ({a['fps']} fps = {a['frames_per_minute']} frames; "
        f"{a['frames']}-frame windows, "
        f"{a['motion_frames']} motion frames → {a['frames'] - a['motion_frames']} new per window), "
        f"from {cost['basis']['variant']} at {cost['basis']['s_per_forward'] * 1e3:,.1f} ms/forward "
        f"measured on {cfg['device_name']}:",
        "",
        table(
            ["mode", "steps×passes", "windows", "GPU-s/window", "GPU-s", "wall-s", *(f"$ {g}" for g in gpus)],
            [
                [
                    row["mode"],
                    f"{row['steps']}×{row['passes']}",
                    str(row["windows"])
                    if row["chunks"] == 1
                    else f"{row['chunks']}×{row['windows_per_chunk']}",
                    fmt(row["gpu_s_per_window"], 1),
                    fmt(row["gpu_s"], 0),
                    fmt(row["wall_s"], 0),
                    *(fmt(row["usd"][g], 2) for g in gpus),
                ]
                for row in cost["rows"]
            ],
        ),
        "",
        "$ = GPU-seconds × each GPU's list price per second, at the speed measured here (another GPU's",
        "speed differs: re-run there). Transformer passes only: VAE encode/decode, text/CLIP/wav2vec2",
        "encoders, model load, cold start and container CPU/memory are not counted.",
        f"parallel×K: the minute is cut into K chunks of {a['chunk_frames']} frames "
        f"({a['chunk_overlap']} frames overlap),",
        "rendered on K GPUs at once; each chunk restarts from the reference image, so the seams lose",
        "motion continuity.",
    ]
    if cfg["tiny"]:
        out += ["", "--tiny: toy dimensions; the numbers only exercise the code path."]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="torch device (default cuda)")
    p.add_argument("--height", type=int, help="pixels, multiple of 16 (default 480; --tiny 64)")
    p.add_argument("--width", type=int, help="pixels, multiple of 16 (default 832; --tiny 64)")
    p.add_argument("--frames", type=int, help="frames per window, 4n+1 (default 81; --tiny 9)")
    p.add_argument(
        "--motion-frames", type=int, help="frames carried into the next window (default 25; --tiny 5)"
    )
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--iters", type=int, default=5, help="timed forwards per variant (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed forwards before timing")
    p.add_argument(
        "--variants", default=",".join(ALL_VARIANTS), help="comma list of: " + ", ".join(ALL_VARIANTS)
    )
    p.add_argument("--cache-steps", type=int, default=4, help="denoising steps timed for the cache variants")
    p.add_argument("--cache-threshold", type=float, default=0.05, help="FirstBlockCache threshold")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend")
    p.add_argument("--parallel-chunks", type=int, default=4, help="chunks rendered at once in parallel mode")
    p.add_argument(
        "--chunk-overlap", type=int, default=0, help="extra frames per chunk (cross-fade) in parallel mode"
    )
    p.add_argument(
        "--price-per-hour", action="append", default=[], metavar="GPU=USD", help="add/override a price"
    )
    p.add_argument("--no-multitalk", action="store_true", help="time the plain Wan2.1-I2V transformer only")
    p.add_argument("--tiny", action="store_true", help="toy config for a CPU smoke run")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    tiny = {"height": 64, "width": 64, "frames": 9, "motion_frames": 5}
    full = {"height": 480, "width": 832, "frames": 81, "motion_frames": 25}
    for key, value in (tiny if args.tiny else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.frames % 4 != 1 or args.height % 16 or args.width % 16:
        p.error("--frames must be 4n+1 and --height/--width multiples of 16")
    if not 0 <= args.motion_frames < args.frames:
        p.error("--motion-frames must be below --frames")
    if args.iters < 1 or args.parallel_chunks < 1 or not 1 <= args.cache_steps <= DEFAULT_STEPS:
        p.error(f"--iters and --parallel-chunks must be ≥ 1, --cache-steps 1..{DEFAULT_STEPS}")
    unknown = set(args.variants.split(",")) - set(ALL_VARIANTS)
    if unknown:
        p.error(f"unknown variants: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import diffusers
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # "attention backends are experimental" on every switch
    warnings.filterwarnings("ignore", category=FutureWarning)
    device = torch.device(args.device)
    wan_cfg = TINY_WAN if args.tiny else WAN_I2V_14B
    audio_cfg = None if args.no_multitalk else (TINY_AUDIO if args.tiny else MULTITALK_AUDIO)
    shapes = Shapes(args.frames, args.height, args.width, tuple(wan_cfg["patch_size"]))
    prices = parse_prices(args.price_per_hour)

    start = time.perf_counter()
    model = build_model(wan_cfg, audio_cfg, shapes, device)
    inputs = make_inputs(wan_cfg, audio_cfg, shapes, device)
    build_s = time.perf_counter() - start
    audio_params = param_count(model) - param_count_base(model)
    device_name = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()})"
    )
    tflop = forward_tflop(wan_cfg, audio_cfg, shapes)
    print(
        f"built in {build_s:.1f} s: {count(param_count(model))} params ({count(audio_params)} audio), "
        f"{tflop:.4g} TFLOP/forward on {device_name}",
        flush=True,
    )

    results = run_variants(Bench(model, inputs, device, args), args.variants.split(","), tflop)

    timed = [r for r in results if r.status == "ok" and r.ms_per_forward is not None and r.cache == "none"]
    cost = None
    if timed:
        basis = min(timed, key=lambda r: r.ms_per_forward or math.inf)
        s_fwd = (basis.ms_per_forward or 0.0) / 1e3
        cost = {
            "basis": {"variant": basis.name, "s_per_forward": s_fwd},
            "prices_per_second": prices,
            "rows": cost_rows(s_fwd, args, prices),
        }
    frames_per_minute = 60 * args.fps
    report: dict[str, Any] = {
        "config": {
            "model": "tiny" if args.tiny else "Wan2.1-I2V-14B-480P",
            "multitalk": audio_cfg is not None,
            "tiny": args.tiny,
            "wan": {k: list(v) if isinstance(v, tuple) else v for k, v in wan_cfg.items()},
            "audio": audio_cfg,
            "height": args.height,
            "width": args.width,
            "frames": args.frames,
            "latent": list(shapes.latent),
            "tokens": shapes.tokens,
            "text_tokens": TEXT_TOKENS,
            "image_tokens": IMAGE_TOKENS,
            "params_b": param_count(model) / 1e9,
            "audio_params_b": audio_params / 1e9,
            "tflop_per_forward": tflop,
            "dtype": "bfloat16",
            "device": str(device),
            "device_name": device_name,
            "iters": args.iters,
            "warmup": args.warmup,
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "python": sys.version.split()[0],
        },
        "assumptions": {
            "passes_default": DEFAULT_PASSES,
            "passes_turbo": TURBO_PASSES,
            "steps_default": DEFAULT_STEPS,
            "steps_turbo": list(TURBO_STEPS),
            "fps": args.fps,
            "frames_per_minute": frames_per_minute,
            "frames": args.frames,
            "motion_frames": args.motion_frames,
            "windows_per_minute": windows_for(frames_per_minute, args.frames, args.motion_frames),
            "parallel_chunks": args.parallel_chunks,
            "chunk_overlap": args.chunk_overlap,
            "chunk_frames": math.ceil(frames_per_minute / args.parallel_chunks) + args.chunk_overlap,
        },
        "variants": [asdict(r) for r in results],
        "cost": cost,
    }
    print()
    print(render(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"\nwrote {args.json}")
    # an optional backend failing is a row in the table; no baseline at all is a failed run
    by_name = {r.name: r for r in results}
    baseline_failed = "sdpa" in by_name and by_name["sdpa"].status != "ok"
    return 1 if baseline_failed or cost is None else 0


if __name__ == "__main__":
    sys.exit(main())
