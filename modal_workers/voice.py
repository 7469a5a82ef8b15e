"""talkstack-voice: zero-shot voice cloning with Chatterbox and IndexTTS-2 on Modal GPUs.

    modal deploy -m modal_workers.voice                                  # from the repository root
    TALKSTACK_VOICE_GPU=L4 modal deploy -m modal_workers.voice           # another GPU type
    modal run -m modal_workers.voice --model chatterbox --text "Hello!"  # smoke test → speech.wav

The pipeline's dispatch Lambda `.spawn()`s `run` with a worker task (talkstack/contract/worker.py):
the container fetches the text's reference voice from a pre-signed URL, speaks, and PUTs the audio
and a result marker back. It holds no AWS credentials. The engine itself (preparing the reference,
splitting the text, encoding) is talkstack.engines.gpu.voice, tested without Modal or a GPU.

Licences: Chatterbox is MIT (its output carries Resemble's inaudible Perth watermark). IndexTTS-2's
code and weights are under the bilibili Model Use License: royalty-free, but a user whose products
had over 100 million monthly active users, or whose group's revenue exceeded RMB 1 billion, in the
preceding month / year needs a separate written licence from bilibili first.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import modal

from modal_workers.common import (
    PYTHON_VERSION,
    WEIGHTS_DIR,
    WORKER_PACKAGES,
    weights_volume,
    with_talkstack,
)
from talkstack.settings import ModalDeploySettings

app = modal.App("talkstack-voice")

# ## Images
#
# One image per model: chatterbox-tts 0.1.7 pins torch 2.6, numpy < 2, transformers 5.2 and
# gradio 6.8 (hence pillow < 13); IndexTTS-2 pins torch 2.8, numpy 2.2.6 and transformers 4.52
# (hence huggingface_hub < 1). No single environment satisfies both, nor talkstack's own pins of
# those three packages (common.WORKER_PACKAGES), so here the model decides them; talkstack's code
# needs nothing from them that those versions lack. Each image installs in one uv resolve, so a
# clash fails the build instead of breaking an import at run time.

MODEL_PINNED = {"numpy", "huggingface_hub", "pillow"}


def worker_packages() -> list[str]:
    """talkstack's worker dependencies, less those the voice models pin themselves."""
    return [p for p in WORKER_PACKAGES if p.split("==")[0] not in MODEL_PINNED]


VOICE_ENV = {
    "HF_HOME": f"{WEIGHTS_DIR}/hf",
    # Every weight comes from the pinned downloads on the volume (the engine hands the upstream
    # loaders their paths): offline, anything that would still reach for the Hub's `main` fails at
    # load instead of fetching unpinned bytes. Set here because huggingface_hub reads it at import.
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_ENABLE_HF_TRANSFER": "0",
    "TOKENIZERS_PARALLELISM": "false",
}

CHATTERBOX_VERSION = "0.1.7"  # = resemble-ai/chatterbox 59bc590b, the code the engine was written to

# The multilingual tokenizer segments Chinese with spacy-pkuseg, whose model (spacy_ontonotes, a
# GitHub release checked by sha256) is downloaded into PKUSEG_HOME on first use — and the tokenizer
# is built for every language, so without this step each cold container would fetch it from GitHub
# and fail to load the multilingual model when GitHub does not answer. Fetched once, at build.
PKUSEG_HOME = "/opt/pkuseg"
PKUSEG_PREFETCH = "python -c 'from spacy_pkuseg import pkuseg; pkuseg()'"

chatterbox_image = with_talkstack(
    modal.Image.debian_slim(python_version=PYTHON_VERSION)
    .apt_install("ffmpeg", "git")
    .uv_pip_install(f"chatterbox-tts=={CHATTERBOX_VERSION}", *worker_packages())
    .env({**VOICE_ENV, "PKUSEG_HOME": PKUSEG_HOME})
    .run_commands(PKUSEG_PREFETCH)
)

# IndexTTS-2 is not on PyPI: its repository, at a fixed commit, installed the way its README does
# (an editable install of the checkout, whose pyproject pins torch, transformers and numpy exactly).
INDEXTTS_REPO = "https://github.com/index-tts/index-tts.git"
INDEXTTS_COMMIT = "ee40fa7d6c6b8a2c7f06105f9f1e65775b74868c"  # 2026-08-18
INDEXTTS_SRC = "/opt/index-tts"

# Its text normaliser on Linux is WeTextProcessing (indextts/utils/front.py, TextNormalizer.load):
# the English grammar ships compiled in the wheel, but the Chinese one is built with options of its
# own (interjections and erhua kept) into indextts/utils/tagger_cache/ beside its source, on first
# load. Built there at image build time, so containers read it instead of compiling it at every cold
# start. The repository leaves WeTextProcessing unpinned; its uv.lock has this version.
WETEXT_VERSION = "1.0.4.1"
NORMALIZER_PREBUILD = "python -c 'from indextts.utils.front import TextNormalizer; TextNormalizer().load()'"
NORMALIZER_CACHE = f"{INDEXTTS_SRC}/indextts/utils/tagger_cache"

