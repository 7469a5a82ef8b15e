"""Talking-avatar workers on Modal: MultiTalk and InfiniteTalk on Wan2.1-I2V-14B-480P.

    modal run -m modal_workers.weights --models multitalk,infinitetalk   # once: fill the volume
    modal deploy -m modal_workers.avatar                                 # GPU: TALKSTACK_AVATAR_GPU

    modal run -m modal_workers.avatar --image photo.png --audio speech.wav [--model infinitetalk] [--turbo]
                                                                         # smoke: 3 s + 6 s clips

The dispatch Lambda spawns `MultiTalk(turbo=…).run(task)` (or InfiniteTalk) with a worker task:
pre-signed URLs only, no AWS credentials (talkstack/contract/worker.py). `turbo` is a Modal class
parameter because the step-distillation LoRA is merged into the weights when the model loads: turbo
and full-quality jobs are served by separate warm containers instead of reloading 80 GB per job.

The official inference code is not a pip package: the image clones each repository at a pinned
commit and the engine imports it in process (talkstack/engines/gpu/avatar.py), so the model is
loaded once per container in `@modal.enter` rather than per job by a subprocess.
`Stitcher` (CPU) joins the chunks of long avatars rendered in parallel.
"""

# No `from __future__ import annotations` here: Modal reads a class parameter's type from the class's
# annotations without evaluating them, and refuses the string "bool" (modal/_type_manager.py).
import time
from pathlib import Path
from typing import Any

import modal

from modal_workers.common import (
    SMOKE_CLIPS_S,
    WEIGHTS_DIR,
    SmokeRender,
    base_image,
    render_locally,
    weights_volume,
    with_quality_tools,
    with_talkstack,
    write_smoke_report,
)
from talkstack.settings import ModalDeploySettings

APP_NAME = "talkstack-avatar"

# Deploy-time settings (read where `modal deploy` runs; docs/settings.md, group "modal").
DEPLOY = ModalDeploySettings()
GPU = DEPLOY.avatar_gpu
"""480p fits one 80 GB GPU with the whole 14B model resident (~48 GB peak, MultiTalk README on
A100); 720p needs ~66 GB. A100-80GB works at about 1.5× the H100 time; 24–48 GB cards do not."""
MEMORY_MB = {"multitalk": DEPLOY.avatar_memory_mb, "infinitetalk": DEPLOY.infinitetalk_memory_mb}
"""Host RAM per class, above the official loaders' peaks (the arithmetic is in
talkstack/settings/modal_deploy.py; tests/unit/test_modal_avatar_app.py recomputes it): MultiTalk
≈ 87 GB, InfiniteTalk ≈ 125 GB (it builds the DiT in fp32 and holds every fp32 shard at once)."""
TIMEOUT_S = DEPLOY.avatar_timeout_s
"""3 h by default. The pipeline reads the same setting: it plans every avatar step on Modal within
it (its timeout and pre-signed URLs never outlive it) and refuses a declared length that cannot fit
(talkstack/pipeline/plan.py)."""
STARTUP_TIMEOUT_S = 30 * 60
"""A cold container reads ~90 GB from the volume and builds the pipeline before its first input."""
SCALEDOWN_S = DEPLOY.avatar_scaledown_s
"""Stay warm between jobs: a cold start costs minutes of GPU time."""
MIN_CONTAINERS = DEPLOY.avatar_min_containers
MAX_CONTAINERS = DEPLOY.avatar_max_containers
"""Per class: a burst (many jobs, or one long parallel avatar's chunks) queues in Modal beyond it."""

MULTITALK_REPO = ("https://github.com/MeiGen-AI/MultiTalk", "c1ad84009b99ed36c97ab18e4517ca5f98692438")
INFINITETALK_REPO = ("https://github.com/MeiGen-AI/InfiniteTalk", "0107cd96421b3b1bef7728bde14447dbff7b2db2")

# The official requirements (torch 2.4.1 + cu121, xformers 0.0.28, flash-attn 2.7.4.post1) with the
# pins public deployments found to work: diffusers 0.33 (xfuser breaks on newer), transformers 4.49.
# What the upstream `wan` package imports when the engine imports it is in upstream_imports.json
# (scripts/upstream_imports.py); UPSTREAM_IMPORT_PROVIDERS below says which package provides each.
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
    # InfiniteTalk's wan/utils/utils.py imports decord at import time (a py3-none manylinux wheel).
    "decord==0.6.0",
    # misaki (kokoro's phonemiser) is not here: only the generate scripts import kokoro, never `wan`.
]

