"""Offline GPU smoke kit for the talking-avatar engines: MultiTalk and InfiniteTalk on Wan2.1-I2V-14B.

Proves, on one GPU with no internet and no weights, that each engine's REAL code path runs at real
architecture size with random weights: our AvatarEngine (talkstack/engines/gpu/avatar.py) builds the
upstream `wan.MultiTalkPipeline` / `wan.InfiniteTalkPipeline` from a checkpoint folder laid out as
talkstack/engines/gpu/weights.py `paths_for` says, embeds the speech with wav2vec2, calls upstream's
`generate()` / `generate_infinitetalk()` (2 sampling steps), checks the frame count and encodes the MP4.

    python bench/gpu/avatar_smoke.py --multitalk-code /opt/MultiTalk --infinitetalk-code /opt/InfiniteTalk \
        --json out/avatar_smoke.json                       # full size, one CUDA GPU (H100 80 GB)
    python bench/gpu/avatar_smoke.py --tiny --multitalk-code ... --infinitetalk-code ...   # CPU, ~1 min

Rows per engine: `stream` (a 6 s clip: more than one 81-frame window, the streaming path),
`teacache` (TeaCache on, one window), `turbo` (the lightx2v LoRA merged at load: 2 passes a step).
Then speed rows on the DiT alone, with the inputs of a real window: the attention upstream picked,
SDPA, cuDNN attention, torch.compile, FP8 (torchao); n/a with the reason where they cannot run.

The upstream code is not pip-installable and is never committed: it is read from the two checkouts
given on the command line and copied to a temporary folder, where the one fix the Modal image also
makes is applied (`from inspect import ArgSpec` deleted from wan/multitalk.py: gone in Python 3.11).
Everything else the kit changes, it changes in memory for this process only, and prints:
  - modules that cannot be installed here are replaced by stand-ins only when missing (`SHIMS`);
  - weights: `--weights files` writes random-weight files in the real layout and upstream's loaders
    read them unchanged (the --tiny default); `--weights random` (the full-size default: ~90 GB of
    files would not fit the budget) hands upstream's loaders random tensors of the real shapes at the
    one boundary where a checkpoint is read, and builds the DiT once on the GPU in bf16 for all rows;
  - --tiny: small dims (bench/gpu/configs/multitalk-tiny.json), 64x64 frames, float32, and the CUDA
    device upstream hard-codes mapped to the CPU; frame counts, windows and steps stay real.
See bench/gpu/README.md ("## avatar_smoke.py").
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.machinery
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import types
import warnings
import wave
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for _path in (str(REPO), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from wan_step import fmt, parse_prices, table, windows_for  # noqa: E402

from talkstack.settings import environ  # noqa: E402

CONFIGS = HERE / "configs"
ENGINES = ("multitalk", "infinitetalk")
CODE_ENV = {"multitalk": "MULTITALK_CODE_DIR", "infinitetalk": "INFINITETALK_CODE_DIR"}
PIPELINE_CLASS = {"multitalk": "MultiTalkPipeline", "infinitetalk": "InfiniteTalkPipeline"}
FPS = 25
WINDOW = 81
MOTION = {"multitalk": 25, "infinitetalk": 9}
"""Motion frames per streaming window: generate_multitalk.py / generate_infinitetalk.py defaults,
the same numbers as talkstack/engines/gpu/avatar_prep.py MOTION_FRAMES."""
MINUTE_FRAMES = 60 * FPS


def production(model: str, *, turbo: bool) -> tuple[int, int]:
    """(sampling steps, passes per step) the engine uses by default, without or with turbo."""
    from talkstack.contract.request import AvatarOptions
    from talkstack.engines.gpu import avatar_prep as prep

    settings = prep.generation_settings(model, AvatarOptions(model=model, turbo=turbo), 10.0)
    return settings.sampling_steps, settings.passes_per_step()


def load_config(name: str) -> dict[str, Any]:
    return json.loads((CONFIGS / name).read_text())


# =================================================================================================
# Frame arithmetic of the upstream loops (what generate() returns for an embedding of `rows` rows)
# =================================================================================================


def upstream_frames(model: str, rows: int, *, max_frames: int, frame_num: int = WINDOW) -> tuple[int, int]:
    """(frames returned, windows run) by upstream generate for an audio embedding of `rows` rows.

    Mirrors the loop of wan/multitalk.py at the pinned commits: the first window yields frame_num
    frames, each later one frame_num - motion; when the next window's end reaches the embedding,
    the embedding is extended by `end - rows + 3` mirrored rows and one last window runs. MultiTalk
    then cuts that extension off the video (`[:-miss_length]`, 3 rows more than it added frames for);
    InfiniteTalk cuts the video to the embedding's original length."""
    motion = MOTION[model]
    length, start, windows, total, miss = rows, 0, 0, 0, 0
    first, last = True, False
    while True:
        windows += 1
        total += frame_num if first else frame_num - motion
        if last:
            break
        first = False
        start += frame_num - motion
        end = start + frame_num
        if end >= min(max_frames, length):
            last = True
            miss = end - length + 3 if end >= length else 0
            length += miss
        if max_frames <= frame_num:
            break
    total = min(total, max_frames)
    if model == "multitalk":
        if max_frames > frame_num and miss > 0:
            total -= miss
    else:
        total = min(total, rows)
    return total, windows


# =================================================================================================
# Stand-ins for modules that cannot be installed here (used only when the import fails)
# =================================================================================================


def _module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attrs)
    return module


def _installed(name: str) -> bool:
    if name in sys.modules:
        return getattr(sys.modules[name], "__kit_shim__", None) is None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _sdpa_bmhk(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_bias: Any = None, op: Any = None
) -> Any:
    """xformers.ops.memory_efficient_attention's contract ([batch, tokens, heads, dim]) on SDPA."""
    if attn_bias is not None:
        raise NotImplementedError(
            "kit xformers stand-in: attn_bias (sequence parallel only) is not supported"
        )
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    )
    return out.transpose(1, 2)


class _Unavailable:
    def __init__(self, what: str) -> None:
        self.what = what

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{self.what} is a smoke-kit stand-in: the real package is not installed")

    def __getattr__(self, name: str) -> Any:
        return _Unavailable(f"{self.what}.{name}")


def _torchvision_shim() -> dict[str, types.ModuleType]:
    """The three torchvision pieces the upstream generate path calls, on plain torch. PyPI's
    torchvision is built against CUDA torch and does not load with a CPU-only torch, and no CPU wheel
    is on PyPI. Semantics follow torchvision's tensor path: center_crop rounds the offsets
    (int(round((h - th) / 2))), Normalize is (x - mean) / std per channel."""

    def center_crop(img: torch.Tensor, output_size: Any) -> torch.Tensor:
        th, tw = (output_size, output_size) if isinstance(output_size, int) else output_size
        h, w = img.shape[-2:]
        if th > h or tw > w:
            raise NotImplementedError("kit torchvision stand-in: center_crop with padding")
        top, left = round((h - th) / 2.0), round((w - tw) / 2.0)
        return img[..., top : top + th, left : left + tw]

    class Normalize:
        def __init__(self, mean: Any, std: Any) -> None:
            self.mean, self.std = mean, std

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
            std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
            return (x - mean) / std

    class Compose:
        def __init__(self, transforms: list[Any]) -> None:
            self.transforms = transforms

    class _Placeholder:  # built by CLIPModel, never called on the generate path
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("kit torchvision stand-in: only Normalize and center_crop are implemented")

    interpolation = types.SimpleNamespace(BICUBIC="bicubic", BILINEAR="bilinear", NEAREST="nearest")
    functional = _module("torchvision.transforms.functional", center_crop=center_crop)
    transforms = _module(
        "torchvision.transforms",
        functional=functional,
        Normalize=Normalize,
        Compose=Compose,
        Resize=_Placeholder,
        ToTensor=_Placeholder,
        InterpolationMode=interpolation,
    )
    io = _module("torchvision.io", read_video=_Unavailable("torchvision.io.read_video"))
    utils = _module("torchvision.utils", make_grid=_Unavailable("torchvision.utils.make_grid"))
    root = _module("torchvision", transforms=transforms, io=io, utils=utils, __version__="0.0+kit")
    return {
        "torchvision": root,
        "torchvision.transforms": transforms,
        "torchvision.transforms.functional": functional,
        "torchvision.io": io,
        "torchvision.utils": utils,
    }


