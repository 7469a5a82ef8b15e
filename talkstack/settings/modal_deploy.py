"""The "modal" group: deploy-time settings of the Modal apps in modal_workers/.

They are read from the environment of the machine running `modal deploy` (TALKSTACK_<FAMILY>_GPU, …),
so switching an H100 for an A100-80GB is configuration, not an edit. Each app module parses them once
when it is imported (which is once per `modal deploy`/`modal run`); there is deliberately no cached
getter, so a fresh import of an app sees the environment of that moment.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _yes(value: object) -> object:
    # Opt-in switch: only these words turn it on; anything else (including a typo) leaves it off.
    return value.strip().lower() in {"1", "true", "yes"} if isinstance(value, str) else value


class ModalDeploySettings(BaseSettings):
    """GPU types, memory, timeouts and warm pools of the GPU apps."""

    model_config = SettingsConfigDict(env_prefix="TALKSTACK_", frozen=True, use_attribute_docstrings=True)

    avatar_gpu: str = "H100"
    """GPU of the avatar app (MultiTalk/InfiniteTalk); ~80 GB of VRAM is needed (e.g. `A100-80GB`)."""
    avatar_memory_mb: int = 96 * 1024
    """Container RAM of the avatar app (the 14B model is staged in host memory while loading)."""
    avatar_scaledown_s: int = 10 * 60
    """Seconds an idle avatar container stays warm."""
    avatar_min_containers: int = Field(0, ge=0)
    """Avatar containers kept warm at all times (each is billed while it waits)."""
    video_gpu: str = "H100"
    """GPU of the video app (LTX-Video, Wan2.1 T2V)."""
    voice_gpu: str = "A10G"
    """GPU of the voice app (Chatterbox, F5-TTS)."""
    voice_timeout_s: int = 30 * 60
    """Timeout of one voice task, in seconds."""
    voice_scaledown_s: int = 5 * 60
    """Seconds an idle voice container stays warm."""
    hf_secret: Annotated[bool, BeforeValidator(_yes)] = False
    """`1` attaches the Modal secret `talkstack-huggingface` (HF_TOKEN) to the weights app."""
