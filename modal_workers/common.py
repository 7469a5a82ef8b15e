"""What the Modal apps share: the worker base image, the weights volume, deploy-time settings.

Deploy-time settings (TALKSTACK_<FAMILY>_GPU, …) are `talkstack.settings.ModalDeploySettings`, read
from the environment of the machine running `modal deploy`, so switching an H100 for an A100-80GB
is configuration, not an edit.
Nothing here talks to Modal at import time: `modal.Image`, `modal.Volume.from_name` and
`modal.Secret.from_name` are lazy, so these files import without Modal credentials.
"""

from __future__ import annotations

import modal

PYTHON_VERSION = "3.11"

WEIGHTS_VOLUME = "talkstack-weights"
"""One Modal Volume holds every model's weights, one folder per repository (see weights.py)."""
WEIGHTS_DIR = "/weights"
HF_SECRET = "talkstack-huggingface"
"""Optional Modal secret with HF_TOKEN (gated repositories, higher rate limits) for weights.py."""

# What talkstack's worker side needs (protocol, runner, media helpers), pinned to the versions the
# test suite runs against. The engines add their own ML stacks on top.
WORKER_PACKAGES = [
    "pydantic==2.14.3",
    "pydantic-settings==2.16.3",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "pillow==13.0.0",
    "av==18.1.0",
    "ffmpeg-python==0.2.0",
    "imageio-ffmpeg==0.8.1",
    "soundfile==0.14.0",
    "soxr==1.1.0",
    "pyloudnorm==0.2.0",
    "filetype==1.2.0",
    "httpx==0.28.1",
    "tenacity==9.2.1",
    "huggingface_hub==2.4.0",
]

weights_volume = modal.Volume.from_name(WEIGHTS_VOLUME, create_if_missing=True)


def base_image(*apt: str) -> modal.Image:
    """Debian slim + ffmpeg + talkstack's worker dependencies (no talkstack source yet: add it last
    with `with_talkstack`, so editing the code never rebuilds the heavy layers)."""
    return (
        modal.Image.debian_slim(python_version=PYTHON_VERSION)
        .apt_install("ffmpeg", "git", *apt)
        .uv_pip_install(*WORKER_PACKAGES)
        .env(
            {
                "HF_HOME": f"{WEIGHTS_DIR}/hf",
                "HF_HUB_ENABLE_HF_TRANSFER": "0",
                "TOKENIZERS_PARALLELISM": "false",
            }
        )
    )


def with_talkstack(image: modal.Image) -> modal.Image:
    """The talkstack package (worker protocol + engines) and these app files, added at start-up."""
    return image.add_local_python_source("talkstack", "modal_workers")
