"""The talkstack-voice Modal app as Modal's own client library reads it: imported without Modal
credentials, its classes introspected (tests/support/modal_introspect.py), its images read back as the
Dockerfile commands Modal would build. Nothing is deployed and no image is built here."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from modal._image import LATEST_IMAGE_BUILDER_VERSION

from talkstack.contract.request import VoiceOptions
from talkstack.engines.base import RenderResult
from talkstack.engines.registry import modal_target
from tests.conftest import SPEECH
from tests.support.modal_introspect import declared, method_names, offline_import

CLASSES = ("Chatterbox", "IndexTTS2")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def voice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    """modal_workers.voice imported fresh, with no Modal token in the environment or config file."""
    with offline_import(
        monkeypatch, tmp_path, "modal_workers.voice", unset=("TALKSTACK_VOICE_GPU",)
    ) as module:
        yield module


def dockerfile(image: Any) -> list[str]:
    """Every Dockerfile command behind a Modal image, base first. Reads Modal's private loader
    closures (like modal_introspect): if an upgrade moves them, this fails rather than passes."""
    originals = [v for k, v in vars(image).items() if k.startswith("_sync_original")]
    impl = originals[0] if originals else image
    captured = inspect.getclosurevars(impl._load).nonlocals
    assert {"base_image", "dockerfile_function"} & set(captured), "modal internals changed"
    bases = [captured["base_image"]] if "base_image" in captured else []
    bases += list((captured.get("base_images") or {}).values())
    commands = [c for base in bases for c in dockerfile(base)]
    if captured.get("dockerfile_function") is not None:
        commands += captured["dockerfile_function"](LATEST_IMAGE_BUILDER_VERSION).commands
    return commands


def installs(commands: list[str]) -> str:
    return "\n".join(c for c in commands if "pip install" in c or c.startswith("RUN git"))


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLASSES)
def test_each_class_is_a_gpu_class_with_no_credentials(voice, name):
    # Time limits and `run`: test_modal_apps_serve_the_pipeline.py; the GPU setting: below.
    spec = declared(voice.app, name)
    assert spec.gpu  # which one is the deploy-time setting
    assert spec.secrets == []  # workers hold no credentials: inputs and outputs are pre-signed URLs
    assert method_names(voice.app, name) == {"run", "speak"}


def test_the_registry_points_each_voice_model_at_the_class_that_loads_it(voice):
    for model, name in (("chatterbox", "Chatterbox"), ("indextts2", "IndexTTS2")):
        assert modal_target(model) == ("talkstack-voice", name)
        assert getattr(voice, name)._get_user_cls().model == model  # what its enter hook loads


def test_the_two_models_get_their_own_images(voice):
    chatterbox = dockerfile(declared(voice.app, "Chatterbox").image)
    indextts2 = dockerfile(declared(voice.app, "IndexTTS2").image)
    chatterbox_installs, indextts2_installs = installs(chatterbox), installs(indextts2)

    assert declared(voice.app, "Chatterbox").image is not declared(voice.app, "IndexTTS2").image
    assert "chatterbox-tts==0.1.7" in chatterbox_installs and "index-tts" not in chatterbox_installs
    assert "chatterbox" not in indextts2_installs
    clone = re.search(r"git -C /opt/index-tts checkout --quiet ([0-9a-f]+)", indextts2_installs)
    assert clone and len(clone.group(1)) == 40, "IndexTTS-2 is pinned to a full commit SHA"
    assert "git clone --filter=blob:none https://github.com/index-tts/index-tts.git" in indextts2_installs
    assert "--editable /opt/index-tts" in indextts2_installs
    for commands in (chatterbox, indextts2):
        text = "\n".join(commands)
        assert "apt-get install -y ffmpeg git" in text
        assert "ENV HF_HOME=/weights/hf" in text


def test_the_images_install_talkstacks_worker_packages_except_the_pins_the_models_own(voice):
    from modal_workers.common import WORKER_PACKAGES

    owned = ("numpy==", "huggingface_hub==", "pillow==")
    for name in CLASSES:
        text = installs(dockerfile(declared(voice.app, name).image))
        for package in WORKER_PACKAGES:
            assert (package in text) != package.startswith(owned), package


def test_the_gpu_is_chosen_at_deploy_time_from_talkstack_voice_gpu(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_TOKEN")}
    env |= {"TALKSTACK_VOICE_GPU": "L40S", "MODAL_CONFIG_PATH": str(tmp_path / "no-modal.toml")}
    code = (
        "import json, modal_workers.voice as v\n"
        "from tests.support.modal_introspect import declared\n"
        "print(json.dumps({n: declared(v.app, n).gpu for n in ('Chatterbox', 'IndexTTS2')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"Chatterbox": "L40S", "IndexTTS2": "L40S"}


class RecordingEngine:
    """Stands in for a loaded VoiceEngine: `speak_bytes` only hands things over and reads the file."""

    model = "chatterbox"

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def speak(self, text: str, options: VoiceOptions, outdir: Path, *, reference_voice: Path | None):
        self.seen = {"text": text, "options": options, "reference": reference_voice.read_bytes()}
        output = outdir / f"speech.{options.format}"
        output.parent.mkdir(parents=True)
        output.write_bytes(b"ID3 fake mp3")
        return RenderResult(output=output, bytes=12, duration_s=1.0)


def test_the_smoke_test_method_passes_text_options_and_reference_through(voice, tmp_path):
    engine = RecordingEngine()
    reference = SPEECH.read_bytes()

    audio = voice.speak_bytes(engine, "Hello there.", {"format": "mp3", "exaggeration": 0.7}, reference)

    assert audio == b"ID3 fake mp3"
    assert engine.seen["text"] == "Hello there." and engine.seen["reference"] == reference
    assert engine.seen["options"] == VoiceOptions(model="chatterbox", format="mp3", exaggeration=0.7)


def test_the_app_file_imports_without_modal_credentials_in_a_clean_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_TOKEN")}
    env |= {"MODAL_CONFIG_PATH": str(tmp_path / "no-modal.toml"), "HOME": str(tmp_path)}
    code = "import sys, modal_workers.voice; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# --- Nothing fetched at cold start (issue 14, finding 8) ----------------------------------------


def test_both_images_run_with_the_hub_offline_from_process_start(voice):
    # huggingface_hub reads HF_HUB_OFFLINE once, at import (constants.py), so it must be in the
    # image's environment, not set later by the engine.
    for name in CLASSES:
        assert "ENV HF_HUB_OFFLINE=1" in dockerfile(declared(voice.app, name).image), name


def test_the_indextts2_image_prebuilds_the_text_normaliser_where_indextts_reads_it(voice):
    commands = dockerfile(declared(voice.app, "IndexTTS2").image)
    install = next(i for i, c in enumerate(commands) if "--editable /opt/index-tts" in c)
    prebuild = commands.index(f"RUN {voice.NORMALIZER_PREBUILD}")

    assert install < prebuild  # built by the installed package, in the final filesystem
    # What IndexTTS2.__init__ runs (infer_v2.py:184-185 at ee40fa7d): TextNormalizer(...).load(),
    # which on Linux builds WeTextProcessing's Chinese FSTs into
    # os.path.join(os.path.dirname(front.py), "tagger_cache") (utils/front.py:131) unless they exist;
    # the checkout is installed editable, so front.py is read from the clone itself.
    assert "TextNormalizer().load()" in voice.NORMALIZER_PREBUILD
    assert f"{voice.INDEXTTS_SRC}/indextts/utils/tagger_cache" == voice.NORMALIZER_CACHE
    assert commands[prebuild + 1] == f"RUN test -s {voice.NORMALIZER_CACHE}/zh_tn_tagger.fst"
    # The builder is pinned to the version of upstream's uv.lock (the pyproject leaves it open).
    assert "WeTextProcessing==1.0.4.1" in commands[install]


def test_the_chatterbox_image_fetches_the_chinese_segmenter_model_at_build_time(voice):
    commands = dockerfile(declared(voice.app, "Chatterbox").image)
    install = next(i for i, c in enumerate(commands) if "chatterbox-tts==0.1.7" in c)
    home = commands.index(f"ENV PKUSEG_HOME={voice.PKUSEG_HOME}")
    prefetch = commands.index(f"RUN {voice.PKUSEG_PREFETCH}")

    # chatterbox 0.1.7's MTLTokenizer builds ChineseCangjieConverter for every language, which calls
    # spacy_pkuseg.pkuseg() (tokenizer.py:193-194): its default model is downloaded into
    # PKUSEG_HOME (read at import, config.py) on first use. Fetched once, where the runtime looks.
    assert install < home < prefetch
    assert "pkuseg()" in voice.PKUSEG_PREFETCH


def test_every_class_caps_its_containers_from_the_settings(voice, monkeypatch):
    for name in CLASSES:
        assert declared(voice.app, name).max_containers  # never unbounded GPUs
    monkeypatch.setenv("TALKSTACK_VOICE_MAX_CONTAINERS", "1")
    sys.modules.pop("modal_workers.voice", None)
    module = importlib.import_module("modal_workers.voice")
    for name in CLASSES:
        assert declared(module.app, name).max_containers == 1
