"""The compose worker on Modal: assembles compositions (docs/compositions.md) on a CPU.

    modal deploy -m modal_workers.compose     # talkstack-compose: Composer (CPU)

The dispatch Lambda spawns `Composer().run(task)` with a `compose` worker task: pre-signed URLs
for every rendered scene, upload, mask, word timings and music, and for each output (the video,
its thumbnails, caption files, animated preview and, for transparent compositions, the WebM and
MOV with alpha). The runner downloads them, calls the compose step
(talkstack.workers.lite_steps.compose → talkstack.compose.render.compose_video), uploads what it
made and writes the result or error marker, exactly as the avatar app's Stitcher runs `stitch`.
No GPU and no weights: ffmpeg, numpy, Pillow, OpenCV and librosa.
"""

from typing import Any

import modal

from modal_workers.common import base_image, with_talkstack
from talkstack.settings import ModalDeploySettings

APP_NAME = "talkstack-compose"

DEPLOY = ModalDeploySettings()
COMPOSE_PACKAGES = [
    "opencv-python-headless==5.1.0.95",
    "librosa==0.11.0",
    "srt==3.5.3",
    "webvtt-py==0.6.0",
]
"""Frame scaling and the matte's masks (cv2), the speech envelope that ducks the music and the
alignment of transcripts for captions (librosa), the SRT and WebVTT caption files (srt, webvtt-py):
the test suite's versions (pyproject.toml), as the stitcher's."""
CPU = 4.0
"""Frames are drawn on one core while ffmpeg encodes on the others (libx264 threads)."""
MEMORY_MB = 8 * 1024
"""A 1080p frame is 6 MB; the compositor holds a few per scene, the soundtrack (48 kHz mono float:
11.5 MB a minute) and the animated preview's 30 small frames."""

image = with_talkstack(base_image().uv_pip_install(*COMPOSE_PACKAGES))
app = modal.App(APP_NAME, image=image)


@app.cls(
    cpu=CPU,
    memory=MEMORY_MB,
    timeout=DEPLOY.compose_timeout_s,
    scaledown_window=60,
    max_containers=DEPLOY.compose_max_containers,
)
class Composer:
    """Runs `compose` worker tasks: a finished video from a composition's rendered scenes."""

    @modal.enter()
    def load(self) -> None:
        from talkstack.workers.runner import new_client

        self.client = new_client()

    @modal.method()
    def run(self, task: dict[str, Any]) -> bool:
        from modal_workers.image_safety import worker_classifier
        from talkstack.workers.runner import run_task

        return run_task(task, self.client, classifier=worker_classifier())

    @modal.exit()
    def close(self) -> None:
        self.client.close()
