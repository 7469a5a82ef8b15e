"""Text- and image-to-video workers on Modal: LTX-Video and Wan2.2-TI2V-5B through diffusers.

    modal deploy -m modal_workers.video     # deploy the app (GPU from TALKSTACK_VIDEO_GPU, default H100)
    modal run -m modal_workers.video        # check that the weights volume holds what the classes load
    modal run -m modal_workers.video --prompt "…" [--image first.png] [--model wan2.2-ti2v-5b]  # smoke

The dispatch Lambda spawns `LTXVideo().run` or `Wan22TI2V().run` with a worker task: pre-signed
URLs only, no AWS credentials (talkstack/contract/worker.py). The worker downloads the optional
first-frame image, renders, uploads video.mp4 + thumbnail.jpg and writes a result or error marker;
the return value is informational (Modal call results expire; the pipeline only reads markers).

Each class loads its model once per container (`@modal.enter`) from the shared weights volume,
where the weights app stored each Hugging Face repository under /weights/<org>/<name>. All ML
imports live in talkstack.engines.gpu.video, inside the container: this file imports anywhere,
without Modal credentials or a GPU.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import modal

from modal_workers.common import (
    SMOKE_CLIPS_S,
    WEIGHTS_DIR,
    WEIGHTS_VOLUME,
    SmokeRender,
    base_image,
    render_locally,
    weights_volume,
    with_talkstack,
    write_smoke_report,
)
from talkstack.settings import ModalDeploySettings

APP_NAME = "talkstack-video"

# Deploy-time settings (read where `modal deploy` runs; docs/settings.md, group "modal").
DEPLOY = ModalDeploySettings()
GPU = DEPLOY.video_gpu
"""Both models fit one 80 GB GPU in bf16 (LTX-Video 13B distilled + T5-XXL ≈ 36 GB of weights)."""
TIMEOUT_S = DEPLOY.video_timeout_s
"""90 min by default; the pipeline plans video steps on Modal within the same setting."""
MAX_CONTAINERS = DEPLOY.video_max_containers
"""Per class: a burst of jobs queues in Modal beyond it instead of starting unbounded GPUs."""
SCALEDOWN_S = 5 * 60
"""Stay warm between jobs: loading tens of GB from the volume costs a minute or more."""
STARTUP_TIMEOUT_S = 20 * 60
"""A cold container reads every weight file from the volume before it can take its first input."""

# The ML stack, pinned to the versions the CPU test suite runs the same pipeline classes with.
VIDEO_PACKAGES = [
    "torch==2.13.0",
    "diffusers==0.42.1",
    "transformers==5.23.0",
    "accelerate==1.15.0",
    "safetensors==0.8.0",
    "sentencepiece==0.2.1",  # T5 / UMT5 tokenizers shipped as spiece.model
    "protobuf==7.36.2",
    "ftfy==6.3.1",  # Wan's prompt cleaning
]

image = with_talkstack(base_image().uv_pip_install(*VIDEO_PACKAGES))
app = modal.App(APP_NAME, image=image)


class _VideoWorker:
    """Shared body of the two GPU classes: one engine and one HTTP client per container."""

    model: str

    @modal.enter()
    def load(self) -> None:
        from talkstack.engines.gpu.video import VideoEngine
        from talkstack.workers.runner import new_client

        started = time.perf_counter()
        self.engine = VideoEngine(self.model, weights_dir=Path(WEIGHTS_DIR))
        self.engine.load()
        self.load_s = time.perf_counter() - started
        self.inputs_served = 0
        self.client = new_client()  # reused across inputs: no TLS set-up per transfer

    @modal.method()
    def run(self, task: dict[str, Any]) -> bool:
        """Run one worker task; True when a result marker was written (errors end as markers)."""
        from modal_workers.image_safety import worker_classifier
        from talkstack.workers.runner import run_task

        return run_task(task, self.client, step=self.engine, classifier=worker_classifier())

    @modal.method()
    def smoke(
        self, prompt: str, image: bytes | None = None, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Render from a prompt (and optional first-frame image bytes) outside the worker protocol
        (no S3): the smoke test of a deploy. Returns common.SmokeRender as a dict."""
        self.inputs_served += 1
        files = {"image": ("image.png", image)} if image is not None else {}
        render = render_locally(
            self.engine,
            "video",
            options or {},
            files,
            text=prompt,
            load_s=self.load_s,
            first_input=self.inputs_served == 1,
        )
        return render.model_dump()

    @modal.exit()
    def close(self) -> None:
        self.client.close()


