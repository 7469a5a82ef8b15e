"""The "modal" group: deploy-time settings of the Modal apps in modal_workers/.

They are read from the environment of the machine running `modal deploy` (TALKSTACK_<FAMILY>_GPU, …),
so switching an H100 for an A100-80GB is configuration, not an edit. Each app module parses them once
when it is imported (which is once per `modal deploy`/`modal run`), so a fresh import of an app sees
the environment of that moment.

The pipeline reads the timeouts too (`get_modal_deploy()`, cached): a step on Modal is planned, and
its pre-signed URLs expire, within the time its Modal class may run. Give the stack's Lambdas the
same `TALKSTACK_<FAMILY>_TIMEOUT_S` values as `modal deploy` if you change them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _yes(value: object) -> object:
    # Opt-in switch: only these words turn it on; anything else (including a typo) leaves it off.
    return value.strip().lower() in {"1", "true", "yes"} if isinstance(value, str) else value


WorkerFamily = Literal["avatar", "video", "voice", "stitch", "compose", "matte"]


class ModalDeploySettings(BaseSettings):
    """GPU types, memory, timeouts and warm pools of the GPU apps."""

    model_config = SettingsConfigDict(env_prefix="TALKSTACK_", frozen=True, use_attribute_docstrings=True)

    avatar_gpu: str = "H100"
    """GPU of the avatar app (MultiTalk/InfiniteTalk): `A100-80GB` works (slower); 24–48 GB cards do
    not hold the 14B model."""
    avatar_memory_mb: int = 96 * 1024
    """Host RAM of the MultiTalk class. Its loader peaks near 87 GB (81 GiB): the 18.9 B-parameter DiT
    (16.4 B Wan2.1-I2V-14B + 2.5 B audio adapter) in fp32, as its checkpoint stores it (76 GB), with the
    5.7 B-parameter umt5-xxl text encoder in bf16 (11 GB) on the CPU beside it; 64 GB hosts were
    OOM-killed while loading."""
    infinitetalk_memory_mb: int = 136 * 1024
    """Host RAM of the InfiniteTalk class. Its loader peaks near 125 GB (116 GiB): it builds the DiT in
    fp32 and casts it to bf16 (38 GB), then reads all seven fp32 base shards and the fp32 InfiniteTalk
    weights into one state dict (76 GB) while the bf16 text encoder (11 GB) sits on the CPU."""
    avatar_scaledown_s: int = 10 * 60
    """Seconds an idle avatar container stays warm."""
    avatar_min_containers: int = Field(0, ge=0)
    """Avatar containers kept warm at all times: 1 = no cold starts, billed around the clock."""
    avatar_max_containers: int = Field(4, ge=1)
    """Most GPU containers each avatar class (MultiTalk, InfiniteTalk) may run at once: a burst of
    jobs or parallel chunks queues in Modal beyond it instead of starting unbounded GPUs."""
    avatar_timeout_s: int = Field(3 * 3600, gt=0)
    """Modal timeout of one avatar task, in seconds (the pipeline plans avatar steps within it)."""
    stitch_max_containers: int = Field(8, ge=1)
    """Most CPU containers of the avatar app's Stitcher (joins parallel chunks) at once."""
    stitch_timeout_s: int = Field(30 * 60, gt=0)
    """Modal timeout of one stitch task, in seconds."""
    compose_max_containers: int = Field(8, ge=1)
    """Most CPU containers of the compose app's Composer (assembles compositions) at once."""
    compose_timeout_s: int = Field(30 * 60, gt=0)
    """Modal timeout of one compose task, in seconds."""
    video_gpu: str = "H100"
    """GPU of the video app (LTX-Video, Wan2.2-TI2V-5B): both fit one 80 GB GPU in bf16."""
    video_max_containers: int = Field(2, ge=1)
    """Most GPU containers each video class may run at once."""
    video_timeout_s: int = Field(90 * 60, gt=0)
    """Modal timeout of one video task, in seconds."""
    voice_gpu: str = "A10G"
    """GPU of the voice app (Chatterbox, IndexTTS-2): both fit 24 GB (an estimate)."""
    voice_timeout_s: int = Field(30 * 60, gt=0)
    """Modal timeout of one voice task, in seconds."""
    voice_max_containers: int = Field(4, ge=1)
    """Most GPU containers each voice class (Chatterbox, IndexTTS-2) may run at once."""
    voice_scaledown_s: int = 5 * 60
    """Seconds an idle voice container stays warm."""
    matte_gpu: str = "L4"
    """GPU of the matte app's ViTMatte class (person mattes for compositions): the small model needs
    a few GB; any Modal GPU runs it."""
    matte_timeout_s: int = Field(30 * 60, gt=0)
    """Modal timeout of one matte task (ViTMatte on a GPU, or lite-matte on CPUs), in seconds."""
    matte_max_containers: int = Field(4, ge=1)
    """Most containers each matte class (ViTMatte, LiteMatte) may run at once."""
    hf_secret: Annotated[bool, BeforeValidator(_yes)] = False
    """`1` attaches the Modal secret `talkstack-huggingface` (HF_TOKEN) to the weights app."""

    @model_validator(mode="after")
    def _warm_pool_fits_the_cap(self) -> ModalDeploySettings:
        if self.avatar_min_containers > self.avatar_max_containers:
            raise ValueError("TALKSTACK_AVATAR_MIN_CONTAINERS is above TALKSTACK_AVATAR_MAX_CONTAINERS")
        return self

    def max_containers(self, family: WorkerFamily) -> int:
        """How many containers of the family's Modal class may run at once (for every tenant)."""
        return {
            "avatar": self.avatar_max_containers,
            "video": self.video_max_containers,
            "voice": self.voice_max_containers,
            "stitch": self.stitch_max_containers,
            "compose": self.compose_max_containers,
            "matte": self.matte_max_containers,
        }[family]

    def timeout_s(self, family: WorkerFamily) -> int:
        """How long the family's Modal class may run one task before Modal stops it."""
        return {
            "avatar": self.avatar_timeout_s,
            "video": self.video_timeout_s,
            "voice": self.voice_timeout_s,
            "stitch": self.stitch_timeout_s,
            "compose": self.compose_timeout_s,
            "matte": self.matte_timeout_s,
        }[family]


@lru_cache(maxsize=1)
def get_modal_deploy() -> ModalDeploySettings:
    """The pipeline's copy, parsed once per process (the Modal apps parse their own at import)."""
    return ModalDeploySettings()
