"""MultiTalk / InfiniteTalk talking avatars on Wan2.1-I2V-14B-480P, in process.

The official inference code (not a pip package) is checked out in the worker image at a pinned
commit and put on sys.path (MULTITALK_CODE_DIR / INFINITETALK_CODE_DIR); the pipeline is built once
in `_load` (Modal: `@modal.enter`), so memory snapshots and warm containers skip the 80 GB load.
Per task: speech prepared and embedded with wav2vec2 (avatar_prep.py), padded with the silence
`model_plan` asks for so the official `generate` returns every frame of the speech (MultiTalk's
stream arithmetic otherwise drops 3), called with the job's options mapped by
`generation_settings`, the frames trimmed to the speech, encoded with the speech as H.264 + AAC.

`_generate` is the one call into the official code (its weights cannot be downloaded on a CPU
machine): tests/unit/test_avatar_engine.py replaces it, test_avatar_engine_pipeline.py runs it
against a stub pipeline object with the upstream signature, window loop and output tensor.
Everything else here runs in the test suite, the wav2vec2 embedding included (with a tiny random
wav2vec2 built from a config).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from talkstack.contract.request import TWO_SPEAKER_INFINITETALK, AvatarOptions
from talkstack.contract.worker import WorkerTask, task_options
from talkstack.engines.base import ProgressFn, RenderResult
from talkstack.engines.gpu import avatar_prep as prep
from talkstack.engines.gpu.base import Engine
from talkstack.engines.gpu.weights import paths_for, verify_model
from talkstack.engines.quality import with_quality
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.audio import write_wav
from talkstack.media.image import read_image
from talkstack.media.video import Mp4Writer, write_poster
from talkstack.safety.watermark import frame_marker, write_marked_wav
from talkstack.settings import get_settings

CODE_DIRS = {"multitalk": "MULTITALK_CODE_DIR", "infinitetalk": "INFINITETALK_CODE_DIR"}
"""The variable naming each model's code checkout (read by talkstack.settings.engines)."""


