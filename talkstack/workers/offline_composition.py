"""Render a composition on this machine, in process, with no AWS: exactly the worker steps the
pipeline would run for it (per scene: the voice step with its word timings, the avatar step, the
matte step where a person is cut out; then compose), each called through LITE_STEPS with an offline
task document (talkstack.contract.worker.offline_task), as a worker would call it.

Used by `talkstack templates render` and `make demo`. Only the CPU (lite) engines run here: a scene
that names a GPU engine is refused with MODEL_UNAVAILABLE (render it with `preview`, which swaps
every engine for the lite one, or through a stack with a GPU backend).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talkstack.contract.composition import (
    COMPOSE_OUTPUTS,
    AvatarSource,
    ComposeOptions,
    ComposeScene,
    CompositionRequest,
    MediaSource,
    canvas_size,
    scene_role,
    scene_thumbnail_role,
)
from talkstack.contract.fields import MediaRef
from talkstack.contract.request import AvatarRequest
from talkstack.contract.worker import WorkerStep, offline_task
from talkstack.engines.base import ProgressFn
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.workers.lite_steps import LITE_STEPS
from talkstack.workers.words import WORDS_ROLE, write_words

DEFAULT_MATTE_MODEL = "lite-matte"
MediaResolver = Callable[[MediaRef], Path]


def local_media(root: Path) -> MediaResolver:
    """Media refs as local files: a relative key is a path under `root`; s3:// refs are refused
    (an offline render has no bucket to read)."""

    def resolve(ref: MediaRef) -> Path:
        if ref.bucket is not None:
            raise TalkstackError(
                ErrorCode.INPUT_NOT_FOUND,
                f"s3://{ref.bucket}/{ref.key}: an offline render reads local files only",
            )
        path = root / ref.key
        if not path.is_file():
            raise TalkstackError(ErrorCode.INPUT_NOT_FOUND, f"{ref.key}: no such file under {root}")
        return path

    return resolve


@dataclass
class _Step:
    """Runs one worker step the way the runner does (watermark off where a later step remakes it)."""

    outdir: Path
    progress: ProgressFn
    warnings: list[str] = field(default_factory=list)

    def __call__(
        self,
        step: WorkerStep,
        model: str,
        options: dict[str, Any],
        inputs: dict[str, Path],
        *,
        name: str,
        outputs: tuple[str, ...],
        text: str | None = None,
        watermark: bool = True,
    ) -> dict[str, Path]:
        run = LITE_STEPS.get(model)
        if run is None:
            raise TalkstackError(
                ErrorCode.MODEL_UNAVAILABLE,
                f"{model} does not run offline (CPU lite engines only): render a preview, "
                "pick a lite model, or submit the composition to a stack with a GPU backend",
            )
        task = offline_task(
            step,
            model,
            options,
            {role: path.name for role, path in inputs.items()},
            text=text,
            job_id=name,
            outputs=outputs,
        ).model_copy(update={"watermark": watermark})
        workdir = self.outdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        marking: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if not watermark:  # as the runner does: a render a later step remakes is marked once, there
            from talkstack.safety.watermark import unmarked

            marking = unmarked()
        with marking:
            produced, result = run(task, inputs, workdir, self.progress)
        if WORDS_ROLE in outputs and WORDS_ROLE not in produced:  # as the runner: captions need them
            produced = {**produced, WORDS_ROLE: write_words(task, produced, result, workdir)}
        self.warnings.extend(f"{name}: {warning}" for warning in result.warnings)
        return produced


def render_composition(
    request: CompositionRequest,
    outdir: Path,
    *,
    progress: ProgressFn,
    media: MediaResolver | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Path]:
    """Render `request` into `outdir` (a work folder per step) and return the compose step's
    outputs by role (COMPOSE_OUTPUTS roles that were made, plus scene_thumbnail_<i>).

    `media` turns the request's media refs into local files (default: relative keys under the
    current folder). `warnings`, when given, collects the steps' warnings."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    resolve = media or local_media(Path.cwd())
    scenes_total = len(request.scenes)

    def scene_progress(index: int) -> ProgressFn:
        def update(fraction: float, message: str) -> None:
            progress(0.75 * (index + min(1.0, fraction)) / scenes_total, f"scene {index + 1}: {message}")

        return update

    inputs: dict[str, Path] = {}
    compose_scenes: list[ComposeScene] = []
    collected: list[str] = []
    for index, scene in enumerate(request.scenes):
        step = _Step(outdir, scene_progress(index), collected)
        source = scene.source
        scene_request = request.scene_request(index)
        rendered = words = mask = False
        language = "en"
        if scene.background.media is not None:
            inputs[scene_role(index, "background")] = resolve(scene.background.media)
        if scene.music is not None:
            inputs[scene_role(index, "music")] = resolve(scene.music.media)
        if isinstance(source, MediaSource):
            inputs[scene_role(index, "media")] = resolve(source.media)
        if isinstance(scene_request, AvatarRequest):
            photo = resolve(scene_request.inputs.image)
            if scene_request.inputs.text is not None:
                voice = scene_request.voice_step_options()
                language = voice.language
                reference = scene_request.inputs.reference_voice
                spoken = step(
                    "voice",
                    voice.model,
                    voice.model_dump(mode="json", exclude={"model"}),
                    {"reference_voice": resolve(reference)} if reference is not None else {},
                    name=f"voice-s{index}",
                    outputs=("audio", "words"),
                    text=scene_request.inputs.text,
                    watermark=False,  # the avatar step marks the sound track it muxes
                )
                audio = spoken["audio"]
                inputs[scene_role(index, "words")] = spoken[WORDS_ROLE]
                words = True
            else:  # recorded speech: the compose step aligns a transcript to it, as in the pipeline
                audio = resolve(scene_request.inputs.audio)  # type: ignore[arg-type]  # audio or text
            avatar = step(
                "avatar",
                scene_request.options.model,
                scene_request.options.model_dump(mode="json", exclude={"model"}, exclude_none=True),
                {"image": photo, "audio": audio},
                name=f"avatar-s{index}",
                outputs=("video", "thumbnail"),
                watermark=False,  # the compose step remakes every frame and marks the finished video
            )
            inputs[scene_role(index, "video")] = avatar["video"]
            rendered = True
        elif scene_request is not None:  # a generated clip: no CPU engine makes one
            raise TalkstackError(
                ErrorCode.MODEL_UNAVAILABLE,
                f"scene {index}: a generated clip ({scene_request.options.model}) needs a GPU backend; "
                "render a preview (it shows the prompt as a card) or submit to a stack with one",
            )
        if scene.cutout:
            matte_inputs = {
                "video": inputs.get(scene_role(index, "video")) or inputs[scene_role(index, "media")]
            }
            lite_avatar = (
                isinstance(source, AvatarSource)
                and isinstance(scene_request, AvatarRequest)
                and scene_request.options.model == "lite-avatar"
            )
            if lite_avatar:  # its background does not move: the matte can use the photo's mask
                matte_inputs["image"] = resolve(scene_request.inputs.image)  # type: ignore[union-attr]
            model = request.options.matte_model or DEFAULT_MATTE_MODEL
            matted = step(
                "matte",
                model,
                {"scene": index},
                matte_inputs,
                name=f"matte-s{index}",
                outputs=("mask",),
            )
            inputs[scene_role(index, "mask")] = matted["mask"]
            mask = True
        compose_scenes.append(
            ComposeScene(scene=scene, rendered=rendered, words=words, mask=mask, language=language)
        )
        progress(0.75 * (index + 1) / scenes_total, f"scene {index + 1} of {scenes_total} ready")

    if request.options.music is not None:
        inputs["music"] = resolve(request.options.music.media)
    width, height = canvas_size(request.options.aspect, request.options.resolution, request.preview)
    options = ComposeOptions(
        scenes=compose_scenes, options=request.options, preview=request.preview, width=width, height=height
    )
    roles = (*COMPOSE_OUTPUTS, *(scene_thumbnail_role(i) for i in range(scenes_total)))
    composer = _Step(outdir, lambda f, m: progress(0.75 + 0.25 * min(1.0, f), m), collected)
    produced = composer(
        "compose",
        "compose",
        options.model_dump(mode="json"),
        inputs,
        name="compose",
        outputs=roles,
    )
    if warnings is not None:
        warnings.extend(collected)
    progress(1.0, "composed")
    return produced
