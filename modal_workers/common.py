"""What the Modal apps share: the worker base image, the weights volume, deploy-time settings.

Deploy-time settings (TALKSTACK_<FAMILY>_GPU, …) are `talkstack.settings.ModalDeploySettings`, read
from the environment of the machine running `modal deploy`, so switching an H100 for an A100-80GB
is configuration, not an edit.
Nothing here talks to Modal at import time: `modal.Image`, `modal.Volume.from_name` and
`modal.Secret.from_name` are lazy, so these files import without Modal credentials.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import modal
from pydantic import BaseModel, Field

from talkstack.settings import environ

if TYPE_CHECKING:
    from talkstack.engines.gpu.base import Engine

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


QUALITY_PACKAGES = [
    "absl-py==2.5.1",
    "flatbuffers==25.12.19",
    "matplotlib==3.11.2",
    "certifi==2026.10.19.post1",
]
"""What MediaPipe's Face Landmarker needs at run time: the quality report of every avatar render
(talkstack/engines/quality.py) measures the mouth and face with it, on the GPU workers and the
stitcher alike. The same pins as the test suite's environment."""
MEDIAPIPE = "mediapipe==1.2.2"
"""Installed with --no-deps, as `make venv` does: its metadata pulls opencv-contrib-python (the GUI
build, which replaces the headless cv2 and needs libGL) and sounddevice, which the landmarker never
imports."""

SOURCE_IGNORE = ["**/__pycache__", "**/*.pyc", "**/.pytest_cache"]
"""What of the talkstack package stays behind. Modal's default (`NON_PYTHON_FILES`) would also leave
talkstack/assets behind: the face landmarker's model file and the bundled samples."""


def with_quality_tools(image: modal.Image) -> modal.Image:
    """MediaPipe (no deps) and its runtime needs, for the avatar quality report."""
    return image.uv_pip_install(*QUALITY_PACKAGES).uv_pip_install(MEDIAPIPE, extra_options="--no-deps")


def with_talkstack(image: modal.Image) -> modal.Image:
    """The talkstack package (worker protocol + engines + assets) and these app files, added at
    start-up; and the quality report's pass marks, the output scan's settings and the watermark's
    switch and key set where `modal deploy` runs (TALKSTACK_QUALITY_*, TALKSTACK_SCAN_*,
    TALKSTACK_WATERMARK*: the workers measure, scan, judge and mark; the Lambdas only act on the
    verdicts). The key then lives in the image's environment, readable by whoever may read the
    Modal app (docs/safety.md). A layer after the heavy ones, so changing a pass mark rebuilds
    nothing big."""
    worker_settings = {
        **environ.variables("TALKSTACK_QUALITY_"),
        **environ.variables("TALKSTACK_SCAN_"),
        **environ.variables("TALKSTACK_WATERMARK"),
    }
    if worker_settings:
        image = image.env(worker_settings)
    return image.add_local_python_source("talkstack", "modal_workers", ignore=SOURCE_IGNORE)


# ## Smoke renders
#
# Each GPU app has a `smoke` method (bytes in, mp4 bytes out, no S3) and a local entrypoint that
# calls it, so `modal run -m modal_workers.<app> …` proves the image, the weights volume and the
# engine on the real GPU; scripts/gpu_smoke.py runs them all and prints the table.

SMOKE_CLIPS_S = (3.0, 6.0)
"""3 s fits one 81-frame avatar window; 6 s streams over several (and chains video passes)."""


class SmokeRender(BaseModel):
    """One smoke render, as the container reports it (`call_s` is added by the caller)."""

    model: str
    options: dict[str, Any]
    gpu: str | None
    """The GPU the driver names (None on a CPU)."""
    frames: int
    duration_s: float
    width: int | None = None
    height: int | None = None
    fps: int | None = None
    load_s: float
    """The container's model load in @modal.enter (paid once per container)."""
    render_s: float
    first_input: bool
    """True when this render was the container's first input: the call paid a cold start."""
    call_s: float | None = None
    """Wall-clock seconds of the remote call as the caller saw it (queue + cold start + render)."""
    warnings: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    video: bytes = Field(default=b"", repr=False)

    def summary(self, label: str) -> str:
        load = f"load {self.load_s:.0f} s, " if self.first_input else ""
        return (
            f"{label}: {self.frames} frames ({self.duration_s:.2f} s) {self.width}×{self.height} on "
            f"{self.gpu}: {load}render {self.render_s:.1f} s"
        )

    def save_video(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.video)
        print(f"  wrote {path} ({len(self.video):,} bytes)")


class SmokeReport(BaseModel):
    """What a smoke entrypoint writes with --report (read back by scripts/gpu_smoke.py)."""

    app: str
    gpu: str
    """The GPU the app requests (each render says what it ran on)."""
    renders: list[SmokeRender]


def write_smoke_report(path: Path | None, app: str, gpu: str, renders: list[SmokeRender]) -> None:
    if path is None:
        return
    report = SmokeReport(app=app, gpu=gpu, renders=renders)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.model_dump_json(indent=2, exclude={"renders": {"__all__": {"video"}}}))
    print(f"report: {path}")


def render_locally(
    engine: Engine,
    step: str,
    options: dict[str, Any],
    files: dict[str, tuple[str, bytes]],
    *,
    text: str | None = None,
    load_s: float,
    first_input: bool,
) -> SmokeRender:
    """Run the engine's own render on local files, outside the worker protocol.

    The task document is a real one (parsed by the worker contract, so the engine sees exactly what
    a job would give it) whose URLs point nowhere: `render` reads its inputs from the paths given and
    never transfers anything; only talkstack.workers.runner does."""
    from talkstack.contract.worker import offline_task
    from talkstack.workers.runner import accelerator

    roles = {role: name for role, (name, _) in files.items()}
    task = offline_task(step, engine.model, options, roles, text=text, job_id="smoke")  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        inputs: dict[str, Path] = {}
        for role, (name, data) in files.items():
            inputs[role] = Path(tmp) / name
            inputs[role].write_bytes(data)
        outdir = Path(tmp) / "out"
        outdir.mkdir()
        started = time.perf_counter()
        outputs, result = engine(task, inputs, outdir, lambda _fraction, _message: None)
        render_s = time.perf_counter() - started
        return SmokeRender(
            model=engine.model,
            options=options,
            gpu=accelerator(),
            frames=result.frames or 0,
            duration_s=result.duration_s,
            width=result.width,
            height=result.height,
            fps=result.fps,
            load_s=load_s,
            render_s=render_s,
            first_input=first_input,
            warnings=result.warnings,
            timings=result.timings,
            video=outputs["video"].read_bytes(),
        )