class AvatarEngine(Engine):
    model_ids: ClassVar[tuple[str, ...]] = ("multitalk", "infinitetalk")

    def __init__(
        self,
        model: str,
        *,
        weights_dir: Path | None = None,
        device: str | None = None,
        turbo: bool = False,
        audio_encoder: Any = None,
    ) -> None:
        super().__init__(model, weights_dir=weights_dir, device=device)
        self.turbo = turbo
        """The step-distillation LoRA is merged into the weights at load: a container is turbo or not."""
        self.pipeline: Any = None
        self.audio_encoder = audio_encoder
        self.feature_extractor: Any = None

    # --- loading ------------------------------------------------------------------------------------

    def _load(self) -> None:
        import torch
        from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

        assert self.weights_dir is not None
        if self.pipeline is None:
            # Before reading ~80 GB: every repository at the catalogue's pin, or at the commit the
            # weights app locked for an unpinned one, and MultiTalk's composed folder built from them.
            problems = verify_model(self.model, self.weights_dir)
            if problems:
                raise TalkstackError(
                    ErrorCode.MODEL_UNAVAILABLE,
                    f"{self.model}: the weights on {self.weights_dir} are not ready ({'; '.join(problems)}); "
                    f"run: modal run -m modal_workers.weights --models {self.model}",
                )
        self.device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        wav2vec = paths_for(self.model, self.weights_dir)["wav2vec"]
        if self.audio_encoder is None:
            self.audio_encoder = Wav2Vec2Model.from_pretrained(wav2vec, local_files_only=True).eval()
        if self.feature_extractor is None and (wav2vec / "preprocessor_config.json").exists():
            self.feature_extractor = Wav2Vec2FeatureExtractor.from_pretrained(wav2vec, local_files_only=True)
        if self.pipeline is None:
            self.pipeline = self._build_pipeline()

    def _build_pipeline(self) -> Any:
        """Construct the official pipeline (reads ~80 GB; minutes on a cold container)."""
        settings = get_settings()
        code = settings.multitalk_code_dir if self.model == "multitalk" else settings.infinitetalk_code_dir
        if not (code / "wan").is_dir():
            raise TalkstackError(
                ErrorCode.MODEL_UNAVAILABLE,
                f"{self.model}: the official code is not at {code} (set {CODE_DIRS[self.model]})",
            )
        sys.path.insert(0, str(code))
        import wan  # the official package (MeiGen-AI/MultiTalk or InfiniteTalk at the pinned commit)
        from wan.configs import WAN_CONFIGS

        assert self.weights_dir is not None
        paths = paths_for(self.model, self.weights_dir)  # the layout weights.py downloads into
        lora = [str(paths["lora"])] if self.turbo else None
        common = {
            "checkpoint_dir": str(paths["base"]),
            "device_id": 0,
            "rank": 0,
            "t5_fsdp": False,
            "dit_fsdp": False,
            "use_usp": False,
            "t5_cpu": False,
            "lora_dir": lora,
            "lora_scales": [1.0] if lora else None,
        }
        if self.model == "multitalk":
            # weights.py links multitalk.safetensors and its index into a copy of the base folder.
            common["checkpoint_dir"] = str(paths["ckpt"])
            return wan.MultiTalkPipeline(config=WAN_CONFIGS["multitalk-14B"], **common)
        # The single-speaker weights: two speakers are refused for infinitetalk (their weights are
        # multi/infinitetalk.safetensors, a different DiT; see TWO_SPEAKER_INFINITETALK).
        single = paths["infinitetalk"] / "single" / "infinitetalk.safetensors"
        return wan.InfiniteTalkPipeline(
            config=WAN_CONFIGS["infinitetalk-14B"], infinitetalk_dir=str(single), **common
        )

    # --- per task ---------------------------------------------------------------------------------

    def embed(self, speech: np.ndarray) -> Any:
        """wav2vec2 features of 16 kHz speech, one row per video frame: [frames, layers, dim].

        MultiTalk's audio encoder resamples the convolutional features to 25 rows a second *before*
        the transformer and keeps every layer's hidden state; this does the same with transformers'
        stock Wav2Vec2Model."""
        import torch

        frames = prep.frames_for_samples(len(speech))
        if self.feature_extractor is not None:
            values = self.feature_extractor(speech, sampling_rate=prep.SAMPLE_RATE).input_values[0]
        else:  # zero mean, unit variance: what the feature extractor does for this model
            values = (speech - speech.mean()) / np.sqrt(speech.var() + 1e-7)
        encoder = self.audio_encoder
        layers: list[Any] = []

        def keep(_module: Any, _args: Any, output: Any) -> None:
            layers.append(output[0] if isinstance(output, tuple) else output)

        # Each transformer layer's output, collected with hooks (transformers 4 and 5 differ in how
        # the encoder returns hidden states; the layers' outputs are the same in both).
        hooks = [layer.register_forward_hook(keep) for layer in encoder.encoder.layers]
        try:
            with torch.no_grad():
                batch = torch.as_tensor(np.asarray(values, dtype=np.float32))[None].to(encoder.device)
                features = encoder.feature_extractor(batch)  # [1, channels, cnn frames at ~50 Hz]
                features = torch.nn.functional.interpolate(
                    features, size=frames, mode="linear", align_corners=True
                )
                hidden, _ = encoder.feature_projection(features.transpose(1, 2))
                encoder.encoder(hidden)
        finally:
            for hook in hooks:
                hook.remove()
        return torch.stack(layers, dim=2)[0].float().cpu()  # [frames, layers, dim]

    def render(
        self, task: WorkerTask, inputs: dict[str, Path], outdir: Path, progress: ProgressFn
    ) -> tuple[dict[str, Path], RenderResult]:
        import torch

        options = task_options(task, AvatarOptions)
        if options.turbo != self.turbo:
            raise TalkstackError(
                ErrorCode.MODEL_UNAVAILABLE,
                f"this worker was loaded with turbo={self.turbo}; the task asks for turbo={options.turbo}",
            )
        if self.model == "infinitetalk" and inputs.get("second_audio") is not None:
            # Request validation refuses this already (contract/request.py); a task built another
            # way must not render two people with the single-speaker weights this worker holds.
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST, TWO_SPEAKER_INFINITETALK, field="inputs.second_audio"
            )
        progress(0.01, "preparing speech")
        tracks = prep.prepare_tracks(
            inputs["audio"],
            inputs.get("second_audio"),
            options.audio_type,
            options.max_duration_s,
            model=self.model,
        )
        pixels, info = read_image(inputs["image"])
        boxes = None
        if options.speaker_boxes is not None:
            boxes = prep.to_model_boxes(list(options.speaker_boxes), info.width, info.height)
        settings = prep.generation_settings(self.model, options, tracks.duration_s)
        work = outdir / "model-inputs"
        work.mkdir(exist_ok=True)
        embeddings = []
        for i, speaker in enumerate(tracks.speakers):
            path = work / f"{i + 1}.pt"
            torch.save(self.embed(speaker), path)
            embeddings.append(path)
        mix = write_wav(work / "sum.wav", tracks.mix, prep.SAMPLE_RATE)
        image = work / "reference.png"
        write_poster(pixels, image, max_side=max(info.width, info.height), quality=95)
        document = prep.input_document(
            self.model,
            prompt=options.prompt,
            image=image,
            embeddings=embeddings,
            mix=mix,
            audio_type=options.audio_type,
            boxes=boxes,
        )
        progress(
            0.05, f"rendering {settings.windows(tracks.frames)} window(s) of {settings.sampling_steps} steps"
        )
        video = self._generate(
            document, settings, len(tracks.mix), lambda f: progress(0.05 + 0.85 * f, "rendering")
        )
        frames = video[: tracks.frames]  # the silence after the speech (model_plan) comes off here
        if len(frames) < tracks.frames:
            raise RuntimeError(f"{self.model} returned {len(video)} frames; {tracks.frames} were needed")
        progress(0.92, "encoding")
        outputs, result = self._encode(frames, tracks, outdir, settings, options)
        progress(0.96, "measuring quality")
        return outputs, with_quality(result, pixels, speech_s=tracks.duration_s)

    def _generate(
        self,
        document: dict[str, Any],
        settings: prep.GenerationSettings,
        samples: int,
        progress: Callable[[float], None],
    ) -> np.ndarray:
        """The official generate → uint8 frames [T, H, W, 3] for `samples` of 16 kHz speech. Progress
        comes from counting the transformer's forward passes (windows × steps × passes per step)."""
        import torch

        outcome = prep.upstream_outcome(
            self.model,
            prep.frames_for_samples(samples),
            frame_num=settings.frame_num,
            motion_frame=settings.motion_frame,
            max_frames_num=settings.max_frames_num,
        )
        expected = outcome.windows * settings.sampling_steps * settings.passes_per_step()
        calls = [0]

        def count(*_: Any) -> None:
            calls[0] += 1
            progress(min(1.0, calls[0] / expected))

        hook = self.pipeline.model.register_forward_pre_hook(count)
        try:
            generate = (
                self.pipeline.generate if self.model == "multitalk" else self.pipeline.generate_infinitetalk
            )
            with torch.inference_mode():
                out = generate(
                    document,
                    extra_args=types.SimpleNamespace(**settings.extra_args()),
                    **settings.generate_kwargs(),
                )
        except torch.cuda.OutOfMemoryError as exc:
            raise TalkstackError(
                ErrorCode.GENERATION_FAILED,
                f"{self.model} ran out of GPU memory at {settings.size_bucket}; use 480p, or a GPU with "
                "80 GB or more (TALKSTACK_AVATAR_GPU)",
            ) from exc
        finally:
            hook.remove()
        # [3, T, H, W] in [-1, 1] → [T, H, W, 3] uint8
        video = ((out.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return video.permute(1, 2, 3, 0).contiguous().numpy()

    def _encode(
        self,
        frames: np.ndarray,
        tracks: prep.SpeechTracks,
        outdir: Path,
        settings: prep.GenerationSettings,
        options: AvatarOptions,
    ) -> tuple[dict[str, Path], RenderResult]:
        height, width = frames.shape[1:3]
        even_h, even_w = height - height % 2, width - width % 2
        audio = write_marked_wav(outdir / "speech.wav", tracks.mux, prep.MUX_SAMPLE_RATE)
        video, poster = outdir / "video.mp4", outdir / "thumbnail.jpg"
        mark = frame_marker()  # the watermark (docs/safety.md), once, as the frames are encoded
        with Mp4Writer(video, even_w, even_h, prep.FPS, audio) as out:
            for frame in frames:
                out.write(mark(np.ascontiguousarray(frame[:even_h, :even_w])))
        write_poster(frames[0], poster)
        warnings = [*tracks.warnings, *settings.warnings]
        if tracks.frames < settings.frame_num:
            window = settings.frame_num
            warnings.append(f"speech shorter than one {window}-frame window: padded, then trimmed")
        if options.fps != prep.FPS:
            warnings.append(f"{self.model} renders at {prep.FPS} fps; options.fps={options.fps} was ignored")
        result = RenderResult(
            output=video,
            bytes=video.stat().st_size,
            duration_s=len(frames) / prep.FPS,
            poster=poster,
            width=even_w,
            height=even_h,
            fps=prep.FPS,
            frames=len(frames),
            warnings=warnings,
            timings={"windows": float(settings.windows(len(frames)))},
        )
        return {"video": video, "thumbnail": poster}, result