def _shim_modules(name: str) -> dict[str, types.ModuleType]:
    if name == "xformers":
        fmha = types.SimpleNamespace(
            attn_bias=types.SimpleNamespace(BlockDiagonalMask=_Unavailable("BlockDiagonalMask"))
        )
        ops = _module("xformers.ops", memory_efficient_attention=_sdpa_bmhk, fmha=fmha)
        return {"xformers": _module("xformers", ops=ops), "xformers.ops": ops}
    if name == "xfuser":
        dist = _module(
            "xfuser.core.distributed",
            get_sequence_parallel_rank=lambda: 0,
            get_sequence_parallel_world_size=lambda: 1,
            get_sp_group=_Unavailable("xfuser get_sp_group"),
        )
        core = _module("xfuser.core", distributed=dist)
        return {"xfuser": _module("xfuser", core=core), "xfuser.core": core, "xfuser.core.distributed": dist}
    if name == "decord":
        return {
            "decord": _module("decord", VideoReader=_Unavailable("decord.VideoReader"), cpu=lambda *a: None)
        }
    if name == "librosa":
        return {"librosa": _module("librosa", load=_Unavailable("librosa.load"))}
    if name == "torchvision":
        return _torchvision_shim()
    raise KeyError(name)


SHIMS: dict[str, str] = {
    "xformers": "memory_efficient_attention on torch SDPA (no CPU build; GPU wheels are tied to one torch); "
    "called by the audio cross-attention in every block (wan/modules/attention.py)",
    "xfuser": "sequence-parallel getters (rank 0 of 1): imported by wan/modules/attention.py and "
    "wan/utils/multitalk_utils.py, called only with use_usp",
    "decord": "imported by InfiniteTalk's wan/utils/utils.py; VideoReader is used only for a "
    "video reference (the engine sends a photo)",
    "librosa": "imported by InfiniteTalk's wan/utils/utils.py; used only by split_wav_librosa "
    "(not on the generate path)",
    "torchvision": "center_crop and Normalize on plain torch (PyPI's torchvision needs CUDA torch)",
}


def install_shims() -> list[str]:
    """Stand-ins for the SHIMS that are not installed; returns their names (reported)."""
    # transformers and diffusers decide once whether these packages exist; they must decide before the
    # stand-ins appear, or they would import parts of the real packages the stand-ins lack.
    import diffusers.utils.import_utils as diffusers_imports
    import transformers.utils.import_utils as transformers_imports

    for library in (transformers_imports, diffusers_imports):
        for name in SHIMS:
            check = getattr(library, f"is_{name}_available", None)
            if callable(check):
                check()
    used = []
    for name in SHIMS:
        if _installed(name):
            continue
        for module_name, module in _shim_modules(name).items():
            module.__kit_shim__ = True  # type: ignore[attr-defined]
            sys.modules[module_name] = module
        used.append(name)
    return used


# =================================================================================================
# Attention: upstream's flash_attention has no fallback of its own
# =================================================================================================


def sdpa_flash_attention(backend: str = "auto") -> Callable[..., torch.Tensor]:
    """wan.modules.attention.flash_attention's contract ([B, L, heads, dim], k_lens as a key padding
    mask) on torch SDPA. Upstream's `attention()` has an SDPA branch, but the DiT blocks call
    `flash_attention` directly, which asserts a CUDA tensor and flash-attn 2 or 3 installed."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {"auto": None, "cudnn": [SDPBackend.CUDNN_ATTENTION], "math": [SDPBackend.MATH]}[backend]

    def flash_attention(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        q_lens: Any = None,
        k_lens: Any = None,
        dropout_p: float = 0.0,
        softmax_scale: float | None = None,
        q_scale: float | None = None,
        causal: bool = False,
        window_size: tuple[int, int] = (-1, -1),
        deterministic: bool = False,
        dtype: torch.dtype = torch.bfloat16,
        version: Any = None,
    ) -> torch.Tensor:
        if tuple(window_size) != (-1, -1):
            raise NotImplementedError("kit SDPA attention: sliding windows")
        out_dtype = q.dtype
        if q.is_cuda and q.dtype not in (torch.float16, torch.bfloat16):
            q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)  # as upstream: flash kernels take half types
        if q_scale is not None:
            q = q * q_scale
        mask = None
        if k_lens is not None and int(k_lens.min()) < k.size(1):
            keys = torch.arange(k.size(1), device=k.device)[None, :] < k_lens.to(k.device)[:, None]
            mask = keys[:, None, None, :]
        context = sdpa_kernel(backends) if backends else contextlib.nullcontext()
        with context:
            out = torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2),
                k.transpose(1, 2).to(q.dtype),
                v.transpose(1, 2).to(q.dtype),
                attn_mask=mask,
                dropout_p=dropout_p,
                is_causal=causal,
                scale=softmax_scale,
            )
        return out.transpose(1, 2).type(out_dtype)

    return flash_attention


def upstream_attention_name(wan: Any) -> str:
    model_module = sys.modules[f"{wan.__name__}.modules.multitalk_model"]
    attention_module = sys.modules[f"{wan.__name__}.modules.attention"]
    if getattr(model_module, "USE_SAGEATTN", False):
        return "sageattention"
    if getattr(attention_module, "FLASH_ATTN_3_AVAILABLE", False):
        return "flash-attn 3"
    if getattr(attention_module, "FLASH_ATTN_2_AVAILABLE", False):
        return "flash-attn 2"
    return "none"


def set_attention(wan: Any, backend: str, original: Callable[..., Any] | None = None) -> str:
    """Point every upstream module that imported `flash_attention` (the DiT blocks, CLIP's ViT) at
    upstream's own (`upstream`) or at SDPA."""
    if backend == "upstream":
        if original is None or upstream_attention_name(wan) == "none":
            raise RuntimeError("no flash-attn / sageattention installed")
        replacement, name = original, upstream_attention_name(wan)
    else:
        replacement, name = sdpa_flash_attention(backend), f"sdpa ({backend})"
    for module_name, module in list(sys.modules.items()):
        upstream_module = module_name.startswith("wan.") and module_name != "wan.modules.attention"
        if upstream_module and callable(getattr(module, "flash_attention", None)):
            module.flash_attention = replacement
    return name


# =================================================================================================
# CPU (--tiny): upstream hard-codes cuda:0 and relies on CUDA autocast
# =================================================================================================


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.device) and value.type == "cuda":
        return torch.device("cpu")
    if isinstance(value, str) and (value == "cuda" or value.startswith("cuda:")):
        return "cpu"
    return value


