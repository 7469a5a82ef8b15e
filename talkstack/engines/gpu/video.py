"""Text- and image-to-video on a GPU: LTX-Video and Wan2.2-TI2V-5B through diffusers.

    engine = VideoEngine("wan2.2-ti2v-5b", weights_dir=Path("/weights"))
    engine.load()          # builds the pipelines from /weights/Wan-AI/Wan2.2-TI2V-5B-Diffusers
    run_task(task, step=engine)  # prompt in task.text, VideoOptions in task.options, optional input "image"

LTX-Video renders each pass with Lightricks' two-stage distilled recipe unless the request asks for
`turbo`: generate at ~2/3 of the output size, upsample the latents 2× with the spatial latent upsampler,
denoise a few more steps at the upsampled size, and resize the frames to the output size (see
`RefineSpec`). `turbo` renders one pass at the output size (faster, softer).

A model renders at most `max_frames` frames in one pass. Longer clips are chained: the last frame
of pass k is the first-frame condition of pass k+1, whose (near-)duplicate first frame is dropped,
and the whole is trimmed to exactly round(duration_s × fps) frames. Frames stream into the MP4 as
each pass ends, so a minute of 720p never sits in memory at once.

torch and diffusers are imported inside `_load`/`render` only: this module imports anywhere.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from PIL import Image, ImageOps

from talkstack.contract.request import VideoOptions
from talkstack.contract.worker import WorkerTask, task_options
from talkstack.engines.base import ProgressFn, RenderResult
from talkstack.engines.gpu.base import Engine
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.image import read_image
from talkstack.media.video import Mp4Writer, write_poster
from talkstack.safety.watermark import frame_marker

log = logging.getLogger(__name__)

PipelineFactory = Callable[[str], Any]
"""model id → a ready diffusers pipeline (tests inject tiny ones; production loads the weights)."""
UpsamplerFactory = Callable[[Any], Any]
"""main pipeline → an LTXLatentUpsamplePipeline sharing its VAE (tests inject tiny ones)."""

ASPECTS = ("16:9", "9:16", "1:1")  # VideoOptions.aspect
GENERATE_SHARE = 0.95  # of the engine's progress; encoding the last frames and the poster take the rest


@dataclass(frozen=True)
class RefineSpec:
    """Lightricks' multi-scale recipe for the distilled LTX-Video checkpoints, as diffusers' LTX-Video
    docs give it for 0.9.7-distilled (docs/source/en/api/pipelines/ltx_video.md): stage 1 at
    `downscale` × the output size, floored to the VAE's spatial factor; the latent upsampler doubles
    the latent height and width (LTXLatentUpsamplerModel's 2-D pixel shuffle) with AdaIN to the stage-1
    latents; stage 2 denoises the upsampled latents from `timesteps` cut by `denoise_strength`; the
    frames are then resized to the output size (LTX-Video's own LTXMultiScalePipeline does the same)."""

    upsampler_repo_id: str
    """Hugging Face repository of the diffusers-format latent upsampler (an LTXLatentUpsamplePipeline)."""
    downscale: float = 2 / 3
    timesteps: tuple[float, ...] = (1000, 909, 725, 421, 0)
    denoise_strength: float = 0.999
    adain_factor: float = 1.0

    @property
    def steps(self) -> int:
        """Steps stage 2 runs: LTXConditionPipeline.get_timesteps keeps int(n × strength) of n."""
        n = len(self.timesteps)
        return min(int(n * self.denoise_strength), n)


@dataclass(frozen=True)
class VideoModelSpec:
    """What the engine needs to know about one video model. Values cite their source."""

    model_id: str
    family: Literal["ltx", "wan"]
    repo_id: str
    """Hugging Face repository of the diffusers-format weights."""
    sizes: Mapping[str, tuple[int, int]]
    """aspect → (width, height) rendered when no explicit width/height is given."""
    size_multiple: int
    """Width and height must be multiples of this (VAE spatial factor × transformer patch)."""
    max_pixels: int
    """Explicit sizes above this many pixels per frame are scaled down (memory, training range)."""
    frame_step: int
    """Frames per pass are frame_step·k + 1 (the VAE's temporal compression)."""
    max_frames: int
    """Most frames one pass renders; longer clips are chained."""
    native_fps: int
    default_steps: int
    default_timesteps: tuple[float, ...] | None
    """A custom sampling schedule used when the request gives no `steps` (distilled models)."""
    guidance_scale: float
    max_sequence_length: int
    """Prompt tokens the text encoder sees."""
    default_negative_prompt: str | None = None
    refine: RefineSpec | None = None
    """The two-stage recipe (LTX-Video); None: one pass at the output size, whatever `turbo` says."""

    def __post_init__(self) -> None:
        if (self.max_frames - 1) % self.frame_step:
            raise ValueError(
                f"{self.model_id}: max_frames must be {self.frame_step}k+1, got {self.max_frames}"
            )
        if set(self.sizes) != set(ASPECTS):
            raise ValueError(f"{self.model_id}: sizes must cover {', '.join(ASPECTS)}")
        for width, height in self.sizes.values():
            if width % self.size_multiple or height % self.size_multiple:
                raise ValueError(
                    f"{self.model_id}: {width}×{height} is not a multiple of {self.size_multiple}"
                )

    @property
    def weights_subdir(self) -> str:
        """Folder of the weights under the weights directory: the repository id, as downloaded."""
        return self.repo_id

    def frames_for(self, wanted: int) -> int:
        """The smallest valid pass length ≥ `wanted` (never above `max_frames`)."""
        k = max(1, math.ceil((wanted - 1) / self.frame_step))
        return min(self.max_frames, self.frame_step * k + 1)


LTX_REPO_ID = "Lightricks/LTX-Video-0.9.7-distilled"
LTX_UPSAMPLER_REPO_ID = "Lightricks/ltxv-spatial-upscaler-0.9.7"
"""The upsampler diffusers' docs pair with LTX-Video-0.9.7-distilled."""
WAN_REPO_ID = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"

LTX_VIDEO = VideoModelSpec(
    model_id="ltx-video",
    family="ltx",
    repo_id=LTX_REPO_ID,
    # Exact 16:9 / 9:16 at multiples of 32, within LTX's recommended "below 720×1280" envelope.
    sizes={"16:9": (1024, 576), "9:16": (576, 1024), "1:1": (768, 768)},
    size_multiple=32,  # VAE 32× spatial, patch size 1; LTXConditionPipeline checks it
    max_pixels=1280 * 720,
    frame_step=8,  # VAE 8× temporal: 8k+1 frames
    max_frames=257,  # the longest single clip LTX-Video documents
    native_fps=24,  # LTX also takes the frame rate as conditioning (frame_rate=)
    # Guidance- and timestep-distilled: diffusers' LTX-Video docs give this 8-step schedule and
    # guidance_scale 1.0 for LTX-Video-0.9.7-distilled.
    default_steps=8,
    default_timesteps=(1000, 993, 987, 981, 975, 909, 725, 0.03),
    guidance_scale=1.0,
    max_sequence_length=256,  # LTXConditionPipeline's default
    refine=RefineSpec(upsampler_repo_id=LTX_UPSAMPLER_REPO_ID),
)

WAN22_TI2V_5B = VideoModelSpec(
    model_id="wan2.2-ti2v-5b",
    family="wan",
    repo_id=WAN_REPO_ID,
    # Wan2.2's supported TI2V-5B sizes are 1280×704 and 704×1280; 960×960 has the same pixel count.
    sizes={"16:9": (1280, 704), "9:16": (704, 1280), "1:1": (960, 960)},
    size_multiple=32,  # VAE 16× spatial × patch 2
    max_pixels=1280 * 720,
    frame_step=4,  # VAE 4× temporal: 4k+1 frames
    max_frames=121,  # Wan2.2 TI2V-5B config: frame_num=121 (5 s at 24 fps)
    native_fps=24,  # Wan2.2 TI2V-5B config: sample_fps=24
    default_steps=50,  # Wan2.2 TI2V-5B config: sample_steps=50
    default_timesteps=None,
    guidance_scale=5.0,  # Wan2.2 TI2V-5B config: sample_guide_scale=5.0
    max_sequence_length=512,  # WanPipeline's default (the UMT5 context Wan was trained with)
    default_negative_prompt=(
        "blurry, low quality, worst quality, jpeg artifacts, distorted, deformed, disfigured, "
        "static frame, still image, flicker, watermark, subtitles, text, overexposed, "
        "extra fingers, bad hands, bad anatomy, messy background"
    ),
)

MODEL_SPECS: dict[str, VideoModelSpec] = {s.model_id: s for s in (LTX_VIDEO, WAN22_TI2V_5B)}
WEIGHTS_SUBDIR: dict[str, str] = {s.model_id: s.weights_subdir for s in MODEL_SPECS.values()}
"""model id → folder of its diffusers snapshot under the weights directory (= the repository id)."""
UPSAMPLER_SUBDIR: dict[str, str] = {
    s.model_id: s.refine.upsampler_repo_id for s in MODEL_SPECS.values() if s.refine is not None
}
"""model id → folder of its latent-upsampler snapshot under the weights directory (two-stage models)."""


# ---------------------------------------------------------------------------------------------
# Planning: sizes and passes (pure functions, no torch)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefinePlan:
    """Sizes of a two-stage pass: stage 1 renders `base`, stage 2 `upsampled` (= 2 × base)."""

    base: tuple[int, int]
    upsampled: tuple[int, int]
    steps: int
    spec: RefineSpec


@dataclass(frozen=True)
class RenderPlan:
    width: int
    height: int
    fps: int
    frames: int
    """Frames in the output: exactly round(duration_s × fps)."""
    pass_frames: int
    """Frames each pass renders (the model's frame rule, at most max_frames)."""
    passes: int
    steps: int
    timesteps: tuple[float, ...] | None
    warnings: list[str] = field(default_factory=list)
    refine: RefinePlan | None = None
    """Two-stage passes (LTX-Video without turbo); None renders each pass at the output size."""

    @property
    def steps_per_pass(self) -> int:
        first = len(self.timesteps) if self.timesteps is not None else self.steps
        return first + (self.refine.steps if self.refine is not None else 0)


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


def _floor_to(value: float, multiple: int) -> int:
    return max(multiple, int(value // multiple) * multiple)


def nearest_aspect(spec: VideoModelSpec, width: int, height: int) -> str:
    """The preset aspect closest (in log ratio) to an image's."""
    ratio = math.log(width / height)
    return min(spec.sizes, key=lambda a: abs(math.log(spec.sizes[a][0] / spec.sizes[a][1]) - ratio))


def output_size(
    spec: VideoModelSpec, options: VideoOptions, image_size: tuple[int, int] | None = None
) -> tuple[int, int, list[str]]:
    """(width, height, warnings). Presets come from the aspect (by default the image's nearest
    aspect for image-to-video, else 16:9); explicit sizes are rounded to the model's multiple."""
    if options.width is None or options.height is None:
        aspect = options.aspect
        if aspect is None:
            aspect = nearest_aspect(spec, *image_size) if image_size else "16:9"
        width, height = spec.sizes[aspect]
        return width, height, []
    asked_w, asked_h = options.width, options.height
    if asked_w * asked_h > spec.max_pixels:
        scale = math.sqrt(spec.max_pixels / (asked_w * asked_h))
        width, height = (
            _floor_to(asked_w * scale, spec.size_multiple),
            _floor_to(asked_h * scale, spec.size_multiple),
        )
        why = f"{spec.model_id} renders at most {spec.max_pixels:,} pixels per frame"
        return width, height, [f"size {asked_w}×{asked_h} scaled down to {width}×{height}: {why}"]
    width, height = _round_to(asked_w, spec.size_multiple), _round_to(asked_h, spec.size_multiple)
    if (width, height) == (asked_w, asked_h):
        return width, height, []
    why = f"{spec.model_id} renders multiples of {spec.size_multiple} px"
    return width, height, [f"size {asked_w}×{asked_h} rounded to {width}×{height}: {why}"]


def plan_passes(spec: VideoModelSpec, frames: int) -> tuple[int, int]:
    """(passes, frames per pass) covering `frames` output frames. Passes after the first add
    pass_frames − 1 new frames each; equal passes keep motion uniform across the clip."""
    passes = 1 if frames <= spec.max_frames else math.ceil((frames - 1) / (spec.max_frames - 1))
    return passes, spec.frames_for(math.ceil((frames - 1) / passes) + 1)


def plan_refine(spec: VideoModelSpec, width: int, height: int) -> RefinePlan:
    """Stage sizes for an output of width×height: stage 1 at `downscale` of it, floored to the model's
    multiple as Lightricks' recipe rounds; the upsampler doubles it."""
    if spec.refine is None:
        raise ValueError(f"{spec.model_id} has no two-stage recipe")
    refine = spec.refine
    base = (
        _floor_to(width * refine.downscale, spec.size_multiple),
        _floor_to(height * refine.downscale, spec.size_multiple),
    )
    return RefinePlan(base, (2 * base[0], 2 * base[1]), refine.steps, refine)


def plan_render(
    spec: VideoModelSpec, options: VideoOptions, image_size: tuple[int, int] | None = None
) -> RenderPlan:
    width, height, warnings = output_size(spec, options, image_size)
    frames = round(options.duration_s * options.fps)
    passes, pass_frames = plan_passes(spec, frames)
    if spec.family == "wan" and options.fps != spec.native_fps:
        warnings.append(
            f"{spec.model_id} generates motion for {spec.native_fps} fps; at {options.fps} fps it plays "
            f"{options.fps / spec.native_fps:.2f}× faster"
        )
    if spec.guidance_scale <= 1.0 and options.negative_prompt:
        warnings.append(f"{spec.model_id} is guidance-distilled and ignores negative_prompt")
    steps = options.steps or spec.default_steps
    timesteps = spec.default_timesteps if options.steps is None else None
    refine = None if options.turbo or spec.refine is None else plan_refine(spec, width, height)
    if options.turbo and spec.refine is None:
        warnings.append(f"{spec.model_id} has no faster mode; turbo changes nothing")
    return RenderPlan(
        width, height, options.fps, frames, pass_frames, passes, steps, timesteps, warnings, refine
    )


def fit_image(image: np.ndarray, width: int, height: int) -> tuple[Image.Image, list[str]]:
    """Scale and centre-crop an RGB image to cover width×height (never stretch it)."""
    src_h, src_w = image.shape[:2]
    fitted = ImageOps.fit(Image.fromarray(image), (width, height), Image.Resampling.LANCZOS)
    if abs(math.log((src_w / src_h) / (width / height))) > 0.02:
        return fitted, [f"image {src_w}×{src_h} centre-cropped to the video's {width}×{height} frame"]
    return fitted, []


def _to_uint8(frames: Any) -> np.ndarray:
    """Pipeline output (F×H×W×3 floats in 0..1) → uint8 frames."""
    return np.clip(np.rint(np.asarray(frames, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def _resize_frames(video: Any, width: int, height: int) -> np.ndarray:
    """F×3×H×W floats in 0..1 (a torch tensor) → F×height×width×3 uint8, resized with antialiasing
    (stage 2 renders ~4/3 of the output size: a downscale, where plain bilinear would alias)."""
    import torch

    if tuple(video.shape[-2:]) != (height, width):
        video = torch.nn.functional.interpolate(
            video.float(), size=(height, width), mode="bilinear", antialias=True, align_corners=False
        )
    frames = (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    return frames.cpu().numpy()


def _options(task: WorkerTask) -> VideoOptions:
    # Checked when the task document was parsed (the runner answers a refused one on its error marker).
    return task_options(task, VideoOptions)


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


class VideoEngine(Engine):
    """LTX-Video (LTXConditionPipeline: text and image conditioning in one pipeline) or
    Wan2.2-TI2V-5B (WanPipeline for text, WanImageToVideoPipeline over the same modules for an
    image first frame)."""

    model_ids: ClassVar[tuple[str, ...]] = ("ltx-video", "wan2.2-ti2v-5b")

    def __init__(
        self,
        model: str,
        *,
        weights_dir: Path | None = None,
        device: str | None = None,
        pipeline_factory: PipelineFactory | None = None,
        upsampler_factory: UpsamplerFactory | None = None,
        spec: VideoModelSpec | None = None,
        first_block_cache: float | None = None,
        vae_tiling: bool = True,
    ) -> None:
        """`weights_dir`: folder holding `<org>/<name>` diffusers snapshots (None: the Hugging Face
        cache). `upsampler_factory`: builds the latent upsampler of a two-stage model from the loaded
        pipeline (with `pipeline_factory`; production loads it from the weights). `spec`: overrides the
        model's spec (tests use tiny sizes). `first_block_cache`: a
        FirstBlockCache threshold (e.g. 0.05–0.2) to skip transformer work on steps that barely
        change; None disables it. `vae_tiling`: decode in tiles (less GPU memory; loaded weights only)."""
        super().__init__(model, weights_dir=weights_dir, device=device)
        self.spec = spec or MODEL_SPECS[model]
        if self.spec.model_id != model:
            raise ValueError(f"spec is for {self.spec.model_id}, engine for {model}")
        self.pipeline_factory = pipeline_factory
        self.upsampler_factory = upsampler_factory
        self.first_block_cache = first_block_cache
        self.vae_tiling = vae_tiling
        self.pipelines: dict[Literal["text", "image"], Any] = {}
        """The diffusers pipelines by conditioning (text only / image first frame); set by load()."""
        self.upsampler: Any = None
        """LTXLatentUpsamplePipeline of a two-stage model (sharing the pipeline's VAE); set by load()."""
        self._render_lock = threading.Lock()  # one render at a time per loaded model

    @property
    def weights_path(self) -> Path | None:
        return None if self.weights_dir is None else self.weights_dir / self.spec.weights_subdir

    @property
    def upsampler_path(self) -> Path | None:
        if self.weights_dir is None or self.spec.refine is None:
            return None
        return self.weights_dir / self.spec.refine.upsampler_repo_id

    # -- loading ------------------------------------------------------------------------------

    def _load(self) -> None:
        import torch

        if self.device is None:
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.pipeline_factory is not None:
            pipe = self.pipeline_factory(self.model)
        else:
            pipe = self._from_weights(torch)
        pipe.set_progress_bar_config(disable=True)
        self.pipelines = {"text": pipe, "image": self._image_pipeline(pipe)}
        if self.spec.refine is not None:
            if self.upsampler_factory is not None:
                self.upsampler = self.upsampler_factory(pipe)
            elif self.pipeline_factory is None:
                self.upsampler = self._upsampler_from_weights(torch, pipe)
            else:  # never fall back to one stage silently: that is the softer output finding 10 fixed
                raise ValueError(f"{self.model}: a pipeline_factory needs an upsampler_factory too")
            self.upsampler.set_progress_bar_config(disable=True)
        if self.first_block_cache is not None:
            from diffusers.hooks import FirstBlockCacheConfig

            # Shared by both pipelines (same transformer module).
            pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=self.first_block_cache))

    def _from_weights(self, torch: Any) -> Any:
        root = self.weights_path
        if root is not None and not (root / "model_index.json").is_file():
            raise TalkstackError(
                ErrorCode.MODEL_UNAVAILABLE,
                f"{self.model}: no diffusers weights at {root} (download {self.spec.repo_id} there first)",
            )
        source = str(root) if root is not None else self.spec.repo_id
        dtype = torch.bfloat16 if str(self.device).startswith("cuda") else torch.float32
        started = time.perf_counter()
        if self.spec.family == "ltx":
            from diffusers import LTXConditionPipeline

            pipe = LTXConditionPipeline.from_pretrained(source, dtype=dtype)
        else:
            from diffusers import AutoencoderKLWan, WanPipeline

            # Wan's VAE loses detail in bf16: keep it in fp32 (the Wan authors' and diffusers' advice).
            vae = AutoencoderKLWan.from_pretrained(source, subfolder="vae", dtype=torch.float32)
            pipe = WanPipeline.from_pretrained(source, vae=vae, dtype=dtype, expand_timesteps=True)
        if self.vae_tiling:
            pipe.vae.enable_tiling()
        pipe.to(self.device)
        log.info("%s loaded from %s in %.1f s", self.model, source, time.perf_counter() - started)
        return pipe

    def _upsampler_from_weights(self, torch: Any, pipe: Any) -> Any:
        from diffusers import LTXLatentUpsamplePipeline
        from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

        assert self.spec.refine is not None
        root = self.upsampler_path
        if root is not None and not (root / "latent_upsampler" / "config.json").is_file():
            raise TalkstackError(
                ErrorCode.MODEL_UNAVAILABLE,
                f"{self.model}: no latent upsampler at {root} (download "
                f"{self.spec.refine.upsampler_repo_id} there first)",
            )
        source = str(root) if root is not None else self.spec.refine.upsampler_repo_id
        # Only the upsampler's own weights: the repository's pipeline would bring a second copy of the
        # VAE, and the upsampler needs the generating pipeline's VAE statistics anyway.
        upsampler = LTXLatentUpsamplerModel.from_pretrained(
            source, subfolder="latent_upsampler", dtype=pipe.transformer.dtype
        )
        return LTXLatentUpsamplePipeline(vae=pipe.vae, latent_upsampler=upsampler).to(self.device)

    def _image_pipeline(self, pipe: Any) -> Any:
        if self.spec.family == "ltx":
            return pipe  # LTXConditionPipeline takes `image=` itself
        from diffusers import WanImageToVideoPipeline

        # Same modules, no copy. TI2V-5B needs no CLIP image encoder: expand_timesteps conditions
        # on the first frame's latents directly. (Not from_pipe: it would cast everything to fp32.)
        image_pipe = WanImageToVideoPipeline(
            tokenizer=pipe.tokenizer,
            text_encoder=pipe.text_encoder,
            vae=pipe.vae,
            scheduler=pipe.scheduler,
            transformer=pipe.transformer,
            expand_timesteps=True,
        )
        image_pipe.set_progress_bar_config(disable=True)
        return image_pipe

    # -- rendering ----------------------------------------------------------------------------

    def render(
        self, task: WorkerTask, inputs: dict[str, Path], outdir: Path, progress: ProgressFn
    ) -> tuple[dict[str, Path], RenderResult]:
        import torch

        started = time.perf_counter()
        options = _options(task)
        prompt = (task.text or "").strip()
        if not prompt:
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST, "video step without a prompt (task.text is empty)"
            )
        image: np.ndarray | None = None
        warnings: list[str] = []
        if "image" in inputs:
            image, info = read_image(inputs["image"])
            warnings.extend(info.notes)
        plan = plan_render(self.spec, options, None if image is None else (image.shape[1], image.shape[0]))
        warnings.extend(plan.warnings)
        condition: Image.Image | None = None
        if image is not None:
            condition, crop_notes = fit_image(image, plan.width, plan.height)
            warnings.extend(crop_notes)

        seed = options.seed if options.seed is not None else secrets.randbelow(2**32)
        stages = "one stage"
        if plan.refine is not None:
            (w1, h1), (w2, h2) = plan.refine.base, plan.refine.upsampled
            stages = f"two stages ({w1}×{h1} → {w2}×{h2})"
        log.info(
            "%s: %d×%d, %d frames at %d fps in %d pass(es) of %d, %d steps per pass in %s, seed %d",
            self.model, plan.width, plan.height, plan.frames, plan.fps, plan.passes, plan.pass_frames,
            plan.steps_per_pass, stages, seed,
        )  # fmt: skip
        # A CPU generator gives the same noise for a seed on any GPU (diffusers moves it over).
        generator = torch.Generator("cpu").manual_seed(seed)
        video, poster = outdir / "video.mp4", outdir / "thumbnail.jpg"
        generate_s = 0.0
        mark = frame_marker()  # the watermark (docs/safety.md), once, as the frames are encoded
        with self._render_lock, Mp4Writer(video, plan.width, plan.height, plan.fps) as out:
            for index in range(plan.passes):
                t0 = time.perf_counter()
                frames = self._generate(prompt, options, plan, condition, generator, index, progress)
                generate_s += time.perf_counter() - t0
                fresh = frames if index == 0 else frames[1:]  # frame 0 repeats the condition frame
                for frame in fresh[: plan.frames - out.frames]:
                    out.write(mark(frame))
                if index == 0:
                    write_poster(frames[min(plan.fps, len(frames) - 1)], poster)  # ~1 s in
                condition = Image.fromarray(frames[-1])
            if out.frames != plan.frames:  # the pass plan guarantees enough; never publish a short clip
                raise TalkstackError(
                    ErrorCode.GENERATION_FAILED, f"rendered {out.frames} frames, expected {plan.frames}"
                )
            progress(GENERATE_SHARE, "encoding video")
        progress(1.0, "video ready")
        result = RenderResult(
            output=video,
            bytes=video.stat().st_size,
            duration_s=plan.frames / plan.fps,
            poster=poster,
            width=plan.width,
            height=plan.height,
            fps=plan.fps,
            frames=plan.frames,
            warnings=warnings,
            timings={"generate_s": generate_s, "total_s": time.perf_counter() - started},
        )
        return {"video": video, "thumbnail": poster}, result

    def _generate(
        self,
        prompt: str,
        options: VideoOptions,
        plan: RenderPlan,
        condition: Image.Image | None,
        generator: Any,
        index: int,
        progress: ProgressFn,
    ) -> np.ndarray:
        """One pass: plan.pass_frames frames as uint8 F×H×W×3 at the output size."""
        import torch

        total = plan.steps_per_pass

        def on_step(done_before: int) -> Callable[..., dict[str, Any]]:
            def callback(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
                done = done_before + step + 1
                progress(
                    GENERATE_SHARE * (index + done / total) / plan.passes,
                    f"pass {index + 1}/{plan.passes}, step {done}/{total}",
                )
                return tensors

            return callback

        spec = self.spec
        kwargs: dict[str, Any] = {
            "prompt": prompt,
            "width": plan.width,
            "height": plan.height,
            "num_frames": plan.pass_frames,
            "guidance_scale": spec.guidance_scale,
            "generator": generator,
            "output_type": "np",
            "max_sequence_length": spec.max_sequence_length,
            "callback_on_step_end": on_step(0),
        }
        if spec.guidance_scale > 1.0:  # negative prompts only matter with classifier-free guidance
            kwargs["negative_prompt"] = options.negative_prompt or spec.default_negative_prompt
        if plan.timesteps is not None:
            kwargs["timesteps"] = list(plan.timesteps)
        else:
            kwargs["num_inference_steps"] = plan.steps
        if spec.family == "ltx":
            # LTX-Video docs: timestep-aware VAE decode at 0.05 with a little noise; a single
            # conditioning frame without extra noise keeps the chained clips continuous.
            kwargs.update(frame_rate=plan.fps, decode_timestep=0.05, decode_noise_scale=0.025)
            kwargs["image_cond_noise_scale"] = 0.0
        if condition is not None:
            kwargs["image"] = condition  # the pipeline resizes it to each stage's size
        pipe = self.pipelines["text" if condition is None else "image"]
        size = (plan.width, plan.height)
        try:
            if plan.refine is None:
                frames = _to_uint8(pipe(**kwargs).frames[0])
            else:
                refine_callback = on_step(total - plan.refine.steps)  # stage 2 counts on from stage 1
                frames = self._two_stage(pipe, kwargs, plan.refine, generator, refine_callback, size)
        except torch.OutOfMemoryError as exc:
            raise TalkstackError(
                ErrorCode.GENERATION_FAILED,
                f"{self.model} ran out of GPU memory at {plan.width}×{plan.height} with "
                f"{plan.pass_frames} frames per pass; ask for a smaller size or turbo",
            ) from exc
        if frames.shape != (plan.pass_frames, plan.height, plan.width, 3):
            raise TalkstackError(
                ErrorCode.GENERATION_FAILED,
                f"{self.model} returned frames of shape {frames.shape}, expected "
                f"{(plan.pass_frames, plan.height, plan.width, 3)}",
            )
        return frames

    def _two_stage(
        self,
        pipe: Any,
        kwargs: dict[str, Any],
        refine: RefinePlan,
        generator: Any,
        refine_callback: Callable[..., dict[str, Any]],
        size: tuple[int, int],
    ) -> np.ndarray:
        """Stage 1 at the base size → latent upsampler ×2 → stage 2 at the upsampled size → resize.
        Both stages see the same prompt and condition image (LTX-Video's multi-scale pipeline does)."""
        first = {**kwargs, "width": refine.base[0], "height": refine.base[1], "output_type": "latent"}
        latents = pipe(**first).frames  # output_type="latent": normalised B×C×F×h×w latents
        upsampled = self.upsampler(
            latents=latents,
            adain_factor=refine.spec.adain_factor,
            generator=generator,
            output_type="latent",
        ).frames
        second = {key: value for key, value in kwargs.items() if key != "num_inference_steps"}
        second.update(
            width=refine.upsampled[0],
            height=refine.upsampled[1],
            latents=upsampled,
            timesteps=list(refine.spec.timesteps),
            denoise_strength=refine.spec.denoise_strength,
            output_type="pt",  # F×3×H×W on the device: resized there, not as floats in host memory
            callback_on_step_end=refine_callback,
        )
        video = pipe(**second).frames[0]
        return _resize_frames(video, *size)
