"""The video GPU engine on CPU: the real diffusers pipeline classes (LTXConditionPipeline, WanPipeline,
WanImageToVideoPipeline) with tiny random components, real MP4 encoding, the real planning rules.

The tiny models render noise, so these tests check what the engine controls: sizes, frame counts,
chaining, conditioning, seeds, progress, errors, and that outputs are valid media."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import httpx
import numpy as np
import pytest
from PIL import Image

from talkstack.contract.request import VideoOptions
from talkstack.contract.worker import AvatarTask, ErrorMarker, Markers, OutputUrl, VideoTask, WorkerTask
from talkstack.engines.gpu import video as video_module
from talkstack.engines.gpu.video import (
    LTX_VIDEO,
    MODEL_SPECS,
    UPSAMPLER_SUBDIR,
    WAN22_TI2V_5B,
    WEIGHTS_SUBDIR,
    VideoEngine,
    output_size,
    plan_passes,
    plan_render,
)
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.video import Mp4Writer, probe_video
from talkstack.workers.runner import run_task
from tests.conftest import PORTRAIT
from tests.support.tiny_video import (
    TINY_SIZES,
    tiny_ltx_upsampler,
    tiny_pipeline_factory,
    tiny_spec,
    tiny_video_engine,
)

MODELS = ["ltx-video", "wan2.2-ti2v-5b"]


def make_task(
    model: str, text: str | None = "a red cat walks on the beach at sunset", **options: Any
) -> WorkerTask:
    """A worker task as dispatch builds it (the URLs are never used by `engine(...)` itself)."""
    put = OutputUrl(url="http://127.0.0.1:9/unused", key="k", content_type="application/json")
    return VideoTask(
        job_id="job-1",
        step="video",
        attempt_id="video-1-abc",
        attempt=1,
        model=model,
        options={"model": model, "duration_s": 2, "fps": 24, "seed": 7, **options},
        text=text,
        outputs={"video": put, "thumbnail": put},
        markers=Markers(progress=put, result=put, error=put),
        heartbeat_interval_s=10,
        deadline=datetime.now(UTC) + timedelta(hours=1),
    )


class Spy:
    """Wraps a pipeline: records every call's keyword arguments and its output."""

    def __init__(self, pipe: Any, calls: list[tuple[dict[str, Any], Any]]) -> None:
        self.pipe, self.calls = pipe, calls

    def __call__(self, **kwargs: Any) -> Any:
        output = self.pipe(**kwargs)
        self.calls.append((kwargs, output))
        return output

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)


class Passes(list):
    """One (keyword arguments of the pass's first pipeline call, the pass's uint8 frames) per pass;
    `pipe_calls` / `upsampler_calls` hold every (kwargs, output) of the pipelines / upsampler."""

    pipe_calls: list[tuple[dict[str, Any], Any]]
    upsampler_calls: list[tuple[dict[str, Any], Any]]


def spied(engine: VideoEngine) -> Passes:
    engine.load()
    passes = Passes()
    passes.pipe_calls, passes.upsampler_calls = [], []
    engine.pipelines = {kind: Spy(pipe, passes.pipe_calls) for kind, pipe in engine.pipelines.items()}
    if engine.upsampler is not None:
        engine.upsampler = Spy(engine.upsampler, passes.upsampler_calls)
    generate = engine._generate

    def recorded(*args: Any, **kwargs: Any) -> np.ndarray:
        first = len(passes.pipe_calls)
        frames = generate(*args, **kwargs)
        passes.append((passes.pipe_calls[first][0], frames.copy()))
        return frames

    engine._generate = recorded  # type: ignore[method-assign]
    return passes


def steps_per_pass(engine: VideoEngine, steps: int = 2) -> int:
    """Progress steps of one pass: the sampling steps, plus the refine steps of a two-stage model."""
    return steps + (engine.spec.refine.steps if engine.spec.refine is not None else 0)


def render(engine: VideoEngine, outdir: Path, task: WorkerTask, image: Path | None = None):
    progress: list[tuple[float, str]] = []
    outdir.mkdir(parents=True, exist_ok=True)
    inputs = {} if image is None else {"image": image}
    outputs, result = engine(task, inputs, outdir, lambda f, m: progress.append((f, m)))
    return outputs, result, progress