# flash-attn publishes only an sdist on PyPI; its setup.py picks the prebuilt wheel matching the
# installed torch/CUDA/Python from its GitHub release and builds from source only if there is none.
# With --no-build-isolation that setup.py runs in the image's own Python, so what it imports must be
# there first: `packaging`, `wheel.bdist_wheel` (current `wheel` defers it to setuptools ≥ 70.1's own
# bdist_wheel; python:3.11-slim ships setuptools 65), and psutil + ninja for a source build.
FLASH_ATTN_BUILD_PACKAGES = [
    "setuptools==80.9.0",
    "wheel==0.48.0",
    "packaging==26.4",
    "ninja==1.13.2",
    "psutil==7.2.2",
]
FLASH_ATTN = "flash-attn==2.7.4.post1"

# xfuser 0.4.1 requires `opencv-python` (its METADATA: Requires-Dist: opencv-python), which links
# libGL and glib; it shares the `cv2` folder with the headless build above, so whichever is unpacked
# last is the `cv2` that imports. The libraries make either one load.
APT_PACKAGES = ["build-essential", "ninja-build", "libgl1", "libglib2.0-0"]

UPSTREAM_IMPORT_PROVIDERS: dict[str, str] = {
    # import name → the package of this image (or common.WORKER_PACKAGES) that provides it; where it
    # is a dependency rather than a pin, the pinned package that requires it.
    "torch": "torch",
    "torchvision": "torchvision",
    "xformers": "xformers",
    "accelerate": "accelerate",
    "diffusers": "diffusers",
    "transformers": "transformers",
    "xfuser": "xfuser",
    "optimum": "optimum-quanto",
    "einops": "einops",
    "easydict": "easydict",
    "ftfy": "ftfy",
    "imageio": "imageio",
    "skimage": "scikit-image",
    "cv2": "opencv-python-headless",
    "loguru": "loguru",
    "librosa": "librosa",
    "numpy": "numpy",
    "decord": "decord",
    "PIL": "pillow",
    "scipy": "scipy",
    "soundfile": "soundfile",
    "safetensors": "transformers",
    "regex": "transformers",
    "tqdm": "transformers",
    "flash_attn": "flash-attn",
}


def _checkout(repo: tuple[str, str], path: str) -> list[str]:
    url, commit = repo
    return [
        f"git clone --filter=blob:none {url} {path}",
        f"git -C {path} checkout {commit}",
        # `from inspect import ArgSpec` (wan/multitalk.py) fails on Python ≥ 3.11 and is unused.
        f"sed -i '/from inspect import ArgSpec/d' {path}/wan/multitalk.py",
    ]


image = with_talkstack(
    with_quality_tools(base_image(*APT_PACKAGES))
    .uv_pip_install(*TORCH_PACKAGES, extra_index_url="https://download.pytorch.org/whl/cu121")
    .uv_pip_install(*MODEL_PACKAGES)
    .uv_pip_install(*FLASH_ATTN_BUILD_PACKAGES)
    .uv_pip_install(FLASH_ATTN, extra_options="--no-build-isolation")
    .run_commands(
        *_checkout(MULTITALK_REPO, "/opt/MultiTalk"), *_checkout(INFINITETALK_REPO, "/opt/InfiniteTalk")
    )
    .env({"MULTITALK_CODE_DIR": "/opt/MultiTalk", "INFINITETALK_CODE_DIR": "/opt/InfiniteTalk"})
)
STITCH_PACKAGES = ["opencv-python-headless==5.1.0.95", "librosa==0.11.0"]
"""The stitcher colour-matches chunks (cv2's Lab conversion) and measures the joined video's quality
report (librosa's speech envelope): the test suite's versions, on the worker image's numpy 2."""
stitch_image = with_talkstack(with_quality_tools(base_image().uv_pip_install(*STITCH_PACKAGES)))
app = modal.App(APP_NAME, image=image)


def gpu_class_options(model: str) -> dict[str, Any]:
    return {
        "gpu": GPU,
        "memory": MEMORY_MB[model],
        "volumes": {WEIGHTS_DIR: weights_volume},
        "timeout": TIMEOUT_S,
        "startup_timeout": STARTUP_TIMEOUT_S,
        "scaledown_window": SCALEDOWN_S,
        "min_containers": MIN_CONTAINERS,
        "max_containers": MAX_CONTAINERS,
    }


