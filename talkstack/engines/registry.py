"""Model ids → what they are, which engine renders them, where that engine is deployed, their licence.

Lite engines run on CPU in the local worker pool. GPU engines (talkstack.engines.gpu) run in the
Modal apps of `modal_workers/` (the dispatch step looks them up by `modal_app` / `modal_class`), or
in the local pool when it is given the engine (a local GPU; tiny models in tests)."""

from __future__ import annotations

import shutil
from importlib.util import find_spec
from typing import Literal

from pydantic import BaseModel, ConfigDict

from talkstack.errors import ErrorCode, TalkstackError
from talkstack.settings import get_settings

Task = Literal["avatar", "voice", "video", "matte"]
"""What a model does; `matte` models cut people out of their background for compositions."""
Backend = Literal["lite", "modal"]
"""Where a model runs — the one vocabulary of `talkstack models`, `talkstack api models` and
GET /v1/models: `lite` = a CPU lite engine (in process, or the local stack's workers); `modal` = a GPU
engine on Modal. Which worker backend a stack dispatches a model's tasks to (TALKSTACK_WORKER_BACKEND,
`local` or `modal`) is the stack's configuration, not the model's."""


class ModelInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    task: Task
    backend: Backend
    description: str
    licence: str
    gpu: bool
    engine: str | None = None
    """GPU engine class as `module:Class` (lite models run talkstack.workers.lite_steps)."""
    modal_app: str | None = None
    modal_class: str | None = None
    """Where `modal deploy -m modal_workers.<family>` puts the engine (None: not on Modal)."""
    available: bool = False
    unavailable_reason: str | None = None


_MODAL_ONLY = (
    "a GPU model: runs on the modal worker backend (docs/gpu-workers.md), not in this CPU-only process"
)
_AVATAR = "talkstack.engines.gpu.avatar:AvatarEngine"
_VOICE = "talkstack.engines.gpu.voice:VoiceEngine"
_VIDEO = "talkstack.engines.gpu.video:VideoEngine"
_MATTE = "talkstack.engines.gpu.matte:MatteEngine"

_CATALOGUE: list[ModelInfo] = [
    ModelInfo(
        id="lite-avatar",
        task="avatar",
        backend="lite",
        gpu=False,
        description="CPU talking head from one photo: MediaPipe face landmarks, audio-driven jaw and lips, "
        "blinks and small head motion. Fast and download-free; no per-phoneme mouth shapes.",
        licence="Apache-2.0 (MediaPipe face_landmarker.task: Apache-2.0)",
    ),
    ModelInfo(
        id="lite-voice",
        task="voice",
        backend="lite",
        gpu=False,
        description="Formant speech synthesis with espeak-ng (robotic). NOT a voice clone: a reference "
        "voice is ignored. For previews, tests and local runs.",
        licence="espeak-ng GPL-3.0-or-later, run as a separate program; generated audio is unrestricted",
    ),
    ModelInfo(
        id="multitalk",
        task="avatar",
        backend="modal",
        gpu=True,
        engine=_AVATAR,
        modal_app="talkstack-avatar",
        modal_class="MultiTalk",
        description="MeiGen MultiTalk on Wan2.1-I2V-14B-480P: audio-driven talking video, "
        "one or two speakers.",
        licence="Apache-2.0 (MultiTalk, Wan2.1)",
    ),
    ModelInfo(
        id="infinitetalk",
        task="avatar",
        backend="modal",
        gpu=True,
        engine=_AVATAR,
        modal_app="talkstack-avatar",
        modal_class="InfiniteTalk",
        description="MeiGen InfiniteTalk on Wan2.1-I2V-14B-480P: long-form talking video and dubbing.",
        licence="Apache-2.0 (InfiniteTalk, Wan2.1)",
    ),
    ModelInfo(
        id="chatterbox",
        task="voice",
        backend="modal",
        gpu=True,
        engine=_VOICE,
        modal_app="talkstack-voice",
        modal_class="Chatterbox",
        description="Resemble AI Chatterbox: zero-shot voice cloning from a 5-60 s reference, "
        "emotion control.",
        licence="MIT (output carries Resemble's inaudible watermark)",
    ),
    ModelInfo(
        id="indextts2",
        task="voice",
        backend="modal",
        gpu=True,
        engine=_VOICE,
        modal_app="talkstack-voice",
        modal_class="IndexTTS2",
        description="IndexTTS-2: voice cloning from a reference voice (required), emotion by label or "
        "description; Chinese and English.",
        licence="bilibili Model Use License (royalty-free below 100 M MAU / RMB 1 bn revenue; outputs may "
        "not train other models); its MaskGCT codec is CC-BY-NC-4.0",
    ),
    ModelInfo(
        id="ltx-video",
        task="video",
        backend="modal",
        gpu=True,
        engine=_VIDEO,
        modal_app="talkstack-video",
        modal_class="LTXVideo",
        description="Lightricks LTX-Video through diffusers: fast text/image-to-video.",
        licence="LTX-Video open-weights licence of the chosen revision (check before commercial use)",
    ),
    ModelInfo(
        id="wan2.2-ti2v-5b",
        task="video",
        backend="modal",
        gpu=True,
        engine=_VIDEO,
        modal_app="talkstack-video",
        modal_class="Wan22TI2V",
        description="Wan2.2-TI2V-5B through diffusers: 720p text/image-to-video at 24 fps.",
        licence="Apache-2.0",
    ),
    ModelInfo(
        id="lite-matte",
        task="matte",
        backend="lite",
        gpu=False,
        modal_app="talkstack-matte",
        modal_class="LiteMatte",
        description="CPU person mask for compositions: MediaPipe selfie segmentation refined with a guided "
        "filter, the face always inside, smoothed over time; a lite avatar reuses its photo's mask.",
        licence="Apache-2.0 (MediaPipe selfie_segmentation.tflite and face_landmarker.task: Apache-2.0)",
    ),
    ModelInfo(
        id="vitmatte",
        task="matte",
        backend="modal",
        gpu=True,
        engine=_MATTE,
        modal_app="talkstack-matte",
        modal_class="ViTMatte",
        description="GPU person matte for compositions: ViTMatte (small, Composition-1k) refines the "
        "edge band of lite-matte's mask, hair and soft edges included.",
        licence="Apache-2.0 (hustvl/vitmatte-small-composition-1k; its training images are research-only)",
    ),
]