def assert_valid_video(outputs: dict[str, Path], width: int, height: int, frames: int, fps: int) -> None:
    info = probe_video(outputs["video"])
    assert (info.width, info.height, info.frames, info.fps) == (width, height, frames, fps)
    assert (info.video.codec, info.pix_fmt, info.audio_streams) == ("h264", "yuv420p", 0)
    assert info.duration_s == pytest.approx(frames / fps, abs=0.05)
    with Image.open(outputs["thumbnail"]) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (width, height)


# ---------------------------------------------------------------------------------------------
# Rendering through the real pipeline classes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_text_to_video_makes_an_mp4_of_exactly_the_asked_frames(model, tmp_path):
    engine = tiny_video_engine(model)
    calls = spied(engine)

    outputs, result, progress = render(engine, tmp_path, make_task(model, aspect="16:9"))

    width, height = TINY_SIZES["16:9"]
    assert_valid_video(outputs, width, height, frames=48, fps=24)
    assert (result.width, result.height, result.frames, result.fps, result.duration_s) == (
        width,
        height,
        48,
        24,
        2.0,
    )
    assert result.output == outputs["video"] and result.bytes == outputs["video"].stat().st_size
    assert result.poster == outputs["thumbnail"]
    [(kwargs, frames)] = calls  # 48 frames fit one pass: 49 rendered (the model's rule), 48 kept
    assert "image" not in kwargs and kwargs["prompt"] == "a red cat walks on the beach at sunset"
    assert kwargs["num_frames"] == 49 and frames.shape == (49, height, width, 3)
    fractions = [f for f, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    total = steps_per_pass(engine)  # one progress line per denoising step the pipelines really ran
    assert [m for _, m in progress if "step" in m] == [
        f"pass 1/1, step {i}/{total}" for i in range(1, total + 1)
    ]


@pytest.mark.parametrize("model", MODELS)
def test_image_to_video_conditions_on_the_image_at_its_nearest_aspect(model, tmp_path):
    engine = tiny_video_engine(model)
    calls = spied(engine)
    inverted = tmp_path / "inverted.png"
    Image.fromarray(255 - np.asarray(Image.open(PORTRAIT).convert("RGB"))).save(inverted)

    outputs, result, _ = render(engine, tmp_path / "a", make_task(model), image=PORTRAIT)
    render(engine, tmp_path / "b", make_task(model), image=inverted)

    width, height = TINY_SIZES["1:1"]  # the portrait is square and no aspect was asked for
    assert_valid_video(outputs, width, height, frames=48, fps=24)
    (first_kwargs, first_frames), (_, second_frames) = calls
    condition = first_kwargs["image"]
    assert condition.size == (width, height)
    assert all(kwargs["image"] is condition for kwargs, _ in calls.pipe_calls[: len(calls.pipe_calls) // 2])
    expected = Image.open(PORTRAIT).convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    assert np.abs(np.asarray(condition, np.int16) - np.asarray(expected, np.int16)).mean() < 2
    if model == "wan2.2-ti2v-5b":
        assert type(engine.pipelines["image"].pipe).__name__ == "WanImageToVideoPipeline"
        assert engine.pipelines["image"].transformer is engine.pipelines["text"].transformer  # shared
    # Same seed and prompt, different first frame: the image reaches the model (the tiny random
    # VAEs barely respond to it, so only inequality is meaningful here).
    assert not np.array_equal(first_frames, second_frames)
    assert result.warnings == []


@pytest.mark.parametrize("model", MODELS)
def test_long_clips_chain_passes_on_the_previous_last_frame(model, tmp_path, monkeypatch):
    written: list[np.ndarray] = []

    class RecordingWriter(Mp4Writer):
        def write(self, frame: np.ndarray) -> None:
            written.append(frame.copy())
            super().write(frame)

    monkeypatch.setattr(video_module, "Mp4Writer", RecordingWriter)
    # The frames are compared with the model's exactly: without the watermark (tested on its own).
    monkeypatch.setattr(video_module, "frame_marker", lambda: lambda frame: frame)
    engine = tiny_video_engine(model, max_frames=17)  # a valid pass length for both frame rules
    calls = spied(engine)

    outputs, result, progress = render(engine, tmp_path, make_task(model))

    # 48 frames = 17 + 16 + 16 − 1 trimmed: three equal passes, each after the first adding 16.
    assert [kwargs["num_frames"] for kwargs, _ in calls] == [17, 17, 17]
    assert "image" not in calls[0][0]
    for (kwargs, _), (_, previous) in zip(calls[1:], calls[:-1], strict=True):
        assert np.array_equal(np.asarray(kwargs["image"]), previous[-1])
    passes = [frames for _, frames in calls]
    expected = np.concatenate([passes[0], passes[1][1:], passes[2][1:]])[:48]
    assert np.array_equal(np.stack(written), expected)  # duplicated first frames dropped, tail trimmed
    width, height = TINY_SIZES["16:9"]
    assert_valid_video(outputs, width, height, frames=48, fps=24)
    assert result.frames == 48
    messages = [m for _, m in progress]
    total = steps_per_pass(engine)
    assert f"pass 1/3, step 1/{total}" in messages and f"pass 3/3, step {total}/{total}" in messages
    fractions = [f for f, _ in progress]
    assert fractions == sorted(fractions)
    assert [f for f, m in progress if m == f"pass 2/3, step {total}/{total}"] == [pytest.approx(0.95 * 2 / 3)]


@pytest.mark.parametrize("model", MODELS)
def test_explicit_sizes_are_fitted_to_the_model_and_the_change_is_reported(model, tmp_path):
    # The tiny spec allows 64×32 pixels per frame, so a 128×128 request must be scaled down.
    engine = tiny_video_engine(model, max_pixels=64 * 32)

    outputs, result, _ = render(engine, tmp_path, make_task(model, width=128, height=128))

    assert_valid_video(outputs, 32, 32, frames=48, fps=24)
    assert any("128×128 scaled down to 32×32" in w for w in result.warnings), result.warnings


@pytest.mark.parametrize("model", MODELS)
def test_the_seed_decides_the_noise(model, tmp_path):
    engine = tiny_video_engine(model)
    calls = spied(engine)

    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        render(engine, tmp_path / name, make_task(model, seed=seed))

    same_a, same_b, other = (frames for _, frames in calls)
    assert np.array_equal(same_a, same_b)
    assert not np.array_equal(same_a, other)


def test_ltx_uses_its_distilled_schedule_unless_steps_are_given(tmp_path):
    engine = tiny_video_engine("ltx-video", default_timesteps=LTX_VIDEO.default_timesteps, default_steps=8)
    calls = spied(engine)

    _, result, progress = render(engine, tmp_path / "a", make_task("ltx-video", negative_prompt="blurry"))
    render(engine, tmp_path / "b", make_task("ltx-video", steps=3))

    (distilled, _), (explicit, _) = calls
    assert (
        distilled["timesteps"] == list(LTX_VIDEO.default_timesteps) and "num_inference_steps" not in distilled
    )
    assert distilled["guidance_scale"] == 1.0 and "negative_prompt" not in distilled
    total = steps_per_pass(engine, 8)
    assert progress[-2][1] == "encoding video" and f"pass 1/1, step {total}/{total}" in [
        m for _, m in progress
    ]
    assert any("ignores negative_prompt" in w for w in result.warnings)
    assert explicit["num_inference_steps"] == 3 and "timesteps" not in explicit
    assert distilled["frame_rate"] == 24 and distilled["decode_timestep"] == 0.05


def test_wan_uses_guidance_with_a_negative_prompt_and_warns_off_its_frame_rate(tmp_path):
    engine = tiny_video_engine("wan2.2-ti2v-5b")
    calls = spied(engine)

    _, default_result, _ = render(engine, tmp_path / "a", make_task("wan2.2-ti2v-5b", duration_s=2))
    _, fast_result, _ = render(
        engine, tmp_path / "b", make_task("wan2.2-ti2v-5b", fps=30, duration_s=2, negative_prompt="cartoon")
    )

    (default_kwargs, _), (custom_kwargs, custom_frames) = calls
    assert default_kwargs["guidance_scale"] == 5.0
    assert default_kwargs["negative_prompt"] == WAN22_TI2V_5B.default_negative_prompt
    assert custom_kwargs["negative_prompt"] == "cartoon"
    assert default_result.warnings == []
    assert any("24 fps; at 30 fps it plays 1.25× faster" in w for w in fast_result.warnings)
    assert fast_result.frames == 60 and custom_frames.shape[0] == 61  # 4k+1 ≥ 60


@pytest.mark.parametrize("model", MODELS)
def test_first_block_cache_is_enabled_on_the_shared_transformer(model, tmp_path):
    engine = VideoEngine(
        model,
        device="cpu",
        pipeline_factory=tiny_pipeline_factory,
        upsampler_factory=tiny_ltx_upsampler,
        spec=tiny_spec(model),
        first_block_cache=0.2,
    )
    outputs, _, _ = render(engine, tmp_path, make_task(model))
    assert engine.pipelines["text"].transformer.is_cache_enabled
    assert engine.pipelines["image"].transformer.is_cache_enabled
    assert_valid_video(outputs, *TINY_SIZES["16:9"], frames=48, fps=24)


@pytest.mark.parametrize("model", MODELS)
def test_production_loading_builds_the_pipelines_from_a_weights_folder(model, tmp_path):
    """Save a tiny pipeline as a diffusers snapshot under <weights>/<org>/<name> and load it the way
    the Modal container does (no factory)."""
    pipe = tiny_pipeline_factory(model)
    pipe.save_pretrained(tmp_path / "weights" / WEIGHTS_SUBDIR[model])
    if model in UPSAMPLER_SUBDIR:  # the upsampler repository is an LTXLatentUpsamplePipeline snapshot
        tiny_ltx_upsampler(pipe).save_pretrained(tmp_path / "weights" / UPSAMPLER_SUBDIR[model])
    engine = VideoEngine(model, weights_dir=tmp_path / "weights", device="cpu", spec=tiny_spec(model))

    outputs, _, _ = render(engine, tmp_path / "out", make_task(model), image=PORTRAIT)

    import torch

    text, image = engine.pipelines["text"], engine.pipelines["image"]
    if model == "ltx-video":
        assert type(text).__name__ == "LTXConditionPipeline" and image is text
        assert type(engine.upsampler).__name__ == "LTXLatentUpsamplePipeline"
        assert engine.upsampler.vae is text.vae  # the generating pipeline's VAE, not the snapshot's copy
    else:
        assert (type(text).__name__, type(image).__name__) == ("WanPipeline", "WanImageToVideoPipeline")
        assert text.config.expand_timesteps and image.config.expand_timesteps
        assert text.vae.dtype == torch.float32
    assert text.vae.use_tiling
    assert_valid_video(outputs, *TINY_SIZES["1:1"], frames=48, fps=24)


# ---------------------------------------------------------------------------------------------
# LTX-Video's two-stage distilled recipe (generate small → latent upsampler ×2 → refine → resize)
# ---------------------------------------------------------------------------------------------

# Big enough that 2/3 of it is not clamped to the 32-px minimum: 96×64 → stage 1 64×32 → 128×64.
TWO_STAGE_SIZES = {"16:9": (96, 64), "9:16": (64, 96), "1:1": (64, 64)}


def test_ltx_renders_two_stages_with_diffusers_own_arithmetic(tmp_path):
    engine = tiny_video_engine(
        "ltx-video", sizes=TWO_STAGE_SIZES, default_timesteps=LTX_VIDEO.default_timesteps, default_steps=8
    )
    calls = spied(engine)

    outputs, result, progress = render(
        engine, tmp_path, make_task("ltx-video", aspect="16:9"), image=PORTRAIT
    )

    pipe = engine.pipelines["image"].pipe
    spatial, temporal = pipe.vae_spatial_compression_ratio, pipe.vae_temporal_compression_ratio
    (first, first_out), (second, second_out) = calls.pipe_calls
    [(up_kwargs, up_out)] = calls.upsampler_calls
    # Stage 1: 2/3 of 96×64, floored to the VAE's factor as diffusers' docs round it; latents out.
    base = tuple(int(x * 2 / 3) - int(x * 2 / 3) % spatial for x in (96, 64))
    assert (first["width"], first["height"]) == base == (64, 32)
    assert first["output_type"] == "latent" and first["timesteps"] == list(LTX_VIDEO.default_timesteps)
    latent_frames = (49 - 1) // temporal + 1
    assert first_out.frames.shape == (1, 128 // 16, latent_frames, 32 // spatial, 64 // spatial)
    # The upsampler gets stage 1's latents and doubles the latent height and width.
    assert up_kwargs["latents"] is first_out.frames and up_kwargs["adain_factor"] == 1.0
    assert up_out.frames.shape == (1, 8, latent_frames, 2 * 32 // spatial, 2 * 64 // spatial)
    # Stage 2 at twice stage 1's size, from the upsampled latents (diffusers checks their shape against
    # the size), with the refine schedule cut by denoise_strength; the same condition image.
    assert (second["width"], second["height"]) == (128, 64) and second["latents"] is up_out.frames
    assert second["timesteps"] == [1000, 909, 725, 421, 0] and second["denoise_strength"] == 0.999
    assert second["image"] is first["image"] and second["image"].size == (96, 64)
    assert second_out.frames[0].shape == (49, 3, 64, 128)
    # Progress counts every denoising step the pipelines ran: 8 distilled + what get_timesteps kept.
    refine_steps = [m for _, m in progress if "step" in m][8:]
    assert len(refine_steps) == LTX_VIDEO.refine.steps == 4
    assert refine_steps[-1] == "pass 1/1, step 12/12"
    # Resized to the output size: the video is what the plan promised.
    assert_valid_video(outputs, 96, 64, frames=48, fps=24)
    assert (result.width, result.height) == (96, 64)


def test_turbo_keeps_ltx_to_one_pass_at_the_output_size(tmp_path):
    engine = tiny_video_engine("ltx-video", sizes=TWO_STAGE_SIZES)
    calls = spied(engine)

    outputs, result, progress = render(engine, tmp_path, make_task("ltx-video", aspect="16:9", turbo=True))

    [(kwargs, output)] = calls.pipe_calls
    assert (kwargs["width"], kwargs["height"], kwargs["output_type"]) == (96, 64, "np")
    assert "latents" not in kwargs and "denoise_strength" not in kwargs
    assert calls.upsampler_calls == [] and output.frames[0].shape == (49, 64, 96, 3)
    assert [m for _, m in progress if "step" in m][-1] == "pass 1/1, step 2/2"
    assert_valid_video(outputs, 96, 64, frames=48, fps=24)
    assert result.warnings == []


def test_wan_has_no_two_stage_recipe_and_says_turbo_changes_nothing(tmp_path):
    engine = tiny_video_engine("wan2.2-ti2v-5b")
    calls = spied(engine)

    _, result, _ = render(engine, tmp_path, make_task("wan2.2-ti2v-5b", turbo=True))

    assert engine.upsampler is None and len(calls.pipe_calls) == 1
    assert any("turbo changes nothing" in w for w in result.warnings)


def test_ltx_stage_sizes_of_every_preset_follow_the_recipe():
    for aspect, (width, height) in LTX_VIDEO.sizes.items():
        plan = plan_render(LTX_VIDEO, VideoOptions(aspect=aspect))
        assert plan.refine is not None and (plan.width, plan.height) == (width, height), aspect
        base = tuple(int(x * 2 / 3) - int(x * 2 / 3) % 32 for x in (width, height))  # docs' rounding
        assert plan.refine.base == base and plan.refine.upsampled == (2 * base[0], 2 * base[1])
        assert plan.steps_per_pass == len(LTX_VIDEO.default_timesteps) + 4
    assert plan_render(LTX_VIDEO, VideoOptions(aspect="16:9")).refine.base == (672, 384)
    assert plan_render(LTX_VIDEO, VideoOptions(turbo=True)).refine is None
    assert plan_render(WAN22_TI2V_5B, VideoOptions(model="wan2.2-ti2v-5b")).refine is None


def test_a_missing_upsampler_is_model_unavailable_and_names_its_folder(tmp_path):
    tiny_pipeline_factory("ltx-video").save_pretrained(tmp_path / WEIGHTS_SUBDIR["ltx-video"])
    engine = VideoEngine("ltx-video", weights_dir=tmp_path, device="cpu", spec=tiny_spec("ltx-video"))
    with pytest.raises(TalkstackError) as info:
        engine.load()
    assert info.value.code == ErrorCode.MODEL_UNAVAILABLE
    assert str(tmp_path / "Lightricks" / "ltxv-spatial-upscaler-0.9.7") in info.value.message


def test_the_catalogue_fetches_every_folder_and_upsampler_file_the_engine_reads(tmp_path):
    from talkstack.engines.gpu import weights

    for model, subdir in {**WEIGHTS_SUBDIR}.items():
        assert model in weights.spec_for_repo(subdir).model_ids
    for model, subdir in UPSAMPLER_SUBDIR.items():
        spec = weights.spec_for_repo(subdir)
        assert model in spec.model_ids and spec.pinned
        # Every file diffusers writes for the upsampler model is fetched (and nothing of the VAE copy).
        pipe = tiny_pipeline_factory(model)
        tiny_ltx_upsampler(pipe).save_pretrained(tmp_path / model)
        saved = [
            p.relative_to(tmp_path / model).as_posix() for p in (tmp_path / model).rglob("*") if p.is_file()
        ]
        wanted = [name for name in saved if name.startswith("latent_upsampler/")]
        assert wanted and all(weights._matches(name, spec.allow_patterns) for name in wanted), wanted
        assert not any(
            weights._matches(name, spec.allow_patterns) for name in saved if name.startswith("vae/")
        )
        assert set(spec.required) <= set(saved)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "   "])
def test_a_task_without_a_prompt_is_an_invalid_request(text, tmp_path, error_code):
    engine = tiny_video_engine("ltx-video")
    assert (
        error_code(render, engine, tmp_path, make_task("ltx-video", text=text)) == ErrorCode.INVALID_REQUEST
    )


def test_invalid_options_are_an_invalid_request_answered_through_the_error_marker():
    # A task document whose options the contract refuses (fps 10 < 24) never reaches the engine: the
    # runner answers through the document's own error marker, fatally, naming the field.
    engine = tiny_video_engine("ltx-video")
    document = make_task("ltx-video").model_dump(mode="json")
    document["options"]["fps"] = 10
    puts: dict[str, bytes] = {}

    def s3(request: httpx.Request) -> httpx.Response:
        puts[request.url.path] = request.content
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(s3)) as client:
        assert run_task(document, client, step=engine) is False
    assert list(puts) == ["/unused"]  # the error marker's URL (every URL of make_task is /unused)
    marker = ErrorMarker.model_validate_json(puts["/unused"])
    assert marker.retryable is False and marker.error.code == ErrorCode.INVALID_REQUEST
    assert "options.fps" in marker.error.message and not engine.loaded


def test_an_engine_refuses_a_task_of_another_kind(tmp_path, error_code):
    engine = tiny_video_engine("ltx-video")
    put = OutputUrl(url="http://127.0.0.1:9/unused", key="k", content_type="application/json")
    avatar = AvatarTask(
        job_id="job-1",
        attempt_id="avatar-1-abc",
        attempt=1,
        model="ltx-video",
        outputs={"video": put},
        markers=Markers(progress=put, result=put, error=put),
        heartbeat_interval_s=10,
        deadline=datetime.now(UTC) + timedelta(hours=1),
    )
    assert error_code(render, engine, tmp_path, avatar) == ErrorCode.INVALID_REQUEST


def test_an_engine_refuses_another_models_task_and_unknown_models(tmp_path, error_code):
    engine = tiny_video_engine("ltx-video")
    assert error_code(render, engine, tmp_path, make_task("wan2.2-ti2v-5b")) == ErrorCode.MODEL_UNAVAILABLE
    assert not engine.loaded  # refused before loading anything
    assert error_code(VideoEngine, "lite-avatar") == ErrorCode.MODEL_UNAVAILABLE


def test_missing_weights_are_model_unavailable_and_name_the_folder(tmp_path):
    engine = VideoEngine("wan2.2-ti2v-5b", weights_dir=tmp_path, device="cpu")
    with pytest.raises(TalkstackError) as info:
        engine.load()
    assert info.value.code == ErrorCode.MODEL_UNAVAILABLE
    assert str(tmp_path / "Wan-AI" / "Wan2.2-TI2V-5B-Diffusers") in info.value.message


def test_the_engine_module_imports_without_torch_or_diffusers():
    code = (
        "import sys, talkstack.engines.gpu.video\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Planning rules of the real models (pure functions)
# ---------------------------------------------------------------------------------------------

ASPECTS = {"16:9": 16 / 9, "9:16": 9 / 16, "1:1": 1.0}


@pytest.mark.parametrize("spec", [LTX_VIDEO, WAN22_TI2V_5B], ids=lambda s: s.model_id)
def test_presets_match_their_aspect_and_the_models_multiple(spec):
    for aspect, ratio in ASPECTS.items():
        width, height, warnings = output_size(spec, VideoOptions(model=spec.model_id, aspect=aspect))
        assert (width, height) == spec.sizes[aspect] and warnings == []
        assert width % spec.size_multiple == 0 and height % spec.size_multiple == 0
        assert width * height <= spec.max_pixels
        assert abs(math.log((width / height) / ratio)) < 0.05  # within 5% of the asked aspect
    assert output_size(spec, VideoOptions(model=spec.model_id))[:2] == spec.sizes["16:9"]  # the default
    assert output_size(spec, VideoOptions(model=spec.model_id), (600, 1000))[:2] == spec.sizes["9:16"]
    assert (
        output_size(spec, VideoOptions(model=spec.model_id, aspect="16:9"), (600, 1000))[:2]
        == spec.sizes["16:9"]
    )


def test_explicit_sizes_round_to_multiples_of_32_with_a_warning():
    assert output_size(LTX_VIDEO, VideoOptions(width=640, height=352)) == (640, 352, [])
    width, height, warnings = output_size(LTX_VIDEO, VideoOptions(width=1000, height=562))
    assert (width, height) == (992, 576)
    assert warnings == ["size 1000×562 rounded to 992×576: ltx-video renders multiples of 32 px"]
    width, height, warnings = output_size(WAN22_TI2V_5B, VideoOptions(width=3840, height=2160))
    assert width % 32 == 0 and height % 32 == 0 and width * height <= WAN22_TI2V_5B.max_pixels
    assert abs(width / height - 16 / 9) < 0.1 and "scaled down" in warnings[0]


@pytest.mark.parametrize("spec", list(MODEL_SPECS.values()), ids=lambda s: s.model_id)
def test_pass_plans_cover_every_duration_with_valid_minimal_passes(spec):
    for fps in (24, 25, 30):
        for duration in (2, 2.5, 5, 5.04, 10, 10.7, 17, 33.3, 60):
            frames = round(duration * fps)
            passes, pass_frames = plan_passes(spec, frames)
            assert pass_frames % spec.frame_step == 1 and pass_frames <= spec.max_frames
            assert pass_frames + (passes - 1) * (pass_frames - 1) >= frames  # enough after dropping repeats
            if passes > 1:  # and no pass too many
                assert spec.max_frames + (passes - 2) * (spec.max_frames - 1) < frames
    assert plan_passes(LTX_VIDEO, 120) == (1, 121) and plan_passes(WAN22_TI2V_5B, 120) == (1, 121)
    assert plan_passes(WAN22_TI2V_5B, 1440) == (12, 121)  # 60 s at 24 fps


def test_specs_refuse_pass_lengths_and_sizes_the_model_cannot_render():
    aspects = {a for arg in get_args(VideoOptions.model_fields["aspect"].annotation) for a in get_args(arg)}
    assert set(LTX_VIDEO.sizes) == set(WAN22_TI2V_5B.sizes) == aspects  # every aspect a request may ask
    with pytest.raises(ValueError, match="8k\\+1"):
        dataclasses.replace(LTX_VIDEO, max_frames=120)
    with pytest.raises(ValueError, match="multiple of 32"):
        dataclasses.replace(WAN22_TI2V_5B, sizes={**WAN22_TI2V_5B.sizes, "1:1": (720, 720)})