@app.cls(
    gpu=GPU,
    volumes={WEIGHTS_DIR: weights_volume},
    timeout=TIMEOUT_S,
    startup_timeout=STARTUP_TIMEOUT_S,
    scaledown_window=SCALEDOWN_S,
    max_containers=MAX_CONTAINERS,
)
class LTXVideo(_VideoWorker):
    """ltx-video: Lightricks LTX-Video 0.9.7 distilled, up to 257 frames per pass: 8 steps at 2/3 size,
    the 0.9.7 latent upsampler ×2 and 4 refine steps (one 8-step pass at the output size with turbo)."""

    model = "ltx-video"


@app.cls(
    gpu=GPU,
    volumes={WEIGHTS_DIR: weights_volume},
    timeout=TIMEOUT_S,
    startup_timeout=STARTUP_TIMEOUT_S,
    scaledown_window=SCALEDOWN_S,
    max_containers=MAX_CONTAINERS,
)
class Wan22TI2V(_VideoWorker):
    """wan2.2-ti2v-5b: Wan2.2-TI2V-5B (50 steps, 1280×704), up to 121 frames per pass."""

    model = "wan2.2-ti2v-5b"


def check_weights() -> None:
    """Print, per class, the weights folder it loads and whether the volume has it."""
    from talkstack.engines.gpu.video import UPSAMPLER_SUBDIR, WEIGHTS_SUBDIR
    from talkstack.engines.registry import modal_target

    print(f"app {APP_NAME}: GPU {GPU}, volume {WEIGHTS_VOLUME} mounted at {WEIGHTS_DIR}")
    folders = [(m, s, "model_index.json") for m, s in WEIGHTS_SUBDIR.items()]
    folders += [(m, f"{s}/latent_upsampler", "config.json") for m, s in UPSAMPLER_SUBDIR.items()]
    for model, subdir, marker in folders:
        _, cls_name = modal_target(model)  # the class the Modal backend sends this model's tasks to
        try:
            names = {Path(entry.path).name for entry in weights_volume.listdir(subdir)}
        except Exception:  # a missing folder raises (NotFoundError / grpc error, by client version)
            names = set()
        state = "ready" if marker in names else "MISSING (run the weights app first)"
        print(f"  {cls_name:<10} {model:<16} {WEIGHTS_DIR}/{subdir}: {state}")


@app.local_entrypoint()
def main(
    prompt: str = "",
    image: str = "",
    model: str = "ltx-video",
    clips: str = ",".join(f"{s:g}" for s in SMOKE_CLIPS_S),
    output: str = "out/gpu-smoke",
    report: str = "",
) -> None:
    """Without --prompt: check the weights volume. With it: the smoke test, rendering each clip length
    (default 3 s, one pass, and 6 s, chained passes where the model's pass is shorter) on the app's
    image and GPU, writing the mp4s and a JSON report."""
    if not prompt:
        check_weights()
        return
    classes = {"ltx-video": LTXVideo, "wan2.2-ti2v-5b": Wan22TI2V}
    if model not in classes:
        raise SystemExit(f"--model must be one of {', '.join(classes)}")
    worker = classes[model]()
    image_bytes = Path(image).read_bytes() if image else None
    renders: list[SmokeRender] = []
    for seconds in (float(s) for s in clips.split(",")):
        started = time.perf_counter()
        result = worker.smoke.remote(prompt, image_bytes, {"duration_s": seconds})
        render = SmokeRender.model_validate({**result, "call_s": time.perf_counter() - started})
        renders.append(render)
        print(render.summary(f"{model} {seconds:g} s"))
        render.save_video(Path(output) / f"{model}-{seconds:g}s.mp4")
    write_smoke_report(Path(report) if report else None, APP_NAME, GPU, renders)
