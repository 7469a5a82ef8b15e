"""A composition's worker tasks: what dispatch gives each scene's engine steps, its matte steps and
its compose step (docs/pipeline.md, "Compositions").

A scene that needs an engine is an ordinary avatar or video request (CompositionRequest.
scene_request), so its voice, avatar and video tasks are built by the same code as a single job's;
only their step results live under the scene's address (`avatar@2`), their voice step also writes
the speech's word timings (`words`, for captions) and none of them is watermarked: the compose step
marks the finished video once. A matte task gets the scene's picture (the render, or the upload)
and writes a person mask; the compose task gets every file by its role
(talkstack.contract.composition.scene_role) and asks for the outputs the compositor writes
(compose_output_names).
"""

from __future__ import annotations

import posixpath
from typing import Any, Protocol

from talkstack.contract.composition import (
    AvatarSource,
    ComposeOptions,
    ComposeScene,
    CompositionRequest,
    MatteOptions,
    MediaSource,
    canvas_size,
    compose_output_names,
    scene_role,
)
from talkstack.contract.fields import MediaRef
from talkstack.contract.request import AvatarRequest
from talkstack.contract.worker import InputUrl, ResultMarker, StepAddress
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.plan import matte_model
from talkstack.pipeline.step_results import step_result

WORDS_ROLE, WORDS_FILE = "words", "words.json"
"""The voice step of a scene writes its speech's word timings here (SpeechTimings JSON)."""


class Signer(Protocol):
    def get(self, bucket: str, key: str, filename: str) -> InputUrl: ...


def scene_render(request: CompositionRequest, job_id: str, store: Any, scene: int) -> ResultMarker | None:
    """What scene `scene`'s engine made (its avatar or video step's result); None without an engine."""
    scene_request = request.scene_request(scene)
    if scene_request is None:
        return None
    main = "avatar" if isinstance(scene_request, AvatarRequest) else "video"
    return step_result(store, job_id, StepAddress(step=main, scene=scene))


def _media(sign: Signer, ref: MediaRef, name: str) -> InputUrl:
    assert ref.bucket is not None  # resolved by the validate step
    return sign.get(ref.bucket, ref.key, name + posixpath.splitext(ref.key)[1].lower())


def matte_parts(
    request: CompositionRequest,
    address: StepAddress,
    job_id: str,
    config: PipelineConfig,
    store: Any,
    sign: Signer,
) -> tuple[MatteOptions, dict[str, InputUrl], dict[str, str]]:
    """(options, inputs, output names) of scene `address.scene`'s matte task: input `video` is the
    scene's render or its upload (an image for a still), `image` a lite avatar's photo (its
    background does not move, so the photo's mask can be moved with the head; docs/backgrounds.md)."""
    scene = address.scene
    assert scene is not None
    options = MatteOptions(model=matte_model(request, config), scene=scene)  # type: ignore[arg-type]
    inputs: dict[str, InputUrl] = {}
    render = scene_render(request, job_id, store, scene)
    source = request.scenes[scene].source
    if render is not None:
        inputs["video"] = sign.get(config.work_bucket, render.outputs["video"].key, "video.mp4")
    elif isinstance(source, MediaSource):
        inputs["video"] = _media(sign, source.media, "video")
    scene_request = request.scene_request(scene)
    lite_avatar = isinstance(scene_request, AvatarRequest) and scene_request.options.model == "lite-avatar"
    if isinstance(source, AvatarSource) and lite_avatar:  # as the offline render (offline_composition)
        inputs["image"] = _media(sign, source.inputs.image, "image")
    return options, inputs, {"mask": "mask.mp4"}


def compose_parts(
    request: CompositionRequest, job_id: str, config: PipelineConfig, store: Any, sign: Signer
) -> tuple[ComposeOptions, dict[str, InputUrl], dict[str, str]]:
    """(options, inputs, output names) of the compose task: every scene's render, upload, word
    timings, mask, background and music by role, and the composition's music as `music`."""
    inputs: dict[str, InputUrl] = {}
    scenes: list[ComposeScene] = []
    steps = {index: request.scene_steps(index) for index in range(len(request.scenes))}
    for index, scene in enumerate(request.scenes):
        render = scene_render(request, job_id, store, index)
        if render is not None:
            role = scene_role(index, "video")
            inputs[role] = sign.get(config.work_bucket, render.outputs["video"].key, f"{role}.mp4")
        if isinstance(scene.source, MediaSource):
            inputs[scene_role(index, "media")] = _media(sign, scene.source.media, scene_role(index, "media"))
        words = False
        if "voice" in steps[index]:
            voice = step_result(store, job_id, StepAddress(step="voice", scene=index))
            if WORDS_ROLE in voice.outputs:
                role = scene_role(index, "words")
                inputs[role] = sign.get(config.work_bucket, voice.outputs[WORDS_ROLE].key, f"{role}.json")
                words = True
        mask = "matte" in steps[index]
        if mask:
            matte = step_result(store, job_id, StepAddress(step="matte", scene=index))
            role = scene_role(index, "mask")
            inputs[role] = sign.get(config.work_bucket, matte.outputs["mask"].key, f"{role}.mp4")
        if scene.background.media is not None:
            role = scene_role(index, "background")
            inputs[role] = _media(sign, scene.background.media, role)
        if scene.music is not None:
            role = scene_role(index, "music")
            inputs[role] = _media(sign, scene.music.media, role)
        scenes.append(
            ComposeScene(
                scene=scene,
                rendered=render is not None,
                words=words,
                mask=mask,
                language=_language(request, index),
            )
        )
    if request.options.music is not None:
        inputs["music"] = _media(sign, request.options.music.media, "music")
    width, height = canvas_size(request.options.aspect, request.options.resolution, request.preview)
    options = ComposeOptions(
        scenes=scenes, options=request.options, preview=request.preview, width=width, height=height
    )
    return options, inputs, compose_output_names(options)


def _language(request: CompositionRequest, index: int) -> str:
    """The language of scene `index`'s speech, for its captions: what a text-driven avatar's voice
    speaks, else English (uploads and recorded speech declare none)."""
    scene_request = request.scene_request(index)
    if isinstance(scene_request, AvatarRequest) and scene_request.needs_voice_step:
        return scene_request.voice_step_options().language
    return "en"
