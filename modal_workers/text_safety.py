"""talkstack-text-safety: the open text-safety classifier of input moderation, on a Modal GPU.

    modal run -m modal_workers.text_safety::fetch                     # weights → the talkstack-weights volume
    modal deploy -m modal_workers.text_safety                         # from the repository root
    modal run -m modal_workers.text_safety --text "Hello there"       # smoke test: prints each risk

The Moderate state (talkstack/pipeline/moderate.py) spawns `score` with the job's texts and the
risks its policy maps to categories, and waits for the answer at most
TALKSTACK_MODERATION_CLASSIFIER_TIMEOUT_S. Texts go in, probabilities come out: nothing is stored,
no credentials are held. The scoring itself is talkstack.safety.text_classifier (tested without a
GPU on a tiny random-weight Granite).

Model: IBM Granite Guardian 3.2 5B (ibm-granite/granite-guardian-3.2-5b), Apache-2.0, ~11 GB in
bf16. Its revision is not pinned yet (no commit SHA of it found in public code): `fetch` downloads
the default branch and prints the commit it got; put it in REVISION to pin it.
"""

from __future__ import annotations

from pathlib import Path

import modal

from modal_workers.common import PYTHON_VERSION, WEIGHTS_DIR, WORKER_PACKAGES, weights_volume, with_talkstack
from talkstack.safety.text_classifier import RISKS, TEXT_SAFETY_APP, TEXT_SAFETY_MODEL

app = modal.App(TEXT_SAFETY_APP)

REVISION: str | None = None
"""The Hugging Face commit of TEXT_SAFETY_MODEL that `fetch` downloads (None: the default branch)."""
MODEL_DIR = Path(WEIGHTS_DIR) / TEXT_SAFETY_MODEL

image = with_talkstack(
    modal.Image.debian_slim(python_version=PYTHON_VERSION)
    .uv_pip_install(
        # The versions the CPU test suite runs talkstack.safety.text_classifier with.
        "torch==2.13.0",
        "transformers==5.25.0",
        "accelerate==1.16.0",
        "safetensors==0.8.0",
        "jinja2==3.1.6",
        *WORKER_PACKAGES,
    )
    .env({"HF_HOME": f"{WEIGHTS_DIR}/hf", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
)

# ## The GPU class
#
# An L4 (24 GB) holds the 5B model in bf16 with room for a batch of prompts; scoring a job is one
# forward pass per (text, risk) — well under a second warm. Jobs are bursty and a cold start loads
# ~11 GB, so a container stays 10 minutes after its last call. Several inputs at once share the
# loaded model (the forward pass holds no state between calls).
GPU = "L4"
TIMEOUT_S = 5 * 60
SCALEDOWN_S = 10 * 60
STARTUP_S = 10 * 60


@app.cls(
    image=image,
    gpu=GPU,
    volumes={WEIGHTS_DIR: weights_volume},
    timeout=TIMEOUT_S,
    startup_timeout=STARTUP_S,
    scaledown_window=SCALEDOWN_S,
    max_containers=4,
)
@modal.concurrent(max_inputs=4)
class TextSafety:
    @modal.enter()
    def load(self) -> None:
        from talkstack.safety.text_classifier import GuardianScorer

        if not (MODEL_DIR / "config.json").is_file():
            raise RuntimeError(f"{MODEL_DIR} is empty: run `modal run -m modal_workers.text_safety::fetch`")
        self.scorer = GuardianScorer.load(MODEL_DIR, device="cuda")

    @modal.method()
    def score(self, texts: list[str], risks: list[str]) -> dict[str, float]:
        """The highest probability of each risk over `texts`."""
        return self.scorer.score(texts, risks)


# ## Weights
#
# Fetched once into the shared volume on a CPU container (the GPU class never downloads).

fetch_image = modal.Image.debian_slim(python_version=PYTHON_VERSION).uv_pip_install("huggingface_hub==2.4.0")


@app.function(image=fetch_image, volumes={WEIGHTS_DIR: weights_volume}, timeout=60 * 60)
def fetch() -> str:
    """Download the model (REVISION, or the default branch's current commit) and say which commit."""
    from huggingface_hub import HfApi, snapshot_download

    commit = HfApi().model_info(TEXT_SAFETY_MODEL, revision=REVISION).sha
    snapshot_download(
        TEXT_SAFETY_MODEL,
        revision=commit,
        local_dir=str(MODEL_DIR),
        allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"],
    )
    weights_volume.commit()
    note = "" if REVISION else f"; not pinned: set REVISION = {commit!r} in modal_workers/text_safety.py"
    print(f"{TEXT_SAFETY_MODEL} at {commit} → {MODEL_DIR}{note}")
    return str(commit)


@app.local_entrypoint()
def main(text: str = "Hello! This is talkstack speaking.") -> None:
    scores = TextSafety().score.remote([text], list(RISKS))
    for risk, value in scores.items():
        print(f"{risk:20} {value:.3f}")