class _AvatarWorker:
    """Shared body of the GPU classes: one engine (turbo or not) and one HTTP client per container.

    Each decorated class declares `turbo` itself: Modal builds a class's constructor from the
    `modal.parameter()`s in that class's own `__dict__` (modal/cls.py `_use_annotation_parameters`),
    so one declared here, on the undecorated base, is not a parameter and `MultiTalk(turbo=True)`
    fails in the container."""

    model: str
    turbo: bool

    @modal.enter()
    def load(self) -> None:
        from talkstack.engines.gpu.avatar import AvatarEngine
        from talkstack.workers.runner import new_client

        started = time.perf_counter()
        self.engine = AvatarEngine(self.model, weights_dir=Path(WEIGHTS_DIR), turbo=self.turbo)
        self.engine.load()
        self.load_s = time.perf_counter() - started
        self.inputs_served = 0
        self.client = new_client()

    @modal.method()
    def run(self, task: dict[str, Any]) -> bool:
        """Run one worker task; True when a result marker was written (errors end as markers)."""
        from modal_workers.image_safety import worker_classifier
        from talkstack.workers.runner import run_task

        return run_task(task, self.client, step=self.engine, classifier=worker_classifier())

    @modal.method()
    def smoke(self, image: bytes, audio: bytes, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Render from bytes, outside the worker protocol (no S3): the smoke test of a deploy.
        Returns common.SmokeRender as a dict (mp4 bytes, frames, timings)."""
        self.inputs_served += 1
        render = render_locally(
            self.engine,
            "avatar",
            {"turbo": self.turbo, **(options or {})},
            files={"image": ("image.png", image), "audio": ("audio.wav", audio)},
            load_s=self.load_s,
            first_input=self.inputs_served == 1,
        )
        return render.model_dump()

    @modal.exit()
    def close(self) -> None:
        self.client.close()


@app.cls(**gpu_class_options("multitalk"))
class MultiTalk(_AvatarWorker):
    """multitalk: one or two speakers, up to 40 s per stream (the official cap)."""

    model = "multitalk"
    turbo: bool = modal.parameter(default=False)


@app.cls(**gpu_class_options("infinitetalk"))
class InfiniteTalk(_AvatarWorker):
    """infinitetalk: long-form single-speaker video (APG against colour drift past 15 s)."""

    model = "infinitetalk"
    turbo: bool = modal.parameter(default=False)


@app.cls(
    image=stitch_image,
    cpu=4,
    memory=8 * 1024,
    timeout=DEPLOY.stitch_timeout_s,
    scaledown_window=60,
    max_containers=DEPLOY.stitch_max_containers,
)
class Stitcher:
    """Joins the chunks of a parallel long avatar with crossfades in the pauses (CPU only)."""

    @modal.enter()
    def load(self) -> None:
        from talkstack.workers.runner import new_client

        self.client = new_client()

    @modal.method()
    def run(self, task: dict[str, Any]) -> bool:
        from modal_workers.image_safety import worker_classifier
        from talkstack.workers.runner import run_task

        return run_task(task, self.client, classifier=worker_classifier())


@app.local_entrypoint()
def smoke(
    image: str,
    audio: str,
    model: str = "multitalk",
    turbo: bool = False,
    clips: str = ",".join(f"{s:g}" for s in SMOKE_CLIPS_S),
    output: str = "out/gpu-smoke",
    report: str = "",
) -> None:
    """Render each clip length (default 3 s, one window, and 6 s, streaming over several) from a
    local photo and speech on the deployed image and GPU; write the mp4s and a JSON report."""
    classes = {"multitalk": MultiTalk, "infinitetalk": InfiniteTalk}
    if model not in classes:
        raise SystemExit(f"--model must be one of {', '.join(classes)}")
    worker = classes[model](turbo=turbo)
    image_bytes, audio_bytes = Path(image).read_bytes(), Path(audio).read_bytes()
    renders: list[SmokeRender] = []
    for seconds in (float(s) for s in clips.split(",")):
        started = time.perf_counter()
        result = worker.smoke.remote(image_bytes, audio_bytes, {"max_duration_s": seconds})
        render = SmokeRender.model_validate({**result, "call_s": time.perf_counter() - started})
        renders.append(render)
        name = f"{model}{'-turbo' if turbo else ''}-{seconds:g}s.mp4"
        print(render.summary(f"{model}{' turbo' if turbo else ''} {seconds:g} s"))
        render.save_video(Path(output) / name)
    write_smoke_report(Path(report) if report else None, APP_NAME, GPU, renders)
