"""Talking-avatar workers on Modal: MultiTalk and InfiniteTalk on Wan2.1-I2V-14B-480P.

    modal run -m modal_workers.weights --models multitalk,infinitetalk   # once: fill the volume
    modal deploy -m modal_workers.avatar                                 # GPU: TALKSTACK_AVATAR_GPU

The dispatch Lambda spawns `MultiTalk(turbo=…).run(task)` (or InfiniteTalk) with a worker task:
pre-signed URLs only, no AWS credentials (talkstack/contract/worker.py). `turbo` is a Modal class
parameter because the step-distillation LoRA is merged into the weights when the model loads: turbo
and full-quality jobs are served by separate warm containers instead of reloading 80 GB per job.

The official inference code is not a pip package: the image clones each repository at a pinned
commit and the engine imports it in process (talkstack/engines/gpu/avatar.py), so the model is
loaded once per container in `@modal.enter` rather than per job by a subprocess.
`Stitcher` (CPU) joins the chunks of long avatars rendered in parallel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import modal

from modal_workers.common import WEIGHTS_DIR, base_image, weights_volume, with_talkstack
from talkstack.settings import ModalDeploySettings

APP_NAME = "talkstack-avatar"

# Deploy-time settings (read where `modal deploy` runs; docs/settings.md, group "modal").
DEPLOY = ModalDeploySettings()
GPU = DEPLOY.avatar_gpu
"""480p fits one 80 GB GPU with the whole 14B model resident (~48 GB peak, MultiTalk README on
A100); 720p needs ~66 GB. A100-80GB works at about 1.5× the H100 time; 24–48 GB cards do not."""
MEMORY_MB = DEPLOY.avatar_memory_mb
"""Host RAM: the official loader materialises the DiT on the CPU first; 64 GB hosts were OOM-killed."""
TIMEOUT_S = 3 * 3600
"""Above the pipeline's longest avatar step (a minute of 720p speech without turbo), so the state
machine's heartbeat and timeout decide when a job has taken too long, not Modal."""
STARTUP_TIMEOUT_S = 30 * 60
"""A cold container reads ~90 GB from the volume and builds the pipeline before its first input."""
SCALEDOWN_S = DEPLOY.avatar_scaledown_s
"""Stay warm between jobs: a cold start costs minutes of GPU time."""
MIN_CONTAINERS = DEPLOY.avatar_min_containers

MULTITALK_REPO = ("https://github.com/MeiGen-AI/MultiTalk", "c1ad84009b99ed36c97ab18e4517ca5f98692438")
INFINITETALK_REPO = ("https://github.com/MeiGen-AI/InfiniteTalk", "0107cd96421b3b1bef7728bde14447dbff7b2db2")

# The official requirements (torch 2.4.1 + cu121, xformers 0.0.28, flash-attn 2.7.4.post1) with the
# pins public deployments found to work: diffusers 0.33 (xfuser breaks on newer), transformers 4.49.
TORCH_PACKAGES = ["torch==2.4.1", "torchvision==0.19.1", "torchaudio==2.4.1", "xformers==0.0.28"]
MODEL_PACKAGES = [
    "diffusers==0.33.1",
    "transformers==4.49.0",
    "tokenizers==0.21.0",
    "accelerate==1.1.1",
    "xfuser==0.4.1",
    "optimum-quanto==0.2.6",
    "einops==0.8.0",
    "easydict==1.13",
    "ftfy==6.3.1",
    "imageio==2.36.1",
    "imageio-ffmpeg==0.5.1",
    "scikit-image==0.24.0",
    "opencv-python-headless==4.10.0.84",
    "loguru==0.7.3",
    "librosa==0.10.2.post1",
    "numpy==1.26.4",  # the official code needs numpy < 2
    "misaki[en]==0.7.4",  # imported at the top of the generate scripts' modules
]


def _checkout(repo: tuple[str, str], path: str) -> list[str]:
    url, commit = repo
    return [
        f"git clone --filter=blob:none {url} {path}",
        f"git -C {path} checkout {commit}",
        # `from inspect import ArgSpec` (wan/multitalk.py) fails on Python ≥ 3.11 and is unused.
        f"sed -i '/from inspect import ArgSpec/d' {path}/wan/multitalk.py",
    ]


image = with_talkstack(
    base_image("build-essential", "ninja-build")
    .uv_pip_install(*TORCH_PACKAGES, extra_index_url="https://download.pytorch.org/whl/cu121")
    .uv_pip_install(*MODEL_PACKAGES)
    .uv_pip_install("flash-attn==2.7.4.post1", extra_options="--no-build-isolation")
    .run_commands(
        *_checkout(MULTITALK_REPO, "/opt/MultiTalk"), *_checkout(INFINITETALK_REPO, "/opt/InfiniteTalk")
    )
    .env({"MULTITALK_CODE_DIR": "/opt/MultiTalk", "INFINITETALK_CODE_DIR": "/opt/InfiniteTalk"})
)
stitch_image = with_talkstack(base_image())
app = modal.App(APP_NAME, image=image)

GPU_CLASS_OPTIONS: dict[str, Any] = {
    "gpu": GPU,
    "memory": MEMORY_MB,
    "volumes": {WEIGHTS_DIR: weights_volume},
    "timeout": TIMEOUT_S,
    "startup_timeout": STARTUP_TIMEOUT_S,
    "scaledown_window": SCALEDOWN_S,
    "min_containers": MIN_CONTAINERS,
}


class _AvatarWorker:
    """Shared body of the GPU classes: one engine (turbo or not) and one HTTP client per container."""

    model: str
    turbo: bool = modal.parameter(default=False)

    @modal.enter()
    def load(self) -> None:
        from talkstack.engines.gpu.avatar import AvatarEngine
        from talkstack.workers.runner import new_client

        self.engine = AvatarEngine(self.model, weights_dir=Path(WEIGHTS_DIR), turbo=self.turbo)
        self.engine.load()
        self.client = new_client()

    @modal.method()
    def run(self, task: dict[str, Any]) -> bool:
        """Run one worker task; True when a result marker was written (errors end as markers)."""
        from talkstack.workers.runner import run_task

        return run_task(task, self.client, step=self.engine)

    @modal.exit()
    def close(self) -> None:
        self.client.close()


@app.cls(**GPU_CLASS_OPTIONS)
class MultiTalk(_AvatarWorker):
    """multitalk: one or two speakers, up to 40 s per stream (the official cap)."""

    model = "multitalk"


@app.cls(**GPU_CLASS_OPTIONS)
class InfiniteTalk(_AvatarWorker):
    """infinitetalk: long-form single-speaker video (APG against colour drift past 15 s)."""

    model = "infinitetalk"


@app.cls(image=stitch_image, cpu=4, memory=8 * 1024, timeout=30 * 60, scaledown_window=60)
class Stitcher:
    """Joins the chunks of a parallel long avatar with crossfades in the pauses (CPU only)."""

    @modal.enter()
    def load(self) -> None:
        from talkstack.workers.runner import new_client

        self.client = new_client()

    @modal.method()
    def run(self, task: dict[str, Any]) -> bool:
        from talkstack.workers.runner import run_task

        return run_task(task, self.client)
