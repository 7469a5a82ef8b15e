"""Validating a composition (the validate step's part for `task: "composition"`).

A composition's media sit inside its scenes, at dotted paths (`scenes.2.source.media`); refusals
name them as a client writes them (`scenes[2].source.media`). Each scene with an engine is checked
as the avatar or video job it runs as (its model and voice model, its script's length); the matte
model must run on this stack; each file must be the kind its place takes: a media scene an image or
a video, an image or video background that, music audio, an avatar's photo an image. The kind is
the object's Content-Type where S3 has a media one (an API upload always has), else its extension.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from posixpath import splitext

from talkstack.contract.composition import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    AvatarSource,
    CompositionRequest,
    VideoSource,
)
from talkstack.contract.fields import client_field
from talkstack.contract.request import AvatarRequest, JobRequestBase
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.plan import matte_model
from talkstack.settings import MediaLimits

AUDIO_EXTENSIONS = (".wav", ".mp3", ".m4a", ".aac", ".ogg", ".flac", ".opus")
Kind = str  # "image" | "video" | "audio"
_WHAT = {
    "image": "an image (.png, .jpg, .webp)",
    "video": "a video (.mp4, .mov, .webm)",
    "audio": "audio (.wav, .mp3, .m4a, .ogg, .flac)",
}


def media_kind(key: str, content_type: str) -> Kind | None:
    """What an object is: its Content-Type's major type where that is a media one, else by extension."""
    major = content_type.split("/", 1)[0].strip().lower()
    if major in ("image", "video", "audio"):
        return major
    extension = splitext(key.lower())[1]
    for kind, extensions in (
        ("image", IMAGE_EXTENSIONS),
        ("video", VIDEO_EXTENSIONS),
        ("audio", AUDIO_EXTENSIONS),
    ):
        if extension in extensions:
            return kind
    return None


def expected_kinds(request: CompositionRequest, path: str) -> tuple[Kind, ...] | None:
    """The kinds the file at `path` may be (None: any; the consent clip is checked by consent)."""
    parts = path.split(".")
    if parts[0] == "options" and parts[1] == "music":
        return ("audio",)
    if parts[0] != "scenes":
        return None
    scene = request.scenes[int(parts[1])]
    rest = ".".join(parts[2:])
    if rest == "source.media":
        return ("image", "video")
    if rest == "background.media":
        return (scene.background.type,)  # "image" | "video" (colour backgrounds take no media)
    if rest == "music.media":
        return ("audio",)
    if rest == "source.inputs.image":
        return ("image",)
    if rest in ("source.inputs.audio", "source.inputs.reference_voice"):
        return ("audio", "video")  # the sound of a video file is read as well
    return None


def check_scene_media(request: CompositionRequest, path: str, shown: str, content_type: str) -> None:
    """INVALID_REQUEST naming the scene's field when the file is not the kind its place takes."""
    kinds = expected_kinds(request, path)
    if kinds is None:
        return
    ref = request.referenced_media()[path]
    kind = media_kind(ref.key, content_type)
    if kind in kinds:
        return
    field = client_field(path)
    found = f"{content_type or 'of no media type'}" if kind is None else f"{kind} ({content_type or ref.key})"
    wanted = " or ".join(_WHAT[k] for k in kinds)
    raise TalkstackError(
        ErrorCode.INVALID_REQUEST,
        f"{field}: {shown} is {found}; it must be {wanted}",
        field=field,
    )


def media_limit(request: CompositionRequest, path: str, limits: MediaLimits) -> tuple[int, ErrorCode]:
    """Images are held to the image limit, every other file (video, audio) to the media limit."""
    kinds = expected_kinds(request, path)
    if kinds == ("image",):
        return limits.max_image_bytes, ErrorCode.IMAGE_TOO_LARGE
    return limits.max_audio_bytes, ErrorCode.INPUT_TOO_LARGE


ModelCheck = Callable[[str, str, PipelineConfig, str], None]


def check_composition(
    request: CompositionRequest, config: PipelineConfig, limits: MediaLimits, check_model: ModelCheck
) -> None:
    """Each engine scene's models (as its own job would be checked), its script's length, and the
    matte model (checked the same way) when a scene cuts its person out."""
    for index in range(len(request.scenes)):
        scene_request = request.scene_request(index)
        if scene_request is None:
            continue
        at = f"scenes[{index}].source"
        check_model(scene_request.primary_model, scene_request.task, config, f"{at}.options.model")
        if isinstance(scene_request, AvatarRequest) and scene_request.needs_voice_step:
            check_model(
                scene_request.voice_step_options().model, "voice", config, f"{at}.options.voice.model"
            )
            text = scene_request.inputs.text or ""
            if len(text) > limits.max_text_chars:
                raise TalkstackError(
                    ErrorCode.TEXT_TOO_LONG,
                    f"{at}.inputs.text: {len(text)} characters; the limit is {limits.max_text_chars}",
                    chars=len(text),
                )
    if any(scene.cutout for scene in request.scenes):
        # The matte model is checked as any job's model is: its backend must run it here (a GPU
        # model needs Modal and its token; a preview always cuts out with lite-matte).
        check_model(matte_model(request, config), "matte", config, "options.matte_model")


def with_scene_default_models(request: CompositionRequest, defaults: Mapping[str, str]) -> JobRequestBase:
    """The deployment's default models (TALKSTACK_DEFAULT_MODELS) in every avatar and clip scene
    that names none (and in a text-driven avatar scene's voice), as an avatar or video job gets them."""
    data = request.model_dump(mode="json", exclude_unset=True)
    changed = False
    for scene, model in zip(data["scenes"], request.scenes, strict=True):
        source = model.source
        if not isinstance(source, AvatarSource | VideoSource):
            continue
        options = scene["source"].setdefault("options", {})
        if "model" not in options and source.type in defaults:
            options["model"], changed = defaults[source.type], True
        if isinstance(source, AvatarSource) and source.inputs.text is not None and "voice" in defaults:
            voice = options.get("voice") or {}
            if "model" not in voice:
                options["voice"] = {**voice, "model": defaults["voice"]}
                changed = True
    return CompositionRequest.model_validate(data) if changed else request
