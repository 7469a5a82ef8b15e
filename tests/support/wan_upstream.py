"""Run MultiTalk's / InfiniteTalk's real `generate` loop on CPU, with stub networks.

The official code is not a pip package and is never copied here: tests that use this take its
checkout from MULTITALK_CODE_DIR / INFINITETALK_CODE_DIR (the commits modal_workers/avatar.py pins)
and skip without it. Only the networks are stubbed (a DiT that returns zeros and records the audio
it is given, a VAE that keeps the shapes, T5 / CLIP returning zeros) plus what cannot run on a CPU
machine without GPU packages (xfuser, xformers, decord, torchvision's center_crop, ffprobe): the
window loop, the audio-embedding slicing, the padding and the cuts are upstream's own code.

    with_checkout = code_dir("multitalk")           # None when not available
    frames, calls, audio_shapes = run(with_checkout, "multitalk", [embedding], photo, workdir=…, …)
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch


def code_dir(model: str) -> Path | None:
    """The checkout named by MULTITALK_CODE_DIR / INFINITETALK_CODE_DIR, if it is there."""
    value = os.environ.get(f"{model.upper()}_CODE_DIR")
    return Path(value) if value and (Path(value) / "wan" / "multitalk.py").is_file() else None


@contextlib.contextmanager
def upstream(code_dir: Path) -> Iterator[Any]:
    # diffusers probes xformers by its module spec: import it before the stubs go in.
    import diffusers.configuration_utils
    import diffusers.models.modeling_utils  # noqa: F401

    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in ("wan", "src")}
    for k in saved:
        del sys.modules[k]
    stubs = {}
    for name in (
        "xfuser",
        "xfuser.core",
        "xfuser.core.distributed",
        "xformers",
        "xformers.ops",
        "decord",
        "torchvision",
        "torchvision.transforms",
        "torchvision.transforms.functional",
        "torchvision.io",
    ):
        if name not in sys.modules:
            stubs[name] = mock.MagicMock(name=name)
    if "torchvision.transforms.functional" in stubs:  # only center_crop is used by the loop's resize

        def center_crop(t, size):
            h, w = size
            top, left = (t.shape[-2] - h) // 2, (t.shape[-1] - w) // 2
            return t[..., top : top + h, left : left + w]

        stubs["torchvision.transforms.functional"].center_crop = center_crop
        stubs["torchvision.transforms"].functional = stubs["torchvision.transforms.functional"]
        stubs["torchvision"].transforms = stubs["torchvision.transforms"]
    sys.path.insert(0, str(code_dir))
    had_argspec = hasattr(inspect, "ArgSpec")
    inspect.ArgSpec = getattr(inspect, "ArgSpec", object)  # removed in 3.11, imported (unused) upstream
    try:
        # t5.py evaluates torch.cuda.current_device() in a default argument at import time.
        sys.modules.update(stubs)
        with (
            mock.patch.object(torch.cuda, "current_device", lambda: 0),
            mock.patch.object(torch, "compile", lambda f=None, **_: f),
        ):
            import wan.multitalk as module
            import wan.utils.multitalk_utils as utils

            with mock.patch.object(utils, "ASPECT_RATIO_627", {"1.00": ([16, 16], 1)}):
                yield module
    finally:
        sys.path.remove(str(code_dir))
        if not had_argspec:
            del inspect.ArgSpec
        # Only the stubs and upstream's own modules go: the libraries they pulled in stay imported
        # (torch registers operators once per process; importing them again would fail).
        for k in [k for k in sys.modules if k.split(".")[0] in ("wan", "src") or k in stubs]:
            del sys.modules[k]
        sys.modules.update(saved)


class StubDiT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, context, seq_len, clip_fea=None, y=None, audio=None, ref_target_masks=None):
        self.calls.append(tuple(audio.shape))
        return torch.zeros(1, *x[0].shape)

    def teacache_init(self, **_):
        pass

    def disable_teacache(self):
        pass


class StubVAE:
    def encode(self, videos):
        return [torch.zeros(16, (v.shape[1] - 1) // 4 + 1, v.shape[2] // 8, v.shape[3] // 8) for v in videos]

    def decode(self, latents):
        return [torch.zeros(3, (z.shape[1] - 1) * 4 + 1, z.shape[2] * 8, z.shape[3] * 8) for z in latents]


def run(
    code_dir: Path, model: str, embeddings: list[torch.Tensor], image: Path, **kwargs: Any
) -> tuple[int, int, list[tuple[int, ...]]]:
    """Upstream's generate on `embeddings` (one per speaker) → (frames it returned, transformer
    forward passes, the audio tensor's shape at each pass). `kwargs`: generate's own arguments,
    plus `workdir` for the .pt files and `extra` for the `extra_args` fields."""
    with upstream(code_dir) as module:
        cls = module.MultiTalkPipeline if model == "multitalk" else module.InfiniteTalkPipeline
        pipe = object.__new__(cls)
        dit = StubDiT()
        pipe.model = dit
        pipe.device = torch.device("cpu")
        pipe.vae = StubVAE()
        pipe.vae_stride, pipe.patch_size, pipe.sp_size = (4, 8, 8), (1, 2, 2), 1
        pipe.clip = types.SimpleNamespace(model=torch.nn.Identity(), visual=lambda x: torch.zeros(1, 257, 8))
        context = [torch.zeros(4, 8)]
        pipe.text_encoder = mock.MagicMock(return_value=(context, context))
        pipe.t5_cpu, pipe.param_dtype, pipe.rank = False, torch.float32, 0
        pipe.num_timesteps, pipe.use_timestep_transform = 1000, True
        pipe.sample_neg_prompt, pipe.vram_management = "", False
        work = Path(kwargs.pop("workdir"))
        paths = {}
        for i, e in enumerate(embeddings):
            torch.save(e, work / f"{i + 1}.pt")
            paths[f"person{i + 1}"] = str(work / f"{i + 1}.pt")
        document = {"prompt": "x", "cond_audio": paths, "video_audio": "unused.wav"}
        document["cond_image" if model == "multitalk" else "cond_video"] = str(image)
        generate = pipe.generate if model == "multitalk" else pipe.generate_infinitetalk
        extra = types.SimpleNamespace(**kwargs.pop("extra"))
        patches = [mock.patch.object(module, "torch_gc", lambda: None)]
        if model == "infinitetalk":
            patches.append(mock.patch.object(module, "get_video_codec", lambda path: "png"))
        with contextlib.ExitStack() as stack:
            for p in patches:
                stack.enter_context(p)
            out = generate(document, extra_args=extra, progress=False, **kwargs)
        return out.shape[1], len(dit.calls), dit.calls
