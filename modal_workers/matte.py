"""Person mattes for compositions on Modal: ViTMatte on a GPU, lite-matte on CPUs.

    modal deploy -m modal_workers.matte     # deploy the app (GPU from TALKSTACK_MATTE_GPU, default L4)
    modal run -m modal_workers.matte        # check that the weights volume holds ViTMatte

The dispatch Lambda spawns `ViTMatte().run` (model `vitmatte`) or `LiteMatte().run` (model
`lite-matte`, CPU only, so a deployed stack runs compositions with cut-outs without any GPU) with a
matte worker task: pre-signed URLs only (talkstack/contract/worker.py). The worker downloads the
scene's video (and a lite avatar's photo), writes the mask video (a grey MP4, white = person) and a
result or error marker.

ViTMatte's weights come from the shared weights volume (`modal run -m modal_workers.weights --models
vitmatte`); the trimap under it is lite-matte's mask, made with MediaPipe on the container's CPUs.
All ML imports live in talkstack.engines, inside the container: this file imports anywhere, without
Modal credentials or a GPU.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import modal

from modal_workers.common import (
    WEIGHTS_DIR,
    WEIGHTS_VOLUME,
    base_image,
    weights_volume,
    with_quality_tools,
    with_talkstack,
)
from talkstack.settings import ModalDeploySettings

APP_NAME = "talkstack-matte"

DEPLOY = ModalDeploySettings()
GPU = DEPLOY.matte_gpu
TIMEOUT_S = DEPLOY.matte_timeout_s
MAX_CONTAINERS = DEPLOY.matte_max_containers
SCALEDOWN_S = 2 * 60
"""The model loads in seconds: no reason to keep a GPU warm for long."""

MATTE_PACKAGES = ["opencv-python-headless==5.1.0.95", "librosa==0.11.0"]
"""Both classes: the guided filter, trimaps and resizing (cv2); librosa because the worker runtime's
media modules import it (talkstack.media.quality), as on the stitcher. The test suite's versions."""
VITMATTE_PACKAGES = [
    "torch==2.13.0",
    "transformers==5.23.0",
    "safetensors==0.8.0",
]
"""The GPU class's ML stack, pinned like the video app's (VitMatteForImageMatting is native in
transformers: no remote code)."""

# MediaPipe (selfie segmentation + face landmarks) comes with the quality tools, installed --no-deps.
cpu_image = with_talkstack(with_quality_tools(base_image().uv_pip_install(*MATTE_PACKAGES)))
gpu_image = with_talkstack(
    with_quality_tools(base_image().uv_pip_install(*MATTE_PACKAGES)).uv_pip_install(*VITMATTE_PACKAGES)
)
app = modal.App(APP_NAME, image=cpu_image)


@app.cls(
    image=gpu_image,
    gpu=GPU,
    volumes={WEIGHTS_DIR: weights_volume},
    timeout=TIMEOUT_S,
    scaledown_window=SCALEDOWN_S,
    max_containers=MAX_CONTAINERS,
)
class ViTMatte:
    """vitmatte: ViTMatte refines the edge band of lite-matte's mask on a GPU."""

    model = "vitmatte"

    @modal.enter()
    def load(self) -> None:
        from talkstack.engines.gpu.matte import MatteEngine
        from talkstack.workers.runner import new_client

        started = time.perf_counter()
        self.engine = MatteEngine(self.model, weights_dir=Path(WEIGHTS_DIR))
        self.engine.load()
        self.load_s = time.perf_counter() - started
        self.client = new_client()

    @modal.method()
    def run(self, task: dict[str, Any]) -> bool:
        """Run one worker task; True when a result marker was written (errors end as markers)."""
        from talkstack.workers.runner import run_task

        return run_task(task, self.client, step=self.engine)

    @modal.exit()
    def close(self) -> None:
        self.client.close()


@app.cls(
    cpu=4,
    memory=4 * 1024,
    timeout=TIMEOUT_S,
    scaledown_window=60,
    max_containers=MAX_CONTAINERS,
)
class LiteMatte:
    """lite-matte on CPUs: MediaPipe selfie segmentation, guided filter, temporal smoothing."""

    model = "lite-matte"

    @modal.enter()
    def load(self) -> None:
        from talkstack.workers.lite_steps import LITE_STEPS
        from talkstack.workers.runner import new_client

        self.engine = LITE_STEPS[self.model]
        self.client = new_client()

    @modal.method()
    def run(self, task: dict[str, Any]) -> bool:
        from talkstack.workers.runner import run_task

        return run_task(task, self.client, step=self.engine)

    @modal.exit()
    def close(self) -> None:
        self.client.close()


@app.local_entrypoint()
def main() -> None:
    """Check that the weights volume holds what the ViTMatte class loads."""
    from talkstack.engines.gpu.weights import paths_for

    folder = paths_for("vitmatte", "").get("model")
    subdir = str(folder).lstrip("/")
    try:
        names = {Path(entry.path).name for entry in weights_volume.listdir(subdir)}
    except Exception:  # a missing folder raises (NotFoundError / grpc error, by client version)
        names = set()
    state = (
        "ready"
        if "config.json" in names
        else "MISSING (modal run -m modal_workers.weights --models vitmatte)"
    )
    print(f"app {APP_NAME}: GPU {GPU}, volume {WEIGHTS_VOLUME} mounted at {WEIGHTS_DIR}")
    print(f"  ViTMatte   vitmatte   {WEIGHTS_DIR}/{subdir}: {state}")
