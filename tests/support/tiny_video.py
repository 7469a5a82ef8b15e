"""Tiny, randomly initialised video pipelines for CPU tests: the real diffusers pipeline classes,
the real transformer / VAE / scheduler / text-encoder classes, built from small configs in code.

Nothing is downloaded: the tokenizer is a T5 Unigram tokenizer made from an in-code vocabulary,
the text encoders are built from transformers configs. The output is noise, but every call path
the GPU engine uses (prompt encoding, image conditioning, denoising loop, step callbacks, VAE
decode) runs for real.

`tiny_video_engine` is module-level so worker processes can build it by dotted path
(`tests.support.tiny_video:tiny_video_engine`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from talkstack.engines.gpu.video import MODEL_SPECS, VideoEngine, VideoModelSpec

TINY_SIZES = {"16:9": (64, 32), "9:16": (32, 64), "1:1": (32, 32)}
"""Output sizes of the tiny engines: multiples of 32, like the real models, but a few hundred pixels."""
TEXT_DIM = 32
_WORD_TEXT = (
    "a an the of on in at over under with and slow fast camera pan zoom city street night day sun "
    "sunset sea beach waves forest tree mountain river cat dog bird person walks runs flies red blue "
    "green light rain snow"
)
WORDS = _WORD_TEXT.split()


def _torch() -> Any:
    import torch

    # Tiny tensors: one thread is ~10× faster than two here (no sync overhead, no oversubscription).
    torch.set_num_threads(1)
    return torch


@functools.cache
def tiny_tokenizer() -> Any:
    """A T5 tokenizer (Unigram, SentencePiece-style `▁` word starts) from an in-code vocabulary."""
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -30.0)]
    pieces += [(f"▁{word}", -float(i + 1)) for i, word in enumerate(WORDS)]
    pieces += [(ch, -50.0) for ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-"]
    return T5TokenizerFast(vocab=pieces, extra_ids=0)


def _text_encoder(kind: str) -> Any:
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    shape = dict(
        vocab_size=len(tiny_tokenizer()),
        d_model=TEXT_DIM,
        d_kv=8,
        d_ff=64,
        num_layers=1,
        num_heads=4,
        relative_attention_num_buckets=8,
    )
    # The production checkpoints use T5 (LTX-Video) and UMT5 (Wan): build the same classes.
    if kind == "umt5":
        return UMT5EncoderModel(UMT5Config(**shape)).eval()
    return T5EncoderModel(T5Config(**shape)).eval()


def tiny_ltx_pipeline() -> Any:
    """LTXConditionPipeline (the class LTX-Video 0.9.7 ships as) with a 2-layer transformer."""
    torch = _torch()
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXConditionPipeline,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=2,  # FirstBlockCache needs a first block and at least one more
        caption_channels=TEXT_DIM,
    )
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        # Patch 4 and three space-time halvings: 32× in space and 8× in time, like the real VAE.
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=4,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    vae.use_framewise_encoding = vae.use_framewise_decoding = False
    pipe = LTXConditionPipeline(
        transformer=transformer.eval(),
        vae=vae.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=_text_encoder("t5"),
        tokenizer=tiny_tokenizer(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_ltx_upsampler(pipe: Any) -> Any:
    """LTXLatentUpsamplePipeline over the pipeline's VAE with a one-block latent upsampler (the real
    class: 2× in height and width)."""
    torch = _torch()
    from diffusers import LTXLatentUpsamplePipeline
    from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

    torch.manual_seed(0)
    upsampler = LTXLatentUpsamplerModel(
        in_channels=pipe.transformer.config.in_channels,
        mid_channels=32,  # its GroupNorm has 32 groups
        num_blocks_per_stage=1,
        dims=3,
    )
    return LTXLatentUpsamplePipeline(vae=pipe.vae, latent_upsampler=upsampler.eval())


def tiny_wan_pipeline() -> Any:
    """WanPipeline configured like Wan2.2-TI2V-5B (48-channel VAE compressing 16× in space, 4× in
    time; `expand_timesteps`), with a 2-layer transformer."""
    torch = _torch()
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=48,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        temperal_downsample=[False, True, True],
    )
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=48,
        out_channels=48,
        text_dim=TEXT_DIM,
        freq_dim=32,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    pipe = WanPipeline(
        tokenizer=tiny_tokenizer(),
        text_encoder=_text_encoder("umt5"),
        vae=vae.eval(),
        transformer=transformer.eval(),
        scheduler=UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0
        ),
        expand_timesteps=True,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_pipeline_factory(model_id: str) -> Any:
    """model id → a tiny pipeline of the class the engine loads for that model."""
    builders = {"ltx-video": tiny_ltx_pipeline, "wan2.2-ti2v-5b": tiny_wan_pipeline}
    return builders[model_id]()


def tiny_spec(model_id: str, **changes: Any) -> VideoModelSpec:
    """The model's real spec with tiny output sizes, few steps and short text (plus `changes`)."""
    base = {"sizes": TINY_SIZES, "default_steps": 2, "default_timesteps": None, "max_sequence_length": 16}
    return dataclasses.replace(MODEL_SPECS[model_id], **{**base, **changes})


def tiny_video_engine(model_id: str = "ltx-video", **spec_changes: Any) -> VideoEngine:
    """A VideoEngine over a tiny pipeline (not loaded yet: `load()` or the first task loads it)."""
    return VideoEngine(
        model_id,
        device="cpu",
        pipeline_factory=tiny_pipeline_factory,
        upsampler_factory=tiny_ltx_upsampler,
        spec=tiny_spec(model_id, **spec_changes),
    )