class CudaOnCpu(torch.overrides.TorchFunctionMode):
    """Maps every CUDA device argument to the CPU (MultiTalkPipeline sets `torch.device('cuda:0')`)."""

    def __torch_function__(self, func: Any, types_: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.cuda:
            return args[0]
        if "device" in kwargs:
            kwargs["device"] = _to_cpu(kwargs["device"])
        if func in (torch.Tensor.to, torch.Tensor.new_empty, torch.Tensor.new_zeros):
            args = tuple(_to_cpu(a) for a in args)
        return func(*args, **kwargs)


@contextlib.contextmanager
def cuda_on_cpu() -> Iterator[list[str]]:
    """The CPU-only patches: current_device (a default argument evaluated when wan/modules/t5.py is
    imported), ipc_collect (called by torch_gc after every pass), and the device mapping."""
    saved = {name: getattr(torch.cuda, name) for name in ("current_device", "ipc_collect", "synchronize")}
    torch.cuda.current_device = lambda: 0  # type: ignore[assignment]
    torch.cuda.ipc_collect = lambda: None  # type: ignore[assignment]
    torch.cuda.synchronize = lambda *a, **k: None  # type: ignore[assignment]
    try:
        with CudaOnCpu():
            yield ["torch.cuda.current_device → 0", "torch.cuda.ipc_collect → no-op", "cuda:* devices → cpu"]
    finally:
        for name, value in saved.items():
            setattr(torch.cuda, name, value)


# =================================================================================================
# Upstream code: a patched temporary copy, imported one engine at a time
# =================================================================================================


def prepare_code(model: str, checkout: Path, workdir: Path) -> tuple[Path, list[str]]:
    """Copy `wan/` and `src/` of a checkout (the package upstream's code imports) and apply the fix
    the Modal image applies (modal_workers/avatar.py `_checkout`)."""
    if not (checkout / "wan").is_dir() or not (checkout / "src").is_dir():
        raise SystemExit(
            f"{model}: {checkout} is not a checkout of the upstream repository (no wan/ and src/)"
        )
    dest = workdir / f"code-{model}"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("wan", "src"):
        shutil.copytree(checkout / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    fixes = []
    target = dest / "wan" / "multitalk.py"
    lines = target.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() != "from inspect import ArgSpec"]
    if len(kept) != len(lines):
        target.write_text("".join(kept))
        fixes.append("wan/multitalk.py: deleted `from inspect import ArgSpec` (as the Modal image's sed)")
    return dest, fixes


def forget_upstream() -> None:
    """Both repositories name their packages `wan` and `src`: drop one before importing the other."""
    for name in list(sys.modules):
        if name in ("wan", "src") or name.startswith(("wan.", "src.")):
            del sys.modules[name]
    for code in _CODE_PATHS:
        while code in sys.path:
            sys.path.remove(code)


_CODE_PATHS: set[str] = set()
"""Upstream checkouts this process put on sys.path."""


def import_upstream(model: str, code: Path) -> Any:
    forget_upstream()
    environ.export({CODE_ENV[model]: str(code)})  # read by talkstack.settings (caches reset)
    _CODE_PATHS.add(str(code))
    sys.path.insert(0, str(code))
    return importlib.import_module("wan")


# =================================================================================================
# Sizes: the real configs (bench/gpu/configs) or the tiny ones, and the in-memory patches for --tiny
# =================================================================================================


@dataclass
class Sizes:
    tiny: bool
    dit: dict[str, Any]
    t5: dict[str, Any] = field(default_factory=dict)
    """Overrides of upstream's umt5_xxl() (empty: the real size)."""
    clip: dict[str, Any] = field(default_factory=dict)
    vae: dict[str, Any] = field(default_factory=dict)
    wav2vec2: dict[str, Any] = field(default_factory=dict)
    preprocessor: dict[str, Any] = field(default_factory=dict)
    lora_rank: int = 64
    frame: tuple[int, int] | None = None

    @classmethod
    def load(cls, tiny: bool) -> Sizes:
        wav2vec2 = load_config("multitalk-wav2vec2.json")
        lora = load_config("multitalk-lora-lightx2v.json")
        if not tiny:
            return cls(
                False,
                load_config("wan2.1-i2v-14b.json")["config"],
                wav2vec2=wav2vec2["config"],
                preprocessor=wav2vec2["preprocessor"],
                lora_rank=lora["rank"],
            )
        t = load_config("multitalk-tiny.json")
        return cls(
            True,
            t["dit"],
            t["t5"],
            t["clip"],
            t["vae"],
            {**wav2vec2["config"], **t["wav2vec2"]},
            wav2vec2["preprocessor"],
            t["lora_rank"],
            tuple(t["frame"]),
        )


def patch_sizes(wan: Any, sizes: Sizes, cpu: bool) -> list[str]:
    """--tiny: upstream's hard-coded T5 / CLIP / VAE builders get the tiny dimensions, the size
    buckets a tiny frame; on CPU, every dtype float32 (upstream mixes bf16/fp16/fp32 under CUDA
    autocast, which does nothing on a CPU)."""
    notes = []
    t5, clip, vae = (sys.modules[f"wan.modules.{m}"] for m in ("t5", "clip", "vae"))
    if sizes.t5:
        real_t5 = t5.umt5_xxl
        t5.umt5_xxl = lambda **kw: real_t5(**{**kw, **sizes.t5})
        notes.append(f"wan.modules.t5.umt5_xxl ← {sizes.t5}")
    if sizes.clip:
        real_clip = clip.clip_xlm_roberta_vit_h_14
        clip.clip_xlm_roberta_vit_h_14 = lambda **kw: real_clip(**{**kw, **sizes.clip})
        notes.append(f"wan.modules.clip.clip_xlm_roberta_vit_h_14 ← {sizes.clip}")
    if sizes.vae:
        real_vae = vae._video_vae
        vae._video_vae = lambda **kw: real_vae(**{**kw, **sizes.vae})
        notes.append(f"wan.modules.vae._video_vae ← {sizes.vae}")
    if sizes.frame:
        buckets = sys.modules["wan.utils.multitalk_utils"]
        for name in ("ASPECT_RATIO_627", "ASPECT_RATIO_960"):
            table_ = getattr(buckets, name)
            table_.clear()
            table_["1.00"] = (list(sizes.frame), 1)
        notes.append(f"size buckets → {sizes.frame[0]}x{sizes.frame[1]}")
    if cpu:
        for config in wan.configs.WAN_CONFIGS.values():
            config.param_dtype = config.t5_dtype = config.clip_dtype = torch.float32
        notes.append("WAN_CONFIGS dtypes → float32 (CPU)")
    return notes


# =================================================================================================
# Stand-in tokenizers (no Hub access): what upstream's HuggingfaceTokenizer loads from the checkpoint
# =================================================================================================

TOKENIZER_NOTE = (
    "offline stand-in tokenizers (google/umt5-xxl, xlm-roberta-large): word-level, 512 ids, the real "
    "special tokens; real ones are SentencePiece (256,384 / 250,002 pieces), so prompts split into other "
    "ids and lengths. The DiT pads text to 512 tokens either way, so no timing changes"
)


def write_tokenizer(folder: Path, specials: list[str], template: str, vocab_size: int = 512) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = [*specials, *(f"w{i}" for i in range(vocab_size - len(specials)))]
    vocab = {word: i for i, word in enumerate(words)}
    unk = "<unk>"
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    special_ids = [(s, vocab[s]) for s in specials if s in template]
    core.post_processor = processors.TemplateProcessing(single=template, special_tokens=special_ids)
    named = {"pad_token": "<pad>", "unk_token": unk}
    if "</s>" in specials:
        named["eos_token"] = "</s>"
    if "<s>" in specials:
        named["bos_token"] = "<s>"
    PreTrainedTokenizerFast(tokenizer_object=core, **named).save_pretrained(folder)


# =================================================================================================
# Random weights laid out as the real checkpoint folders (paths_for)
# =================================================================================================

AUDIO_KEYS = ("audio_proj.", ".audio_cross_attn.", ".norm_x.")
"""Parameters that live in multitalk.safetensors / infinitetalk.safetensors, not in Wan's shards."""
SHARDS = [f"diffusion_pytorch_model-{i:05d}-of-00007.safetensors" for i in range(1, 8)]
"""The base repository's 7 shard names (InfiniteTalk's loader lists exactly these)."""


def _is_audio(key: str) -> bool:
    return key.startswith("audio_proj.") or any(part in key for part in AUDIO_KEYS[1:])


def lora_tensors(dit: Any, rank: int, dtype: torch.dtype, spec: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Random LoRA weights in lightx2v's key format (bench/gpu/configs/multitalk-lora-lightx2v.json)."""
    out: dict[str, torch.Tensor] = {}
    params = dict(dit.named_parameters())
    for i in range(len(dit.blocks)):
        for name in spec["pairs"]:
            weight = params[f"blocks.{i}.{name}.weight"]
            rows, cols = weight.shape
            key = f"diffusion_model.blocks.{i}.{name}"
            out[f"{key}.lora_down.weight"] = torch.randn(rank, cols, dtype=dtype) * 0.01
            out[f"{key}.lora_up.weight"] = torch.randn(rows, rank, dtype=dtype) * 0.01
            out[f"{key}.diff_b"] = torch.randn(rows, dtype=dtype) * 0.01
        for name in spec["diff"]:
            weight = params[f"blocks.{i}.{name}.weight"]
            out[f"diffusion_model.blocks.{i}.{name}.diff"] = torch.randn(weight.shape, dtype=dtype) * 0.01
    return out


def write_wav2vec2(folder: Path, sizes: Sizes) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(**{k: v for k, v in sizes.wav2vec2.items() if k != "model_type"})
    Wav2Vec2Model(config).save_pretrained(folder, safe_serialization=True)
    Wav2Vec2FeatureExtractor(**sizes.preprocessor).save_pretrained(folder)


PLACEHOLDER = b"avatar-smoke: random weights are made where this is read (--weights random)\n"
"""What stands in a big checkpoint file with --weights random, so the folder verifies as a download."""
FAKE_LOCK = "0" * 40
"""The commit recorded for an unpinned repository (weights.py locks what it fetched)."""


def is_placeholder(path: Any) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(PLACEHOLDER) + 1) == PLACEHOLDER
    except (OSError, TypeError):
        return False


def register_downloads(root: Path, log: Callable[[str], None]) -> None:
    """What `modal run -m modal_workers.weights` leaves besides the files, made by weights.py's own
    code: a manifest per repository (at its pin, or a lock for an unpinned one) and MultiTalk's
    composed folder (`run_setup`). The engine checks them before loading (`verify_model`)."""
    from talkstack.engines.gpu import weights

    models = list(ENGINES)
    for spec in weights.specs_for(models):
        folder = weights.local_dir(root, spec)
        if spec.revision is None:
            weights._write_lock(spec, folder, FAKE_LOCK)
        manifest = weights._build_manifest(spec, folder, spec.revision or FAKE_LOCK)
        weights._write_json_atomically(folder / weights.MANIFEST, manifest)
    for step in weights.setups_for(models):
        weights.run_setup(step, root, log=log)


def write_checkpoints(wan: Any, root: Path, sizes: Sizes, *, files: bool) -> list[str]:
    """The folders paths_for() names for both models. files=True: every checkpoint file with random
    weights (upstream's loaders read them unchanged). files=False: only the small files (configs,
    index, tokenizers, wav2vec2, LoRA); the big checkpoints are made at load time (RandomWeights)."""
    from safetensors.torch import save_file

    from talkstack.engines.gpu.weights import paths_for

    paths = {**paths_for("infinitetalk", root), **paths_for("multitalk", root)}
    base = paths["base"]
    for key in ("base", "multitalk", "wav2vec"):
        paths[key].mkdir(parents=True, exist_ok=True)
    (base / "config.json").write_text(json.dumps(sizes.dit, indent=1))
    write_tokenizer(base / "google" / "umt5-xxl", ["<pad>", "</s>", "<unk>"], "$A </s>")
    write_tokenizer(base / "xlm-roberta-large", ["<s>", "<pad>", "</s>", "<unk>"], "<s> $A </s>")
    write_wav2vec2(paths["wav2vec"], sizes)
    torch.manual_seed(0)
    model_module = sys.modules["wan.modules.multitalk_model"]
    dtype = torch.bfloat16 if not sizes.tiny else torch.float32
    # The DiT: built on the meta device to learn the keys (and, for files, on the CPU for values).
    device = "cpu" if files else "meta"
    with torch.device(device):
        dit = model_module.WanModel(weight_init=files, **sizes.dit)
    keys = list(dit.state_dict())
    base_keys = [k for k in keys if not _is_audio(k)]
    audio_keys = [k for k in keys if _is_audio(k)]
    shard_of = {k: SHARDS[i * len(SHARDS) // len(base_keys)] for i, k in enumerate(base_keys)}
    index = {"metadata": {"total_size": 0}, "weight_map": dict(shard_of)}
    (base / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    mt_index = {
        "metadata": {"total_size": 0},
        "weight_map": {**shard_of, **dict.fromkeys(audio_keys, "multitalk.safetensors")},
    }
    (paths["multitalk"] / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps(mt_index, indent=1)
    )
    kind = "random-weight files" if files else "small files; checkpoints made at load"
    notes = [f"weights under {root} ({kind})"]
    if files:
        state = {k: v.contiguous() for k, v in dit.state_dict().items()}
        for shard in SHARDS:
            save_file({k: state[k] for k, s in shard_of.items() if s == shard}, str(base / shard))
        audio = {k: state[k] for k in audio_keys}
        save_file(audio, str(paths["multitalk"] / "multitalk.safetensors"))
        for flavour in ("single", "multi"):
            (paths["infinitetalk"] / flavour).mkdir(parents=True, exist_ok=True)
            save_file(audio, str(paths["infinitetalk"] / flavour / "infinitetalk.safetensors"))
        t5 = sys.modules["wan.modules.t5"].umt5_xxl(encoder_only=True, return_tokenizer=False, device="cpu")
        torch.save(t5.state_dict(), base / "models_t5_umt5-xxl-enc-bf16.pth")
        clip = sys.modules["wan.modules.clip"].clip_xlm_roberta_vit_h_14(device="cpu")
        torch.save(clip.state_dict(), base / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth")
        vae = sys.modules["wan.modules.vae"].WanVAE_(
            **{**load_config("wan2.1-vae.json")["config"], **sizes.vae}
        )
        torch.save(vae.state_dict(), base / "Wan2.1_VAE.pth")
    else:  # big files as placeholders: the folders verify as downloads, RandomWeights reads them
        for path in [
            *(base / shard for shard in SHARDS),
            *(base / name for name in RandomWeights.PTH),
            paths["multitalk"] / "multitalk.safetensors",
            *(paths["infinitetalk"] / f / "infinitetalk.safetensors" for f in ("single", "multi")),
        ]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(PLACEHOLDER)
    spec = load_config("multitalk-lora-lightx2v.json")
    paths["lora"].parent.mkdir(parents=True, exist_ok=True)
    with torch.device("cpu"):  # the DiT may be on the meta device: only its shapes are read
        save_file(lora_tensors(dit, sizes.lora_rank, dtype, spec), str(paths["lora"]))
    register_downloads(root, log=lambda line: None)
    notes.append("manifests and MultiTalk's composed folder written by weights.py (verify_model passes)")
    return notes


# =================================================================================================
# --weights random: random tensors of the real shapes where upstream reads a checkpoint
# =================================================================================================


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    saved = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


class RandomWeights:
    """The load boundary for full-size runs (writing ~90 GB of random checkpoints would take longer
    than the whole run, and the 64 GB disk of a GPU box cannot hold them):
      - torch.load of the T5 / CLIP / VAE checkpoints returns random tensors with the keys and shapes
        of upstream's own module (built on the meta device), made on the GPU;
      - the DiT (MultiTalk: WanModel.from_pretrained; InfiniteTalk: WanModel(...) + 8 load_file +
        load_state_dict) is built ONCE, directly on the GPU in the pipeline's dtype, with upstream's
        init; later pipelines (turbo, the other engine) get the same tensors, InfiniteTalk through its
        own WanModel class (meta build + load_state_dict(assign=True)), so one 14B model serves all rows;
      - the T5, CLIP and VAE objects are built once (through upstream's constructors) and reused.
    The LoRA merge then runs on the shared DiT (turbo rows come last for each engine)."""

    PTH: ClassVar[dict[str, str]] = {
        "models_t5_umt5-xxl-enc-bf16.pth": "t5",
        "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth": "clip",
        "Wan2.1_VAE.pth": "vae",
    }

    def __init__(self, sizes: Sizes, device: torch.device) -> None:
        self.sizes, self.device = sizes, device
        self.dit: Any = None
        self.components: dict[str, Any] = {}
        self.real_load = torch.load

    # -- checkpoints read with torch.load ----------------------------------------------------------
    def _meta_module(self, kind: str) -> Any:
        if kind == "t5":  # bf16, as the checkpoint (models_t5_umt5-xxl-enc-bf16.pth): half the GPU scratch
            t5 = sys.modules["wan.modules.t5"]
            return t5.umt5_xxl(encoder_only=True, return_tokenizer=False, dtype=torch.bfloat16, device="meta")
        if kind == "clip":
            return sys.modules["wan.modules.clip"].clip_xlm_roberta_vit_h_14(device="meta")
        with torch.device("meta"):
            return sys.modules["wan.modules.vae"].WanVAE_(
                **{**load_config("wan2.1-vae.json")["config"], **self.sizes.vae}
            )

    def load(self, path: Any, *args: Any, **kwargs: Any) -> Any:
        kind = self.PTH.get(Path(str(path)).name) if isinstance(path, (str, os.PathLike)) else None
        if kind is None or not is_placeholder(path):
            return self.real_load(path, *args, **kwargs)
        state = {}
        generator = torch.Generator(device=self.device).manual_seed(0)
        for key, tensor in self._meta_module(kind).state_dict().items():
            dtype = tensor.dtype
            if tensor.is_floating_point():
                value = torch.randn(tensor.shape, dtype=dtype, device=self.device, generator=generator) * 0.02
            else:
                value = torch.zeros(tensor.shape, dtype=dtype, device=self.device)
            state[key] = value
        return state

    # -- the DiT -------------------------------------------------------------------------------
    def dit_for(self, cls: Any, config: dict[str, Any], dtype: torch.dtype) -> Any:
        config = {k: v for k, v in config.items() if not k.startswith("_") and k != "weight_init"}
        if self.dit is None:
            # upstream's init (weight_init=True): InfiniteTalk asks for none, its shards would overwrite
            with torch.device(self.device), default_dtype(dtype):
                self.dit = cls(weight_init=True, **config)
            return self.dit
        if type(self.dit) is cls:
            return self.dit
        with torch.device("meta"):
            other = cls(weight_init=False, **config)
        other.load_state_dict(self.dit.state_dict(), assign=True)
        other.init_freqs()  # computed on the meta device above; a plain attribute, not a buffer
        self.dit = other
        return other

    def patch(self, model: str, wan: Any) -> list[str]:
        pipeline_module = sys.modules["wan.multitalk"]
        model_module = sys.modules["wan.modules.multitalk_model"]
        config_for = wan.configs.WAN_CONFIGS[f"{model}-14B"]
        kit = self

        def read_config(checkpoint_dir: str) -> dict[str, Any]:
            return json.loads((Path(checkpoint_dir) / "config.json").read_text())

        if model == "multitalk":

            def from_pretrained(cls: Any, checkpoint_dir: str, *args: Any, **kwargs: Any) -> Any:
                index = Path(checkpoint_dir) / "diffusion_pytorch_model.safetensors.index.json"
                json.loads(index.read_text())  # the index must be there and parse, as for the real load
                return kit.dit_for(cls, read_config(checkpoint_dir), config_for.param_dtype)

            model_module.WanModel.from_pretrained = classmethod(from_pretrained)
        else:
            real_cls, real_load_file = model_module.WanModel, pipeline_module.load_file

            def build(**config: Any) -> Any:
                return kit.dit_for(real_cls, config, config_for.param_dtype)

            def load_file(path: str, *args: Any, **kwargs: Any) -> Any:
                if not is_placeholder(path):
                    return real_load_file(path, *args, **kwargs)
                # the shards are not on disk: hand back the built model's own tensors for the first
                # one, so upstream's strict load_state_dict checks every key without a second copy
                first = Path(path).name == SHARDS[0]
                return dict(kit.dit.state_dict()) if first and kit.dit is not None else {}

            pipeline_module.WanModel = build
            pipeline_module.load_file = load_file
        for name in ("T5EncoderModel", "CLIPModel", "WanVAE"):
            real = getattr(pipeline_module, name)

            def cached(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
                if _name not in kit.components:
                    kit.components[_name] = _real(*args, **kwargs)
                return kit.components[_name]

            setattr(pipeline_module, name, cached)
        return [
            "torch.load(T5/CLIP/VAE checkpoints) → random tensors of upstream's shapes",
            f"{model} DiT built once on {self.device} ({config_for.param_dtype}) and shared",
            "T5EncoderModel / CLIPModel / WanVAE built once and shared",
        ]


# =================================================================================================
# Inputs and the engine rows
# =================================================================================================


def write_inputs(folder: Path, sizes: Sizes) -> dict[str, Path]:
    """A 480x480 photo and synthetic 'speech' (a voiced buzz with syllable-rate loudness changes)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (480, 480), (90, 120, 160))
    draw = ImageDraw.Draw(image)
    draw.ellipse((150, 90, 330, 300), fill=(220, 180, 150))
    draw.rectangle((190, 300, 290, 480), fill=(60, 60, 90))
    image.save(folder / "portrait.png")
    out = {"image": folder / "portrait.png"}
    rate = 16_000
    for name, seconds in (("stream", 6.0), ("short", 2.0)):
        t = np.arange(int(seconds * rate)) / rate
        voice = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((140, 280, 420, 700)))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
        rng = np.random.default_rng(0)
        signal = 0.3 * voice * envelope / 2 + 0.01 * rng.standard_normal(len(t))
        pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2")
        with wave.open(str(folder / f"{name}.wav"), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(rate)
            handle.writeframes(pcm.tobytes())
        out[name] = folder / f"{name}.wav"
    return out


def make_task(model: str, **options: Any) -> Any:
    from talkstack.contract.worker import offline_task

    inputs = {"image": "photo.png", "audio": "speech.wav"}
    return offline_task("avatar", model, options, inputs, job_id="avatar-smoke")


@dataclass
class Row:
    engine: str
    row: str
    ok: bool = False
    load_s: float | None = None
    steps: int = 2
    passes: int | None = None
    forwards: int = 0
    blocks_run: int = 0
    """Forwards that ran the blocks (TeaCache skips the rest)."""
    s_per_forward: float | None = None
    s_per_step: float | None = None
    windows: int | None = None
    frames_needed: int | None = None
    frames_predicted: int | None = None
    frames_returned: int | None = None
    embedding_rows: int | None = None
    generate_s: float | None = None
    peak_gb: float | None = None
    projected_s_per_min: float | None = None
    usd_per_min: float | None = None
    attention: str = ""
    note: str = ""


class Probe:
    """Counts and times the DiT's forwards, the blocks that ran, and the VAE decodes (windows)."""

    def __init__(self, pipeline: Any, device: torch.device) -> None:
        self.pipeline, self.device = pipeline, device
        self.times: list[float] = []
        self.blocks = 0
        self.decodes = 0
        self.first_call: tuple[tuple, dict] | None = None
        self._start = 0.0
        self._hooks: list[Any] = []
        self._decode = pipeline.vae.decode

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> Probe:
        model = self.pipeline.model

        def before(_module: Any, args: tuple, kwargs: dict) -> None:
            if self.first_call is None:
                self.first_call = (args, dict(kwargs))
            self._sync()
            self._start = time.perf_counter()

        def after(*_: Any) -> None:
            self._sync()
            self.times.append(time.perf_counter() - self._start)

        def block(*_: Any) -> None:
            self.blocks += 1

        def decode(*args: Any, **kwargs: Any) -> Any:
            self.decodes += 1
            return self._decode(*args, **kwargs)

        self._hooks = [
            model.register_forward_pre_hook(before, with_kwargs=True),
            model.register_forward_hook(after),
            model.blocks[0].register_forward_pre_hook(block),
        ]
        self.pipeline.vae.decode = decode
        return self

    def __exit__(self, *exc: Any) -> None:
        for hook in self._hooks:
            hook.remove()
        self.pipeline.vae.decode = self._decode


def project(row: Row, model: str, turbo: bool, price: float) -> None:
    """Seconds and dollars per output minute at production settings, from this row's measurements:
    windows per minute × (production steps × passes × s/forward + the row's per-window rest: VAE,
    CLIP, masks)."""
    if row.s_per_forward is None or not row.windows or row.generate_s is None:
        return
    steps, passes = production(model, turbo=turbo)
    rest = max(0.0, (row.generate_s - sum([row.s_per_forward] * row.forwards)) / row.windows)
    per_window = steps * passes * row.s_per_forward + rest
    row.projected_s_per_min = windows_for(MINUTE_FRAMES, WINDOW, MOTION[model]) * per_window
    row.usd_per_min = row.projected_s_per_min * price


def run_row(
    engine: Any,
    model: str,
    name: str,
    audio: Path,
    image: Path,
    outdir: Path,
    device: torch.device,
    **options: Any,
) -> Row:
    from talkstack.engines.gpu import avatar_prep as prep

    row = Row(model, name, attention=options.pop("attention", ""))
    task = make_task(model, steps=2, seed=7, **options)
    seen: dict[str, Any] = {}
    real_generate = engine._generate

    def generate(document: dict, settings: Any, samples: int, progress: Any) -> Any:
        rows = int(torch.load(next(iter(document["cond_audio"].values()))).shape[0])
        seen.update(
            rows=rows,
            max_frames=settings.generate_kwargs()["max_frames_num"],
            passes=settings.passes_per_step(),
        )
        start = time.perf_counter()
        video = real_generate(document, settings, samples, progress)
        seen.update(returned=len(video), seconds=time.perf_counter() - start)
        return video

    engine._generate = generate
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    outdir.mkdir(parents=True, exist_ok=True)
    try:
        with Probe(engine.pipeline, device) as probe:
            try:
                _, result = engine.render(task, {"audio": audio, "image": image}, outdir, lambda *_: None)
                row.ok = True
                row.note = f"{result.frames} frames encoded"
            except Exception as exc:  # the row fails, the kit carries on and reports why
                row.note = f"{type(exc).__name__}: {exc}"[:300]
                traceback.print_exc()
    finally:
        engine._generate = real_generate
    tracks = prep.prepare_tracks(audio)
    row.frames_needed = tracks.frames
    row.embedding_rows = seen.get("rows")
    row.frames_returned = seen.get("returned")
    row.generate_s = seen.get("seconds")
    row.passes = seen.get("passes")
    if row.embedding_rows is not None:
        row.frames_predicted, _ = upstream_frames(model, row.embedding_rows, max_frames=seen["max_frames"])
    row.forwards, row.blocks_run, row.windows = len(probe.times), probe.blocks, probe.decodes
    if probe.times:
        row.s_per_forward = statistics.median(probe.times)
        row.s_per_step = row.s_per_forward * (row.passes or 3)
    if device.type == "cuda":
        row.peak_gb = torch.cuda.max_memory_allocated(device) / 1e9
    if row.ok and row.frames_predicted is not None and row.frames_returned != row.frames_predicted:
        row.ok = False
        predicted, returned = row.frames_predicted, row.frames_returned
        row.note = f"upstream returned {returned} frames, the kit's arithmetic says {predicted}"
    engine.smoke_first_call = probe.first_call  # type: ignore[attr-defined]
    return row


# =================================================================================================
# Speed rows: the DiT alone, on the inputs of the stream row's first window
# =================================================================================================

SPEED_VARIANTS = ("upstream", "sdpa", "cudnn", "compile", "fp8")


def _time_forwards(
    model: Any, call: tuple[tuple, dict], device: torch.device, iters: int
) -> tuple[float, float]:
    """(first forward s, median of `iters` later forwards s)."""
    args, kwargs = call
    times = []
    with torch.inference_mode():
        for _ in range(iters + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(*args, **kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:])


def speed_rows(
    model_id: str,
    pipeline: Any,
    call: tuple[tuple, dict],
    device: torch.device,
    wan: Any,
    original: Any,
    args: Any,
) -> list[dict[str, Any]]:
    dit = pipeline.model
    dit.disable_teacache()
    rows = []
    for variant in args.speed:
        row: dict[str, Any] = {"engine": model_id, "variant": variant, "s_per_forward": None, "note": ""}
        rows.append(row)
        try:
            if variant == "upstream":
                row["attention"] = set_attention(wan, "upstream", original)
            elif variant in ("sdpa", "compile", "fp8"):
                row["attention"] = set_attention(wan, "auto")
            elif variant == "cudnn":
                if device.type != "cuda":
                    raise RuntimeError("cuDNN attention needs a CUDA device")
                row["attention"] = set_attention(wan, "cudnn")
            if variant == "compile":
                if device.type != "cuda" and not args.compile_on_cpu:
                    raise RuntimeError("torch.compile row runs on CUDA only (--compile-on-cpu to force)")
                for block in dit.blocks:
                    block.compile(backend=args.compile_backend)
            if variant == "fp8":
                if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
                    raise RuntimeError("FP8 matmuls need an sm_89+ CUDA GPU (H100: sm_90)")
                try:
                    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, quantize_
                except ImportError as exc:
                    raise RuntimeError("torchao is not installed") from exc
                quantize_(dit.blocks, Float8DynamicActivationFloat8WeightConfig())
            first, median = _time_forwards(dit, call, device, args.iters)
            row.update(s_per_forward=median, first_s=first, s_per_step=3 * median)
            if variant == "compile":
                row["note"] = f"first forward (compile) {first:.1f} s"
        except Exception as exc:
            row["note"] = f"n/a: {exc}"[:200]
        finally:
            if variant == "compile":
                for block in dit.blocks:
                    block._compiled_call_impl = None
    set_attention(wan, args.attention if args.attention != "auto" else "auto", original)
    return rows


# =================================================================================================
# The run
# =================================================================================================


def choose_attention(wan: Any, wanted: str, original: Any) -> str:
    """`auto`: upstream's own kernel when flash-attn / sageattention is installed, else SDPA."""
    if wanted == "auto":
        return set_attention(wan, "upstream" if upstream_attention_name(wan) != "none" else "auto", original)
    return set_attention(wan, wanted, original)


def engine_rows(
    model: str,
    wan: Any,
    root: Path,
    inputs: dict[str, Path],
    out: Path,
    device: torch.device,
    args: Any,
    report: dict,
) -> list[Row]:
    import gc

    from talkstack.engines.gpu.avatar import AvatarEngine

    original = sys.modules["wan.modules.multitalk_model"].flash_attention
    attention = choose_attention(wan, args.attention, original)
    price = report["config"]["price_per_second"]
    rows = []
    engine = AvatarEngine(model, weights_dir=root, device=str(device), turbo=False)
    start = time.perf_counter()
    try:
        engine.load()
    except Exception as exc:
        traceback.print_exc()
        return [Row(model, "load", note=f"{type(exc).__name__}: {exc}"[:300], attention=attention)]
    load_s = time.perf_counter() - start
    stream = run_row(
        engine,
        model,
        "stream",
        inputs["stream"],
        inputs["image"],
        out / model / "stream",
        device,
        attention=attention,
        teacache=False,
    )
    stream.load_s = load_s
    project(stream, model, False, price)
    rows.append(stream)
    call = getattr(engine, "smoke_first_call", None)
    teacache = run_row(
        engine,
        model,
        "teacache",
        inputs["short"],
        inputs["image"],
        out / model / "teacache",
        device,
        attention=attention,
        teacache=True,
    )
    skipped = teacache.forwards - teacache.blocks_run
    teacache.note += f"; TeaCache skipped {skipped}/{teacache.forwards} passes"
    rows.append(teacache)
    engine.pipeline = None
    del engine
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    turbo_engine = AvatarEngine(model, weights_dir=root, device=str(device), turbo=True)
    start = time.perf_counter()
    try:
        turbo_engine.load()
    except Exception as exc:
        traceback.print_exc()
        rows.append(Row(model, "turbo", note=f"load: {type(exc).__name__}: {exc}"[:300], attention=attention))
        return rows
    turbo_load_s = time.perf_counter() - start
    turbo = run_row(
        turbo_engine,
        model,
        "turbo",
        inputs["short"],
        inputs["image"],
        out / model / "turbo",
        device,
        attention=attention,
        turbo=True,
        teacache=False,
    )
    turbo.load_s = turbo_load_s
    project(turbo, model, True, price)
    rows.append(turbo)
    if model == args.speed_engine and args.speed and call is not None:
        # last: FP8 rewrites the blocks, and with --weights random the DiT is shared by every pipeline
        pipeline = turbo_engine.pipeline
        report["speed"] += speed_rows(model, pipeline, call, device, wan, original, args)
    turbo_engine.pipeline = None
    del turbo_engine
    gc.collect()
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = Sizes.load(args.tiny)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu" and not args.tiny:
        raise SystemExit("the full-size kit needs a CUDA GPU; use --tiny on a CPU")
    weights_mode = args.weights or ("files" if args.tiny else "random")
    torch.manual_seed(0)
    checkouts = {"multitalk": args.multitalk_code, "infinitetalk": args.infinitetalk_code}
    engines = [e for e in args.engines if checkouts.get(e)]
    missing = [e for e in args.engines if not checkouts.get(e)]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="avatar-smoke-"))
    workdir.mkdir(parents=True, exist_ok=True)
    prices = parse_prices(args.price_per_hour)
    report: dict[str, Any] = {
        "config": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "tiny": args.tiny,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or "cpu",
            "torch": torch.__version__,
            "python": platform.python_version(),
            "weights": weights_mode,
            "steps": 2,
            "price_gpu": args.price_gpu,
            "price_per_second": prices[args.price_gpu],
            "engines": engines,
            "skipped_engines": {e: "no checkout given" for e in missing},
            "fixes": [],
            "shims": {},
            "patches": [],
            "tokenizers": TOKENIZER_NOTE,
        },
        "rows": [],
        "speed": [],
    }
    codes = {}
    for model in engines:
        codes[model], fixes = prepare_code(model, Path(checkouts[model]).resolve(), workdir)
        report["config"]["fixes"] += [f"{model}: {f}" for f in fixes]
        environ.export({CODE_ENV[model]: str(codes[model])})  # read by talkstack.settings
    from talkstack.settings import get_settings

    get_settings.cache_clear()
    shims = install_shims()
    report["config"]["shims"] = {name: SHIMS[name] for name in shims}
    root = workdir / "weights"
    inputs = write_inputs(workdir / "inputs", sizes)
    random_weights = RandomWeights(sizes, device) if weights_mode == "random" else None
    cpu_context = cuda_on_cpu() if device.type == "cpu" else contextlib.nullcontext([])
    real_torch_load = torch.load
    written = False
    with cpu_context as cpu_notes:
        report["config"]["patches"] += list(cpu_notes)
        if random_weights is not None:
            torch.load = random_weights.load  # type: ignore[assignment]
        try:
            for model in engines:
                wan = import_upstream(model, codes[model])
                notes = patch_sizes(wan, sizes, cpu=device.type == "cpu")
                if not written:
                    notes += write_checkpoints(wan, root, sizes, files=weights_mode == "files")
                    written = True
                if model == "infinitetalk" and shutil.which("ffprobe") is None:
                    # get_video_codec() shells out to ffprobe for the reference (the Modal image has it)
                    sys.modules["wan.multitalk"].get_video_codec = lambda path: ""
                    notes.append("no ffprobe on PATH: wan.multitalk.get_video_codec → '' (not AV1)")
                if random_weights is not None:
                    notes += random_weights.patch(model, wan)
                report["config"]["patches"] += [f"{model}: {n}" for n in notes]
                report["rows"] += [
                    asdict(r)
                    for r in engine_rows(model, wan, root, inputs, workdir / "out", device, args, report)
                ]
        finally:
            torch.load = real_torch_load  # type: ignore[assignment]
            forget_upstream()
    report["ok"] = bool(report["rows"]) and all(r["ok"] for r in report["rows"])
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        report["config"]["workdir"] = str(workdir)
    return report


def count_params(model: str, checkout: Path) -> dict[str, int]:
    """Parameters of upstream's own classes at the real sizes (built on the meta device): checks the
    numbers in bench/gpu/configs against the code that loads the real checkpoints."""
    with tempfile.TemporaryDirectory() as tmp:
        code, _ = prepare_code(model, checkout.resolve(), Path(tmp))
        install_shims()
        with cuda_on_cpu() if not torch.cuda.is_available() else contextlib.nullcontext([]):
            import_upstream(model, code)
            dit_cls = sys.modules["wan.modules.multitalk_model"].WanModel
            with torch.device("meta"):
                dit = dit_cls(weight_init=False, **load_config("wan2.1-i2v-14b.json")["config"])
                vae = sys.modules["wan.modules.vae"].WanVAE_(**load_config("wan2.1-vae.json")["config"])
            t5 = sys.modules["wan.modules.t5"].umt5_xxl(
                encoder_only=True, return_tokenizer=False, device="meta"
            )
            clip = sys.modules["wan.modules.clip"].clip_xlm_roberta_vit_h_14(device="meta")
            forget_upstream()

    def count(module: Any) -> int:
        return sum(p.numel() for p in module.parameters())

    audio = sum(p.numel() for k, p in dit.named_parameters() if _is_audio(k))
    return {
        "dit": count(dit),
        "dit_without_audio": count(dit) - audio,
        "t5_encoder": count(t5),
        "clip": count(clip),
        "vae": count(vae),
    }


# =================================================================================================
# Output
# =================================================================================================


def _num(value: float | None, digits: int = 2) -> str:
    return fmt(value, digits)


def render_report(report: dict[str, Any]) -> str:
    cfg = report["config"]
    out = [
        f"avatar smoke ({'tiny' if cfg['tiny'] else 'full size'}, {cfg['weights']} weights) on "
        f"{cfg['device_name']}; torch {cfg['torch']}; {cfg['steps']} sampling steps",
    ]
    for name, why in cfg["shims"].items():
        out.append(f"  stand-in: {name}: {why}")
    for line in cfg["fixes"] + cfg["patches"]:
        out.append(f"  patched: {line}")
    for engine, why in cfg["skipped_engines"].items():
        out.append(f"  skipped: {engine}: {why}")
    headers = [
        "engine",
        "row",
        "result",
        "attention",
        "load s",
        "s/step",
        "passes",
        "windows",
        "frames need/pred/got",
        "peak GB",
        "proj s/min",
        f"$/min {cfg['price_gpu']}",
        "note",
    ]
    rows = []
    for r in report["rows"]:
        frames = f"{r['frames_needed'] or '-'}/{r['frames_predicted'] or '-'}/{r['frames_returned'] or '-'}"
        rows.append(
            [
                r["engine"],
                r["row"],
                "pass" if r["ok"] else "FAIL",
                r["attention"],
                _num(r["load_s"], 1),
                _num(r["s_per_step"], 3),
                str(r["passes"] or "-"),
                str(r["windows"] or "-"),
                frames,
                _num(r["peak_gb"], 1),
                _num(r["projected_s_per_min"], 0),
                _num(r["usd_per_min"], 2),
                r["note"],
            ]
        )
    if rows:
        out += ["", table(headers, rows)]
    if report["speed"]:
        speed = [
            [
                s["engine"],
                s["variant"],
                s.get("attention", ""),
                _num(s["s_per_forward"], 3),
                _num(s.get("s_per_step"), 3),
                s["note"],
            ]
            for s in report["speed"]
        ]
        out += [
            "",
            table(["engine", "variant", "attention", "s/forward", "s/step (3 passes)", "note"], speed),
        ]
    out += ["", f"result: {'PASS' if report['ok'] else 'FAIL'}"]
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--multitalk-code", type=Path, help="checkout of MeiGen-AI/MultiTalk at the pinned commit")
    p.add_argument(
        "--infinitetalk-code", type=Path, help="checkout of MeiGen-AI/InfiniteTalk at the pinned commit"
    )
    p.add_argument("--engines", type=lambda s: s.split(","), default=list(ENGINES))
    p.add_argument("--tiny", action="store_true", help="toy dimensions on the CPU (same code paths)")
    p.add_argument("--device", help="default: cuda when available, else cpu")
    p.add_argument("--weights", choices=("files", "random"), help="default: files with --tiny, else random")
    p.add_argument(
        "--attention",
        choices=("auto", "sdpa", "cudnn"),
        default="auto",
        help="the engine rows' attention (auto: flash-attn/sage if installed, else SDPA)",
    )
    p.add_argument(
        "--speed",
        type=lambda s: [v for v in s.split(",") if v],
        default=list(SPEED_VARIANTS),
        help=f"speed rows, comma list of {','.join(SPEED_VARIANTS)} ('' for none)",
    )
    p.add_argument(
        "--speed-engine", help="the engine whose DiT the speed rows time (default: the last one run)"
    )
    p.add_argument("--iters", type=int, default=1, help="timed forwards per speed row (after one warm-up)")
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--compile-on-cpu", action="store_true")
    p.add_argument("--price-gpu", default="H100", help="the price column (see wan_step.PRICES_PER_SECOND)")
    p.add_argument("--price-per-hour", action="append", default=[], metavar="GPU=USD")
    p.add_argument("--workdir", type=Path, help="default: a temporary folder, removed afterwards")
    p.add_argument("--keep", action="store_true", help="keep the work folder (weights, inputs, videos)")
    p.add_argument("--json", type=Path)
    p.add_argument("--count-params", action="store_true", help="print upstream's parameter counts and exit")
    args = p.parse_args(argv)
    unknown = set(args.speed) - set(SPEED_VARIANTS)
    if unknown:
        p.error(f"unknown speed variants: {sorted(unknown)}")
    if args.speed_engine is None:
        given = {"multitalk": args.multitalk_code, "infinitetalk": args.infinitetalk_code}
        args.speed_engine = [e for e in args.engines if given.get(e)][-1:] or [None]
        args.speed_engine = args.speed_engine[0]
    if not (args.multitalk_code or args.infinitetalk_code):
        p.error("give --multitalk-code and/or --infinitetalk-code (upstream checkouts at the pinned commits)")
    return args


def main(argv: list[str] | None = None) -> int:
    # nothing may reach the Hub (a device box has no internet): set before transformers is imported
    environ.export_defaults({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)  # upstream's torch.cuda.amp.autocast
    warnings.filterwarnings("ignore", message="CUDA is not available")  # the same, on a CPU
    warnings.filterwarnings("ignore", message="Conversion from CIE-LAB")  # colour correction of noise
    if args.count_params:
        checkouts = {"multitalk": args.multitalk_code, "infinitetalk": args.infinitetalk_code}
        counts = {m: count_params(m, Path(c)) for m, c in checkouts.items() if c}
        print(json.dumps(counts, indent=1))
        return 0
    report = run(args)
    print(render_report(report), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