indextts2_image = with_talkstack(
    modal.Image.debian_slim(python_version=PYTHON_VERSION)  # the repo wants Python >=3.10,<3.12
    .apt_install("ffmpeg", "git")
    .run_commands(
        f"git clone --filter=blob:none {INDEXTTS_REPO} {INDEXTTS_SRC}",
        f"git -C {INDEXTTS_SRC} checkout --quiet {INDEXTTS_COMMIT}",
    )
    .uv_pip_install(
        f"WeTextProcessing=={WETEXT_VERSION}", *worker_packages(), extra_options=f"--editable {INDEXTTS_SRC}"
    )
    # USE_MODELSCOPE=false: never probe modelscope.cn (it would only matter if something were fetched).
    .env({**VOICE_ENV, "USE_MODELSCOPE": "false"})
    .run_commands(NORMALIZER_PREBUILD, f"test -s {NORMALIZER_CACHE}/zh_tn_tagger.fst")
)

# ## Deploy-time settings
#
# A10G (24 GB) by default. Estimated from parameter counts, not measured: Chatterbox ~4 GB (~8 GB
# with its multilingual model loaded beside the English one), IndexTTS-2 in fp16 ~12 GB. Both decode
# one token at a time for a single request, which is bound by kernel launches and memory latency, not
# FLOPs, so an L40S or H100 buys little speed for roughly two to four times the hourly price.
# TALKSTACK_VOICE_GPU picks another (e.g. L4 to save, L40S if measurements say otherwise).
DEPLOY = ModalDeploySettings()  # docs/settings.md, group "modal"
VOICE_GPU = DEPLOY.voice_gpu
# 5,000 characters (talkstack's text limit) is ~6 minutes of speech; at a real-time factor near 1
# plus per-sentence overhead that is well inside 30 minutes.
TIMEOUT_S = DEPLOY.voice_timeout_s
# Voice jobs come in bursts (a text-driven avatar speaks first, then animates): stay warm 5 minutes
# rather than pay a 1–2 minute cold start (image, then ~4–12 GB of weights) for each.
SCALEDOWN_S = DEPLOY.voice_scaledown_s
# Per class: a burst of voice steps queues in Modal beyond it instead of starting unbounded GPUs.
MAX_CONTAINERS = DEPLOY.voice_max_containers
# Loading reads ~4–12 GB of weights from the volume (filled beforehand by modal_workers.weights:
# these containers never download).
STARTUP_S = 20 * 60
# The Python loop that launches each token's kernels needs a whole core; sentence splitting,
# resampling and ffmpeg use the rest.
CPU_CORES = 4.0


def start(model: str) -> tuple[Any, Any]:
    """The loaded engine and one HTTP client for every task this container runs."""
    from talkstack.engines.gpu.voice import VoiceEngine
    from talkstack.workers.runner import new_client

    engine = VoiceEngine(model, weights_dir=Path(WEIGHTS_DIR))
    engine.load()
    return engine, new_client()


def speak_bytes(
    engine: Any, text: str, options: dict[str, Any] | None, reference_voice: bytes | None
) -> bytes:
    """Speech for `text` as file bytes, outside the worker protocol (smoke tests of a deploy)."""
    from talkstack.contract.request import VoiceOptions

    with tempfile.TemporaryDirectory() as tmp:
        reference = None
        if reference_voice is not None:
            reference = Path(tmp) / "reference"
            reference.write_bytes(reference_voice)
        voice_options = VoiceOptions.model_validate({"model": engine.model, **(options or {})})
        result = engine.speak(text, voice_options, Path(tmp) / "out", reference_voice=reference)
        return result.output.read_bytes()


# ## The GPU classes
#
# One input at a time per container (no @modal.concurrent): both models keep the last speaker's
# conditioning as state, so two requests sharing a model would race.


class _VoiceWorker:
    """Shared body of the two classes: one engine and one HTTP client per container."""

    model: str

    @modal.enter()
    def load(self) -> None:
        self.engine, self.client = start(self.model)

    @modal.method()
    def run(self, task: dict) -> bool:
        from modal_workers.image_safety import worker_classifier
        from talkstack.workers.runner import run_task

        return run_task(task, self.client, step=self.engine, classifier=worker_classifier())

    @modal.method()
    def speak(self, text: str, options: dict | None = None, reference_voice: bytes | None = None) -> bytes:
        return speak_bytes(self.engine, text, options, reference_voice)

    @modal.exit()
    def close(self) -> None:
        self.client.close()


def _resources(image: modal.Image) -> dict:
    return {
        "image": image,
        "gpu": VOICE_GPU,
        "cpu": CPU_CORES,
        "volumes": {WEIGHTS_DIR: weights_volume},
        "timeout": TIMEOUT_S,
        "startup_timeout": STARTUP_S,
        "scaledown_window": SCALEDOWN_S,
        "max_containers": MAX_CONTAINERS,
    }


@app.cls(**_resources(chatterbox_image))
class Chatterbox(_VoiceWorker):
    model = "chatterbox"


@app.cls(**_resources(indextts2_image))
class IndexTTS2(_VoiceWorker):
    model = "indextts2"


@app.local_entrypoint()
def main(
    model: str = "chatterbox",
    text: str = "Hello! This is talkstack speaking, from a GPU on Modal.",
    reference: str = "",
    output: str = "speech.wav",
) -> None:
    """Speak `text` (cloning `reference`, a local audio file, if given) and write it to `output`."""
    classes = {"chatterbox": Chatterbox, "indextts2": IndexTTS2}
    if model not in classes:
        raise SystemExit(f"--model must be one of {', '.join(classes)}")
    reference_voice = Path(reference).read_bytes() if reference else None
    fmt = "mp3" if output.lower().endswith(".mp3") else "wav"
    audio = classes[model]().speak.remote(text, {"format": fmt}, reference_voice)
    Path(output).write_bytes(audio)
    print(f"{model}: wrote {output} ({len(audio):,} bytes)")
