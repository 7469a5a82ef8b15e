"""The voice engine loads only pinned weights: what it hands Chatterbox and IndexTTS-2, checked
against what those packages read and what they would otherwise fetch from the Hub's `main`.

The upstream packages cannot be installed here (torch/numpy pins that clash with ours; IndexTTS-2 is
not on PyPI), so their facts are checked in below, each with the file and line it comes from
(index-tts/index-tts at ee40fa7d, the commit modal_workers/voice.py installs; chatterbox-tts 0.1.7's
wheel, the version it installs), and the upstream classes are replaced at their import boundary by
fakes that keep the upstream signatures (no **kwargs where upstream has none) and perform the same
file reads and the same huggingface_hub calls upstream makes. huggingface_hub itself is real: its
download functions are patched to fail, and its cache resolution runs for real, offline.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import pytest

from talkstack.engines.gpu import voice, weights
from talkstack.engines.gpu.voice import (
    CHATTERBOX_MULTILINGUAL_FILES,
    INDEXTTS2_AUX_ROLES,
    INDEXTTS2_FILES,
    IndexEmotion,
    VoiceEngine,
    chatterbox_multilingual_view,
    indextts2_aux_paths,
)
from talkstack.engines.gpu.weights import local_dir, paths_for, spec_for_repo
from talkstack.errors import ErrorCode, TalkstackError

REPO = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------------------------
# Upstream facts (checked in; each line cited)
# ---------------------------------------------------------------------------------------------

# indextts/infer_v2.py:37-41 — IndexTTS2.__init__'s parameters, in order.
INDEXTTS2_INIT_PARAMS = (
    "cfg_path",
    "model_dir",
    "use_fp16",
    "device",
    "use_cuda_kernel",
    "use_deepspeed",
    "use_accel",
    "use_torch_compile",
    "use_qwen_emo",
    "aux_paths",
)
# indextts/utils/model_download.py, ensure_models_available (called by infer_v2.py:59-61 when
# aux_paths is None): aux key → (Hub repo it fetches from `main`, the call, what infer_v2.py then
# opens from the path). w2v-bert: snapshot_download of the whole repo, read by
# SeamlessM4TFeatureExtractor / Wav2Vec2BertModel.from_pretrained(local_files_only=True)
# (infer_v2.py:129-131); MaskGCT and CAMPPlus: _download_single_file → hf_hub_download of one file
# (read at :139-141, :168-170); BigVGAN: hf_hub_download of two files into a folder that
# BigVGAN.from_pretrained reads (:176-177; s2mel/modules/bigvgan/bigvgan.py:434-470, os.path.isdir
# branch: config.json, bigvgan_generator.pt).
INDEXTTS2_HUB_DOWNLOADS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "w2v_bert": (
        "facebook/w2v-bert-2.0",
        "snapshot",
        ("config.json", "preprocessor_config.json", "model.safetensors"),
    ),
    "semantic_codec": ("amphion/MaskGCT", "file", ("semantic_codec/model.safetensors",)),
    "campplus": ("funasr/campplus", "file", ("campplus_cn_common.bin",)),
    "bigvgan": ("nvidia/bigvgan_v2_22khz_80band_256x", "folder", ("config.json", "bigvgan_generator.pt")),
}
# indextts/cli_v2.py:22-33 — what its own `check` requires in model_dir (IndexTTS2.__init__ opens
# each: cfg.gpt_checkpoint, s2mel_checkpoint, w2v_stat, bpe_model, emo_matrix, spk_matrix, and
# QwenEmotion(qwen_emo_path) since use_qwen_emo defaults to True).
INDEXTTS2_MODEL_FILES = (
    "config.yaml",
    "bpe.model",
    "gpt.pth",
    "s2mel.pth",
    "wav2vec2bert_stats.pt",
    "feat1.pt",
    "feat2.pt",
)
INDEXTTS2_MODEL_DIRS = ("qwen0.6bemo4-merge",)

# chatterbox-tts 0.1.7: tts.py:177 (ChatterboxTTS.from_pretrained's list, all opened by from_local)
# and mtl_tts.py:216 (ChatterboxMultilingualTTS.from_pretrained's allow_patterns: from_local opens
# the first four and conds.pt; the tokenizer fetches Cangjie5_TC.json, tokenizer.py:170-174).
CHATTERBOX_EN = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json", "conds.pt")
CHATTERBOX_MTL = (
    "ve.pt",
    "t3_mtl23ls_v2.safetensors",
    "s3gen.pt",
    "grapheme_mtl_merged_expanded_v1.json",
    "conds.pt",
    "Cangjie5_TC.json",
)
# models/tokenizers/tokenizer.py:170-174: how MTLTokenizer(ckpt_dir/<vocab>) gets the Cangjie table.
CANGJIE_CALL = (
    "hf_hub_download(repo_id='ResembleAI/chatterbox', filename='Cangjie5_TC.json', cache_dir={dir!r})"
)


# ---------------------------------------------------------------------------------------------
# Fixtures: a weights folder laid out as weights.py downloads it, and the Hub made unreachable
# ---------------------------------------------------------------------------------------------


def fill(root: Path, model: str) -> Path:
    """Every file the catalogue requires for `model`, under `root` as weights.download lays it out."""
    for spec in weights.specs_for([model]):
        for rel in spec.required:
            path = local_dir(root, spec) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    return root


class HubCalled(AssertionError):
    pass


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """huggingface_hub's download functions, patched to fail; offline mode on as in the images."""
    import huggingface_hub
    from huggingface_hub import constants

    calls: list[tuple[str, Any]] = []

    def refuse(name: str):
        def call(*args: Any, **kwargs: Any) -> str:
            calls.append((name, args or kwargs))
            raise HubCalled(f"{name}{args or kwargs} reached for the Hub")

        return call

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse("hf_hub_download"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse("snapshot_download"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # it was read when the suite imported it
    return calls


# ---------------------------------------------------------------------------------------------
# IndexTTS-2: a fake at the import boundary that does what upstream does
# ---------------------------------------------------------------------------------------------


class FakeIndexTTS2:
    """indextts.infer_v2.IndexTTS2 at ee40fa7d, as far as files and the Hub go: without aux_paths it
    runs ensure_models_available's Hub calls (model_download.py); with them it opens what
    infer_v2.py opens. `infer` keeps upstream's named parameters (upstream also takes
    **generation_kwargs, passed to the GPT's sampler: left out so a misspelt name fails here)."""

    instances: ClassVar[list[FakeIndexTTS2]] = []

    def __init__(
        self,
        cfg_path="checkpoints/config.yaml",
        model_dir="checkpoints",
        use_fp16=False,
        device=None,
        use_cuda_kernel=None,
        use_deepspeed=False,
        use_accel=False,
        use_torch_compile=False,
        use_qwen_emo=True,
        aux_paths=None,
    ) -> None:
        import huggingface_hub

        if aux_paths is None:  # ensure_models_available(model_dir): fetched from `main`
            cache = os.path.join(model_dir, "hf_cache")
            for repo, how, files in INDEXTTS2_HUB_DOWNLOADS.values():
                if how == "snapshot":
                    huggingface_hub.snapshot_download(repo, local_dir=os.path.join(cache, "w2v-bert-2.0"))
                else:
                    for name in files:
                        huggingface_hub.hf_hub_download(repo_id=repo, filename=name, local_dir=cache)
        opened = [cfg_path]
        opened += [os.path.join(model_dir, name) for name in INDEXTTS2_MODEL_FILES + INDEXTTS2_MODEL_DIRS]
        for key, (_, how, files) in INDEXTTS2_HUB_DOWNLOADS.items():
            path = aux_paths[key]
            opened += [os.path.join(path, name) for name in files] if how != "file" else [path]
        missing = [p for p in opened if not os.path.exists(p)]
        assert not missing, f"IndexTTS2 would fail to open {missing}"
        self.kwargs = dict(cfg_path=cfg_path, model_dir=model_dir, device=device, aux_paths=aux_paths)
        self.infers: list[dict[str, Any]] = []
        FakeIndexTTS2.instances.append(self)

    def infer(
        self,
        spk_audio_prompt,
        text,
        output_path,
        emo_audio_prompt=None,
        emo_alpha=1.0,
        emo_vector=None,
        use_emo_text=False,
        emo_text=None,
        use_random=False,
        interval_silence=200,
        verbose=False,
        max_text_tokens_per_segment=120,
        stream_return=False,
        more_segment_before=0,
    ):
        self.infers.append(
            dict(emo_alpha=emo_alpha, emo_vector=emo_vector, use_emo_text=use_emo_text, emo_text=emo_text)
        )
        # infer_v2.py:723-727: output_path None → (sampling_rate, int16 samples, shape (n, 1)).
        return 22050, (np.full((22050, 1), 16384, dtype=np.int16))


@pytest.fixture
def fake_indextts(monkeypatch: pytest.MonkeyPatch) -> type[FakeIndexTTS2]:
    package, module = ModuleType("indextts"), ModuleType("indextts.infer_v2")
    module.IndexTTS2 = FakeIndexTTS2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "indextts", package)
    monkeypatch.setitem(sys.modules, "indextts.infer_v2", module)
    FakeIndexTTS2.instances = []
    return FakeIndexTTS2


def test_the_fake_keeps_the_upstream_constructor_signature() -> None:
    assert tuple(inspect.signature(FakeIndexTTS2).parameters) == INDEXTTS2_INIT_PARAMS


def test_every_helper_model_indextts2_would_download_gets_a_pinned_local_path(tmp_path: Path) -> None:
    aux = indextts2_aux_paths(fill(tmp_path, "indextts2"))

    assert set(aux) == set(INDEXTTS2_HUB_DOWNLOADS) == set(INDEXTTS2_AUX_ROLES)
    for key, (repo, how, files) in INDEXTTS2_HUB_DOWNLOADS.items():
        spec = spec_for_repo(repo)  # the same repository upstream fetches, in our catalogue...
        assert spec.pinned and "indextts2" in spec.model_ids, repo  # ...at a pinned commit
        folder = local_dir(tmp_path, spec)
        expected = folder / files[0] if how == "file" else folder
        assert Path(aux[key]) == expected, key
        for name in files:  # and the download fetches and requires what upstream then opens
            assert weights._matches(name, spec.allow_patterns) and name in spec.required, (repo, name)


def test_indextts2_is_constructed_from_the_pinned_folders_without_touching_the_hub(
    tmp_path: Path, no_hub: list, fake_indextts: type[FakeIndexTTS2]
) -> None:
    engine = VoiceEngine("indextts2", weights_dir=fill(tmp_path, "indextts2"), device="cpu")

    engine._indextts2()

    assert no_hub == []
    (model,) = fake_indextts.instances
    assert model.kwargs["model_dir"] == str(paths_for("indextts2", tmp_path)["checkpoints"])
    assert model.kwargs["aux_paths"] == indextts2_aux_paths(tmp_path)


def test_a_missing_helper_model_is_a_clear_model_unavailable_error_not_a_download(
    tmp_path: Path, no_hub: list, fake_indextts: type[FakeIndexTTS2]
) -> None:
    fill(tmp_path, "indextts2")
    (local_dir(tmp_path, spec_for_repo("funasr/campplus")) / "campplus_cn_common.bin").unlink()

    with pytest.raises(TalkstackError) as caught:
        VoiceEngine("indextts2", weights_dir=tmp_path, device="cpu")._indextts2()

    assert caught.value.code == ErrorCode.MODEL_UNAVAILABLE and "campplus_cn_common.bin" in str(caught.value)
    assert no_hub == [] and fake_indextts.instances == []


def test_the_engines_infer_arguments_fit_the_upstream_signature(
    tmp_path: Path, no_hub: list, fake_indextts: type[FakeIndexTTS2]
) -> None:
    engine = VoiceEngine("indextts2", weights_dir=fill(tmp_path, "indextts2"), device="cpu")
    reference = tmp_path / "ref.wav"

    samples, rate = engine._synthesize_indextts2("Hello.", reference, emotion=voice.indextts2_emotion("sad"))
    engine._synthesize_indextts2("Hello.", reference, emotion=voice.indextts2_emotion("quietly hopeful"))
    engine._synthesize_indextts2("Hello.", reference, emotion=IndexEmotion())

    assert rate == 22050 and samples.shape == (22050,) and np.allclose(samples, 0.5)
    vector, text, plain = fake_indextts.instances[0].infers
    # The README's example (README.md:295): one slot at 0.8, the others 0, in upstream's slot order
    # (infer_v2.py normalize_emo_vec: happy, angry, sad, afraid, disgusted, melancholic, surprised, calm).
    assert vector["emo_vector"] == [0, 0, 0.8, 0, 0, 0, 0, 0] and vector["emo_alpha"] == 1.0
    assert text == {"emo_alpha": 0.6, "emo_vector": None, "use_emo_text": True, "emo_text": "quietly hopeful"}
    assert plain == {"emo_alpha": 1.0, "emo_vector": None, "use_emo_text": False, "emo_text": None}


def test_indextts2_as_the_engine_called_it_before_would_have_downloaded(
    tmp_path: Path, no_hub: list, fake_indextts: type[FakeIndexTTS2]
) -> None:
    """The control: the same fake, called without aux_paths as the engine used to, hits the Hub."""
    folder = paths_for("indextts2", fill(tmp_path, "indextts2"))["checkpoints"]

    with pytest.raises(HubCalled):
        FakeIndexTTS2(cfg_path=str(folder / "config.yaml"), model_dir=str(folder), device="cpu")

    assert no_hub[0][0] == "snapshot_download"


def test_the_catalogue_requires_everything_indextts2_opens_in_its_model_dir() -> None:
    spec = spec_for_repo("IndexTeam/IndexTTS-2")

    for name in INDEXTTS2_MODEL_FILES:
        assert name in spec.required and name in INDEXTTS2_FILES
    for folder in INDEXTTS2_MODEL_DIRS:
        assert folder in INDEXTTS2_FILES
        assert any(rel.startswith(f"{folder}/") for rel in spec.required)
        assert f"{folder}/*" in spec.allow_patterns


# ---------------------------------------------------------------------------------------------
# The Hub offline: what makes anything still unpinned fail loudly
# ---------------------------------------------------------------------------------------------


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    clean |= {"PYTHONPATH": str(REPO), "HF_HOME": "/nonexistent-hf-home", **env}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=clean, capture_output=True, text=True)