def _unavailable_reason(model: ModelInfo) -> str | None:
    if model.backend == "modal":
        return _MODAL_ONLY
    if model.id in ("lite-avatar", "lite-matte") and find_spec("mediapipe") is None:
        return "mediapipe is not installed: pip install --no-deps 'mediapipe==1.2.2'"
    if model.id == "lite-voice" and shutil.which(get_settings().espeak) is None:
        return "espeak-ng is not installed: apt-get install espeak-ng (or brew/dnf install espeak-ng)"
    return None


def list_models() -> list[ModelInfo]:
    """The catalogue, with availability checked now (programs can be installed while we run)."""
    models = []
    for model in _CATALOGUE:
        reason = _unavailable_reason(model)
        models.append(model.model_copy(update={"available": reason is None, "unavailable_reason": reason}))
    return models


def get_model(model_id: str) -> ModelInfo:
    for model in list_models():
        if model.id == model_id:
            return model
    known = ", ".join(m.id for m in _CATALOGUE)
    raise TalkstackError(ErrorCode.MODEL_UNAVAILABLE, f"unknown model {model_id!r}; known models: {known}")


STITCH_MODEL = "stitch"
"""Pseudo-model of the step that joins the chunks of a parallel long avatar (CPU, any backend)."""
COMPOSE_MODEL = "compose"
"""Pseudo-model of the step that assembles a composition from its scenes (CPU, any backend)."""
PSEUDO_MODELS = (STITCH_MODEL, COMPOSE_MODEL)
"""Step models that are not engines in the catalogue (talkstack/workers/lite_steps.py runs both)."""


def modal_target(model_id: str) -> tuple[str, str]:
    """(Modal app name, class name) serving `model_id`."""
    if model_id == STITCH_MODEL:
        return "talkstack-avatar", "Stitcher"
    if model_id == COMPOSE_MODEL:
        return "talkstack-compose", "Composer"
    model = get_model(model_id)
    if model.modal_app is None or model.modal_class is None:
        raise TalkstackError(
            ErrorCode.MODEL_UNAVAILABLE, f"{model_id} has no Modal worker; it runs on the local backend"
        )
    return model.modal_app, model.modal_class


def modal_parameters(model_id: str, options: object) -> dict[str, bool]:
    """Class parameters of the model's Modal class for these options: avatar containers are loaded
    with or without the turbo LoRA (it is merged into the weights), so turbo picks the container."""
    if model_id in ("multitalk", "infinitetalk"):
        return {"turbo": bool(getattr(options, "turbo", False))}
    return {}
