"""The "engines" group: what the engines and the worker runtime read (tools, weights, debugging).

The GPU engines run in Modal containers and on local GPU boxes; the container images set the code
directories below, a local box points them (and the weights directory) at its own copies.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _non_empty(value: object) -> object:
    # TALKSTACK_DEBUG has always meant "set to anything": keep that rather than pydantic's bool words.
    return bool(value) if isinstance(value, str) else value


class Settings(BaseSettings):
    """Engine and worker-runtime settings (the class keeps its original name: it is imported widely)."""

    model_config = SettingsConfigDict(env_prefix="TALKSTACK_", frozen=True, use_attribute_docstrings=True)

    ffmpeg: Path | None = None
    """The ffmpeg binary; by default the one bundled with imageio-ffmpeg is used."""
    espeak: str = "espeak-ng"
    """The espeak-ng binary the lite voice engine speaks with."""
    debug: Annotated[bool, BeforeValidator(_non_empty)] = False
    """Any non-empty value: show tracebacks of internal CLI errors, and MediaPipe's native log lines
    (silenced otherwise)."""
    weights_dir: Path = Path("/weights")
    """Where the GPU engines find model weights: Modal mounts the weights volume here; a local GPU box
    points it at its copy."""
    multitalk_code_dir: Path = Field(Path("/opt/MultiTalk"), validation_alias="MULTITALK_CODE_DIR")
    """Checkout of the official MultiTalk code (the Modal avatar image has it here)."""
    infinitetalk_code_dir: Path = Field(Path("/opt/InfiniteTalk"), validation_alias="INFINITETALK_CODE_DIR")
    """Checkout of the official InfiniteTalk code (the Modal avatar image has it here)."""
    hf_token: SecretStr | None = Field(None, validation_alias="HF_TOKEN")
    """Hugging Face token for the weights downloader (only lifts the anonymous rate limit; on Modal it
    comes from the optional `talkstack-huggingface` secret)."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