def test_hub_offline_puts_the_real_library_offline_so_an_unpinned_fetch_raises(tmp_path: Path) -> None:
    code = (
        "from talkstack.engines.gpu.voice import hub_offline\n"
        "hub_offline()\n"
        "import huggingface_hub\n"
        "from huggingface_hub import constants\n"
        "assert constants.HF_HUB_OFFLINE\n"
        "try:\n"
        "    huggingface_hub.hf_hub_download(\n"
        f"        'funasr/campplus', 'campplus_cn_common.bin', cache_dir={str(tmp_path)!r}\n"
        "    )\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    out = run_python(code)

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "LocalEntryNotFoundError"


def test_loading_refuses_when_the_library_was_put_online_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # hub_offline only defaults it; restored afterwards

    with pytest.raises(TalkstackError) as caught:
        voice.hub_offline()

    assert caught.value.code == ErrorCode.MODEL_UNAVAILABLE and "HF_HUB_OFFLINE" in str(caught.value)


# ---------------------------------------------------------------------------------------------
# Chatterbox: the catalogue's list, and the multilingual tokenizer's Cangjie table
# ---------------------------------------------------------------------------------------------


def test_the_catalogue_requires_every_file_chatterbox_0_1_7_loads() -> None:
    spec = spec_for_repo("ResembleAI/chatterbox")

    for name in CHATTERBOX_EN + CHATTERBOX_MTL:
        assert name in spec.required, name
        assert weights._matches(name, spec.allow_patterns), name
    assert set(CHATTERBOX_MTL) == set(CHATTERBOX_MULTILINGUAL_FILES)
    # Nothing beyond them: 0.1.7 never reads another T3 generation.
    assert set(spec.required) == set(CHATTERBOX_EN + CHATTERBOX_MTL)


def test_the_multilingual_view_gives_the_tokenizer_the_pinned_cangjie_table_offline(tmp_path: Path) -> None:
    folder = local_dir(fill(tmp_path / "weights", "chatterbox"), spec_for_repo("ResembleAI/chatterbox"))
    (folder / "Cangjie5_TC.json").write_text('["日\\ta"]')
    view = chatterbox_multilingual_view(folder, tmp_path / "view")
    lookup = "from huggingface_hub import hf_hub_download\nprint(open(" + CANGJIE_CALL + ").read())"

    through_view = run_python(lookup.format(dir=str(view)), HF_HUB_OFFLINE="1")
    from_folder = run_python(lookup.format(dir=str(folder)), HF_HUB_OFFLINE="1")

    assert through_view.returncode == 0, through_view.stderr
    assert through_view.stdout.strip() == '["日\\ta"]'
    # What the engine handed from_local before: the table is not found (the tokenizer swallows
    # this and Chinese goes out as unknown tokens), and online it would be fetched from `main`.
    assert "LocalEntryNotFoundError" in from_folder.stderr
    for name in CHATTERBOX_MTL:  # from_local opens these by name in the folder it is given
        assert (view / name).read_bytes() == (folder / name).read_bytes()


class FakeMultilingual:
    """chatterbox.mtl_tts.ChatterboxMultilingualTTS (0.1.7): from_local(ckpt_dir, device)."""

    loaded_from: ClassVar[list[Path]] = []

    def __init__(self) -> None:
        self.conds, self.sr = object(), 24_000

    @classmethod
    def from_local(cls, ckpt_dir, device) -> FakeMultilingual:
        for name in CHATTERBOX_MTL[:4]:  # mtl_tts.py:174-192: opened unconditionally
            assert (Path(ckpt_dir) / name).is_file(), name
        cls.loaded_from.append(Path(ckpt_dir))
        return cls()


def test_the_engine_loads_the_multilingual_model_from_the_view(
    tmp_path: Path, no_hub: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    package, module = ModuleType("chatterbox"), ModuleType("chatterbox.mtl_tts")
    module.ChatterboxMultilingualTTS = FakeMultilingual  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "chatterbox", package)
    monkeypatch.setitem(sys.modules, "chatterbox.mtl_tts", module)
    FakeMultilingual.loaded_from = []
    engine = VoiceEngine("chatterbox", weights_dir=fill(tmp_path, "chatterbox"), device="cpu")

    engine._chatterbox("de")

    (ckpt_dir,) = FakeMultilingual.loaded_from
    revision = spec_for_repo("ResembleAI/chatterbox").revision
    assert (ckpt_dir / "models--ResembleAI--chatterbox" / "refs" / "main").read_text() == revision
    assert no_hub == []


# --- The engine's Chatterbox calls against 0.1.7's signatures --------------------------------


class FakeChatterbox:
    """ChatterboxTTS (tts.py) and, with `multilingual`, ChatterboxMultilingualTTS (mtl_tts.py):
    generate / prepare_conditionals with their 0.1.7 parameters, `.sr` = S3GEN_SR = 24 kHz
    (models/s3gen/const.py:1), generate → a (1, T) tensor (tts.py / mtl_tts.py return lines)."""

    def __init__(self) -> None:
        self.sr, self.conds, self.calls = 24_000, "built-in", []

    def prepare_conditionals(self, wav_fpath, exaggeration=0.5):  # tts.py:182, mtl_tts.py:222
        self.conds = f"cloned:{wav_fpath}"

    def generate(  # tts.py:208-217
        self,
        text,
        repetition_penalty=1.2,
        min_p=0.05,
        top_p=1.0,
        audio_prompt_path=None,
        exaggeration=0.5,
        cfg_weight=0.5,
        temperature=0.8,
    ):
        import torch

        self.calls.append({"text": text, "conds": self.conds, "exaggeration": exaggeration})
        return torch.full((1, 2400), 0.25)


class FakeChatterboxMultilingual(FakeChatterbox):
    def generate(  # mtl_tts.py:249-259
        self,
        text,
        language_id,
        audio_prompt_path=None,
        exaggeration=0.5,
        cfg_weight=0.5,
        temperature=0.8,
        repetition_penalty=2.0,
        min_p=0.05,
        top_p=1.0,
    ):
        # mtl_tts.py:262: language_id must be one of SUPPORTED_LANGUAGES (lower-cased)
        assert language_id.lower() in voice.CHATTERBOX_LANGUAGES
        return super().generate(text, exaggeration=exaggeration, cfg_weight=cfg_weight)


def test_the_engines_chatterbox_calls_fit_both_0_1_7_signatures(tmp_path: Path) -> None:
    engine = VoiceEngine("chatterbox", weights_dir=tmp_path, device="cpu")
    english, multilingual = FakeChatterbox(), FakeChatterboxMultilingual()
    engine._models = {"en": english, "multilingual": multilingual}
    engine._builtin_conds = {"en": "built-in", "multilingual": "built-in"}
    engine._conditioned_on = {"en": None, "multilingual": None}
    ref = tmp_path / "ref.wav"

    for language, model in (("en", english), ("de", multilingual)):
        samples, rate = engine._synthesize_chatterbox(
            "Hallo.", ref, language=language, exaggeration=0.7, cfg_weight=0.3
        )
        engine._synthesize_chatterbox("Hallo.", None, language=language, exaggeration=0.5, cfg_weight=0.5)

        assert rate == 24_000 and samples.shape == (2400,) and samples.dtype == np.float32
        assert [c["conds"] for c in model.calls] == [f"cloned:{ref}", "built-in"]


def test_the_engines_language_list_is_0_1_7s_supported_languages() -> None:
    # mtl_tts.py:24-48 (SUPPORTED_LANGUAGES keys)
    upstream = {"ar", "da", "de", "el", "en", "es", "fi", "fr", "he", "hi", "it", "ja"}
    upstream |= {"ko", "ms", "nl", "no", "pl", "pt", "ru", "sv", "sw", "tr", "zh"}
    assert frozenset(upstream) == voice.CHATTERBOX_LANGUAGES and len(upstream) == 23
