"""talkstack-image-safety: the image-safety classifier the GPU workers scan their outputs with.

    modal run -m modal_workers.image_safety::fetch             # weights → the talkstack-weights volume
    modal deploy -m modal_workers.image_safety                 # from the repository root
    modal run -m modal_workers.image_safety --image frame.jpg  # smoke test: the scores of one image

Every GPU worker (avatar, video, the stitcher) samples frames of the video it produced
(talkstack/safety/scan.py) and sends them here as JPEG bytes before it writes its result marker;
the verdict travels in the marker to the job's `result.scan`, and finalize holds a flagged video.

The classifier is Falconsai/nsfw_image_detection: a ViT-base (google/vit-base-patch16-224-in21k)
fine-tuned to tell `normal` from `nsfw` images, Apache-2.0 (code and weights), ~86 M parameters,
a few milliseconds a frame. Compared with the others: LAION's CLIP-based NSFW detector needs a CLIP
ViT-L/14 beside it (MIT, but several times the size); ShieldGemma-2 (4 B) and LlavaGuard (7 B+)
judge many policy categories but are under the Gemma terms / need a multi-GPU budget; NudeNet's
detector is a YOLOv8 model and its wheel carries the AGPL-3.0 (so it is not used on any path).
The weights are read from the `talkstack-weights` Volume (`/weights/Falconsai/nsfw_image_detection`)
like every other model's; nothing is downloaded at start-up. `fetch` puts them there; its revision is
not pinned yet (no commit SHA was at hand offline): `fetch` prints the commit it got, put it in
REVISION to pin it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import modal

from modal_workers.common import PYTHON_VERSION, WEIGHTS_DIR, base_image, weights_volume, with_talkstack
from talkstack.settings.scan import get_scan_settings

APP_NAME = "talkstack-image-safety"
CLASS_NAME = "ImageSafety"
REPO = "Falconsai/nsfw_image_detection"
GPU = "T4"
"""The smallest Modal GPU: a ViT-base on 8 to a few dozen frames per job needs no more."""

REVISION: str | None = None
"""The Hugging Face commit of REPO that `fetch` downloads (None: the default branch)."""

app = modal.App(APP_NAME)
# The video app's torch and transformers (modal_workers/video.py); pillow and numpy are the base's.
image = with_talkstack(base_image().uv_pip_install("torch==2.13.0", "transformers==5.23.0"))


@app.cls(
    image=image,
    gpu=GPU,
    volumes={WEIGHTS_DIR: weights_volume},
    timeout=300,
    scaledown_window=120,
    max_containers=10,
)
class ImageSafety:
    @modal.enter()
    def load(self) -> None:
        from talkstack.safety.image_classifier import TransformersImageClassifier

        self.classifier = TransformersImageClassifier(Path(WEIGHTS_DIR) / REPO, model=REPO)

    @modal.method()
    def classify(self, frames: list[bytes]) -> list[dict[str, float]]:
        """Scores (label → probability) of each JPEG or PNG image, in order."""
        return self.classifier.classify([decode(frame) for frame in frames])


def decode(data: bytes) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as picture:
        return np.asarray(picture.convert("RGB"))


def encode(frame: Any, quality: int = 90) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _deployed() -> Any:
    return modal.Cls.from_name(APP_NAME, CLASS_NAME)()


class RemoteImageClassifier:
    """`talkstack.safety.scan.ImageClassifier` that calls the deployed ImageSafety class (from inside
    another Modal container: the worker's own Modal credentials reach it)."""

    model = REPO

    def __init__(self, lookup: Callable[[], Any] = _deployed) -> None:
        self._lookup = lookup

    def classify(self, frames: Sequence[Any]) -> list[dict[str, float]]:
        return self._lookup().classify.remote([encode(frame) for frame in frames])


def worker_classifier() -> RemoteImageClassifier | None:
    """What the GPU workers scan with: the ImageSafety class, unless TALKSTACK_SCAN_GPU_CLASSIFIER
    is off (then their outputs are `not_scanned`)."""
    return RemoteImageClassifier() if get_scan_settings().gpu_classifier else None


@app.local_entrypoint()
def smoke(image: str) -> None:
    """Print the classifier's scores of one local image."""
    print(_deployed().classify.remote([Path(image).read_bytes()]))


# ## Weights
#
# Fetched once into the shared volume on a CPU container (the GPU class never downloads).

fetch_image = modal.Image.debian_slim(python_version=PYTHON_VERSION).uv_pip_install("huggingface_hub==2.4.0")


@app.function(image=fetch_image, volumes={WEIGHTS_DIR: weights_volume}, timeout=30 * 60)
def fetch() -> str:
    """Download the classifier (REVISION, or the default branch's current commit); say which commit."""
    from huggingface_hub import HfApi, snapshot_download

    commit = HfApi().model_info(REPO, revision=REVISION).sha
    target = Path(WEIGHTS_DIR) / REPO
    patterns = ["*.json", "*.safetensors"]
    snapshot_download(REPO, revision=commit, local_dir=str(target), allow_patterns=patterns)
    weights_volume.commit()
    note = "" if REVISION else f"; not pinned: set REVISION = {commit!r} in modal_workers/image_safety.py"
    print(f"{REPO} at {commit} → {target}{note}")
    return str(commit)
