"""One warm voice container serves many tenants: a request must speak in its own voice, never in the
voice of the request before it.

Both models keep the last speaker as state. chatterbox-tts 0.1.7: `from_local` loads the built-in
voice from conds.pt into `model.conds`; `prepare_conditionals(path, exaggeration)` REPLACES
`model.conds` with conditionals computed from the file; `generate()` speaks with whatever
`model.conds` holds, and when its `exaggeration` differs it swaps `conds.t3` on that same object
(tts.py:182-242 and mtl_tts.py:222-282). IndexTTS-2 at ee40fa7d: `infer()` recomputes the speaker's
conditioning only when `spk_audio_prompt` differs, as a string, from the last one
(infer_v2.py:447-489, `cache_spk_audio_prompt`).

So the engine is run for real here — `VoiceEngine.load()` imports the model packages, then
`speak()` / the worker runner prepare the reference, split, synthesise, trim, join, encode — with
stub model classes installed as those packages (sys.modules). The stubs keep the upstream
signatures and the upstream state behaviour above, and speak a tone whose pitch IS the speaker:
the built-in voice is 150 Hz (in conds.pt), a cloned voice is the dominant frequency of the
reference the model read. The tests measure the pitch of the file the engine wrote.
"""

from __future__ import annotations

import importlib.machinery
import inspect
import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import httpx
import librosa
import numpy as np
import pytest
import soundfile
import torch

from talkstack.contract.request import VoiceOptions
from talkstack.contract.worker import InputUrl, Markers, OutputUrl, VoiceTask
from talkstack.engines.gpu.voice import CHATTERBOX_REPO, VoiceEngine
from talkstack.media.audio import write_wav
from talkstack.workers.runner import run_task
from tests.unit.test_avatar_engine_pipeline import stub_parameters, upstream_parameters
from tests.unit.test_voice_weights import FakeIndexTTS2, fill

S3GEN_SR = 24_000  # chatterbox models/s3gen/const.py: the rate generate() returns (model.sr)
BUILT_IN_HZ = 150.0
ALICE_HZ, BOB_HZ = 260.0, 410.0  # two tenants' reference voices
TEXTS = {
    "en": "Good morning, and welcome to the quarterly review. Revenue grew in every region this year.",
    "fr": "Bonjour à tous, et bienvenue à la revue trimestrielle. Le chiffre d'affaires a progressé.",
}


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def tone_speech(text: str, hz: float, rate: int) -> np.ndarray:
    """A model's answer: the speaker's pitch for a length set by the text, in silence as TTS output is."""
    t = np.arange(round(rate * (0.6 + 0.02 * len(text)))) / rate
    pad = np.zeros(round(rate * 0.3), np.float32)
    return np.concatenate([pad, (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32), pad])


# ---------------------------------------------------------------------------------------------
# chatterbox-tts 0.1.7, as far as the speaker goes
# ---------------------------------------------------------------------------------------------


@dataclass
class T3Cond:
    """models/t3/modules/cond_enc.py: the fields tts.py builds it with."""

    speaker_emb: torch.Tensor
    cond_prompt_speech_tokens: torch.Tensor | None = None
    emotion_adv: torch.Tensor = field(default_factory=lambda: 0.5 * torch.ones(1, 1, 1))


@dataclass
class Conditionals:
    """tts.py:63-102. Here the speaker embedding is one number: the speaker's pitch."""

    t3: T3Cond
    gen: dict

    @classmethod
    def load(cls, fpath: Path, map_location: str = "cpu") -> Conditionals:
        kwargs = torch.load(fpath, map_location=map_location, weights_only=True)
        return cls(T3Cond(**kwargs["t3"]), kwargs["gen"])


def save_built_in_voice(path: Path, hz: float) -> None:
    """conds.pt as Conditionals.save writes it (tts.py:86-91)."""
    voice = torch.tensor([[hz]])
    t3 = {"speaker_emb": voice, "cond_prompt_speech_tokens": None, "emotion_adv": 0.5 * torch.ones(1, 1, 1)}
    torch.save({"t3": t3, "gen": {"embedding": voice[0]}}, path)


class StubChatterboxTTS:
    """chatterbox.tts.ChatterboxTTS with its networks replaced by 'speak the speaker's pitch'."""

    loaded: ClassVar[list[str]] = []  # every from_local, by class (subclasses share the list)
    opens: ClassVar[tuple[str, ...]] = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors")

    def __init__(self, device: str, conds: Conditionals | None = None) -> None:
        self.sr, self.device, self.conds = S3GEN_SR, device, conds

    @classmethod
    def from_local(cls, ckpt_dir, device):  # tts.py:122-160
        ckpt_dir = Path(ckpt_dir)
        for name in cls.opens:
            assert (ckpt_dir / name).is_file(), name
        conds = None
        if (builtin_voice := ckpt_dir / "conds.pt").exists():
            conds = Conditionals.load(builtin_voice)
        cls.loaded.append(cls.__name__)
        return cls(device, conds=conds)

    def prepare_conditionals(self, wav_fpath, exaggeration=0.5):  # tts.py:182-206
        wav, _ = librosa.load(wav_fpath, sr=S3GEN_SR)
        voice = torch.tensor([[dominant_hz(wav, S3GEN_SR)]])
        t3_cond = T3Cond(speaker_emb=voice, emotion_adv=exaggeration * torch.ones(1, 1, 1))
        self.conds = Conditionals(t3_cond, {"embedding": voice[0]})  # a new object: replaced, not mutated

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
        return self._generate(text, audio_prompt_path, exaggeration)

    def _generate(self, text: str, audio_prompt_path: str | None, exaggeration: float) -> torch.Tensor:
        if audio_prompt_path:
            self.prepare_conditionals(audio_prompt_path, exaggeration=exaggeration)
        else:
            assert self.conds is not None, (
                "Please `prepare_conditionals` first or specify `audio_prompt_path`"
            )
        # tts.py:226-233: a new exaggeration swaps conds.t3 on the object generate() was handed
        if float(exaggeration) != float(self.conds.t3.emotion_adv[0, 0, 0].item()):
            _cond = self.conds.t3
            self.conds.t3 = T3Cond(
                speaker_emb=_cond.speaker_emb,
                cond_prompt_speech_tokens=_cond.cond_prompt_speech_tokens,
                emotion_adv=exaggeration * torch.ones(1, 1, 1),
            )
        hz = float(self.conds.t3.speaker_emb[0, 0])
        return torch.from_numpy(tone_speech(text, hz, self.sr)).unsqueeze(0)  # (1, T), as tts.py:272


class StubChatterboxMultilingualTTS(StubChatterboxTTS):
    """chatterbox.mtl_tts.ChatterboxMultilingualTTS: the same speaker state, language_id added."""

    opens = ("ve.pt", "t3_mtl23ls_v2.safetensors", "s3gen.pt", "grapheme_mtl_merged_expanded_v1.json")

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
        return self._generate(text, audio_prompt_path, exaggeration)


class StubIndexTTS2(FakeIndexTTS2):
    """indextts.infer_v2.IndexTTS2: the constructor checks of test_voice_weights' fake, plus the
    speaker cache of infer_v2.py:447-489, keyed on the prompt's path string."""

    cache_spk_cond: float | None = None
    cache_spk_audio_prompt: str | None = None

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
        if self.cache_spk_cond is None or self.cache_spk_audio_prompt != spk_audio_prompt:
            audio, rate = librosa.load(spk_audio_prompt, sr=None)
            audio = audio[: 15 * rate]  # _load_and_cut_audio(spk_audio_prompt, 15)
            self.cache_spk_cond = dominant_hz(audio, rate)
            self.cache_spk_audio_prompt = spk_audio_prompt
        wav = tone_speech(text, self.cache_spk_cond, 22050)
        return 22050, (wav * 32767).astype(np.int16)[:, None]  # infer_v2.py:723-727


def _installed_source(package: str, module: str) -> Path | None:
    """The file of `package.module` where the package is installed, located but not imported (the
    model packages need GPU libraries to import); None where it is not installed (here, as a rule:
    the packages are in the voice image, not in the test environment)."""
    spec = importlib.machinery.PathFinder.find_spec(package)  # sys.path only, never the stubs
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / f"{module}.py"
    return path if path.is_file() else None


UPSTREAM = {  # (package, module, official class, method): our stub of it
    ("chatterbox", "tts", "ChatterboxTTS", "generate"): StubChatterboxTTS.generate,
    ("chatterbox", "tts", "ChatterboxTTS", "prepare_conditionals"): StubChatterboxTTS.prepare_conditionals,
    (
        "chatterbox",
        "mtl_tts",
        "ChatterboxMultilingualTTS",
        "generate",
    ): StubChatterboxMultilingualTTS.generate,
    ("chatterbox", "mtl_tts", "ChatterboxMultilingualTTS", "prepare_conditionals"): (
        StubChatterboxMultilingualTTS.prepare_conditionals
    ),
    ("indextts", "infer_v2", "IndexTTS2", "infer"): StubIndexTTS2.infer,
}


@pytest.mark.parametrize("where", UPSTREAM, ids=lambda w: f"{w[2]}.{w[3]}")
def test_each_stub_has_the_signature_of_the_upstream_method_it_stands_for(where) -> None:
    """Against the installed package's source itself, parsed with `ast` (chatterbox-tts 0.1.7,
    index-tts ee40fa7d: what modal_workers/voice.py installs); skipped where it is not installed."""
    package, module, cls, method = where
    source = _installed_source(package, module)
    if source is None:
        pytest.skip(f"{package} is not installed here: the stub drift guard below still runs")
    assert stub_parameters(UPSTREAM[where]) == upstream_parameters(source, cls, method)


def test_the_stubs_have_not_drifted_from_the_signatures_copied_from_upstream() -> None:
    """A guard against the stubs drifting from the signatures copied by hand from chatterbox-tts
    0.1.7 and index-tts ee40fa7d. It checks our copy, not upstream: the test above compares with
    upstream itself where the packages are installed."""
    # tts.py:182 and :208-217, mtl_tts.py:222 and :249-259 (chatterbox-tts 0.1.7)
    english = ("text", "repetition_penalty", "min_p", "top_p", "audio_prompt_path", "exaggeration")
    english += ("cfg_weight", "temperature")
    multilingual = ("text", "language_id", "audio_prompt_path", "exaggeration", "cfg_weight")
    multilingual += ("temperature", "repetition_penalty", "min_p", "top_p")
    assert tuple(inspect.signature(StubChatterboxTTS.generate).parameters)[1:] == english
    assert tuple(inspect.signature(StubChatterboxMultilingualTTS.generate).parameters)[1:] == multilingual
    for stub in (StubChatterboxTTS, StubChatterboxMultilingualTTS):
        assert tuple(inspect.signature(stub.prepare_conditionals).parameters) == (
            "self",
            "wav_fpath",
            "exaggeration",
        )
    # infer_v2.py:371-375 (index-tts ee40fa7d), less its **generation_kwargs: a stub refuses them
    index = ("spk_audio_prompt", "text", "output_path", "emo_audio_prompt", "emo_alpha", "emo_vector")
    index += ("use_emo_text", "emo_text", "use_random", "interval_silence", "verbose")
    index += ("max_text_tokens_per_segment", "stream_return", "more_segment_before")
    assert tuple(inspect.signature(StubIndexTTS2.infer).parameters)[1:] == index


# ---------------------------------------------------------------------------------------------
# The real engine, loaded with the stubs as its model packages
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stubs installed where the engine imports the models from; the Hub offline, as in the images."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read when the suite imported it
    chatterbox, tts, mtl = (
        ModuleType("chatterbox"),
        ModuleType("chatterbox.tts"),
        ModuleType("chatterbox.mtl_tts"),
    )
    tts.ChatterboxTTS = StubChatterboxTTS  # type: ignore[attr-defined]
    mtl.ChatterboxMultilingualTTS = StubChatterboxMultilingualTTS  # type: ignore[attr-defined]
    indextts, infer_v2 = ModuleType("indextts"), ModuleType("indextts.infer_v2")
    infer_v2.IndexTTS2 = StubIndexTTS2  # type: ignore[attr-defined]
    for name, module in {
        "chatterbox": chatterbox,
        "chatterbox.tts": tts,
        "chatterbox.mtl_tts": mtl,
        "indextts": indextts,
        "indextts.infer_v2": infer_v2,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    StubChatterboxTTS.loaded = []
    FakeIndexTTS2.instances = []


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    """Every file the catalogue requires (placeholders: the stubs do not read the networks), with a
    real conds.pt holding the built-in voice."""
    root = fill(tmp_path / "weights", "chatterbox")
    save_built_in_voice(root / CHATTERBOX_REPO / "conds.pt", BUILT_IN_HZ)
    return fill(root, "indextts2")


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tenants' uploads: 8 s of each one's voice at 44.1 kHz."""
    folder = tmp_path_factory.mktemp("voices")
    rate = 44_100
    t = np.arange(8 * rate) / rate
    return {
        name: write_wav(folder / f"{name}.wav", (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate)
        for name, hz in (("alice", ALICE_HZ), ("bob", BOB_HZ))
    }


def pitch_of(path: Path) -> float:
    samples, rate = soundfile.read(str(path), dtype="float32")
    return dominant_hz(samples, rate)


def speak(engine: VoiceEngine, outdir: Path, reference: Path | None, language: str = "en") -> float:
    """One request on the warm engine; the pitch of the speech it wrote."""
    options = VoiceOptions(model=engine.model, language=language)
    result = engine.speak(TEXTS[language], options, outdir, reference_voice=reference)
    return pitch_of(result.output)


@pytest.mark.parametrize("language", ["en", "fr"])  # the English model, the multilingual one
def test_a_request_without_a_reference_speaks_in_the_built_in_voice_after_a_cloned_one(
    models: None, weights: Path, voices: dict[str, Path], tmp_path: Path, language: str
) -> None:
    engine = VoiceEngine("chatterbox", weights_dir=weights, device="cpu")

    heard = [
        speak(engine, tmp_path / "1", None, language),  # the built-in voice, as loaded
        speak(engine, tmp_path / "2", voices["alice"], language),  # Alice clones hers
        speak(engine, tmp_path / "3", None, language),  # the next tenant gives no reference
        speak(engine, tmp_path / "4", voices["alice"], language),
        speak(engine, tmp_path / "5", voices["bob"], language),
        speak(engine, tmp_path / "6", None, language),
    ]

    assert heard == pytest.approx([BUILT_IN_HZ, ALICE_HZ, BUILT_IN_HZ, ALICE_HZ, BOB_HZ, BUILT_IN_HZ], abs=3)
    # one warm model per variant served all six (English loads with the engine, multilingual on use)
    multilingual = ["StubChatterboxMultilingualTTS"] if language != "en" else []
    assert StubChatterboxTTS.loaded == ["StubChatterboxTTS", *multilingual]


@pytest.mark.parametrize("model", ["chatterbox", "indextts2"])
def test_a_second_reference_written_to_the_same_folder_is_heard_not_the_first(
    models: None, weights: Path, voices: dict[str, Path], tmp_path: Path, model: str
) -> None:
    # The worker runner gives every task a fresh folder; a caller that reuses one must still get the
    # voice it sent: the prepared file is named by its content, and both models key on that name.
    engine = VoiceEngine(model, weights_dir=weights, device="cpu")
    same = tmp_path / "out"

    heard = [speak(engine, same, voices["alice"]), speak(engine, same, voices["bob"])]
    heard.append(speak(engine, same, voices["alice"]))

    assert heard == pytest.approx([ALICE_HZ, BOB_HZ, ALICE_HZ], abs=3)


# ---------------------------------------------------------------------------------------------
# The same, through the worker protocol (what a warm Modal container runs per input)
# ---------------------------------------------------------------------------------------------


class Store:
    """The pre-signed URLs' other end: serves the uploads, keeps what the worker PUTs."""

    def __init__(self, inputs: dict[str, bytes]) -> None:
        self.inputs, self.put = inputs, {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            body = self.inputs.get(request.url.path)
            return httpx.Response(404) if body is None else httpx.Response(200, content=body)
        self.put[request.url.path] = request.content
        return httpx.Response(200)


def voice_task(job: str, reference: bool) -> dict[str, Any]:
    def url(name: str) -> OutputUrl:
        return OutputUrl(url=f"http://store.test/{job}/{name}", key=f"{job}/{name}", content_type="x")

    inputs = (
        {"reference_voice": InputUrl(url=f"http://store.test/{job}/voice.wav", filename="voice.wav")}
        if reference
        else {}
    )
    return VoiceTask(
        job_id=job,
        step="voice",
        attempt_id=f"voice-{job}",
        attempt=1,
        model="chatterbox",
        options={"model": "chatterbox"},
        text=TEXTS["en"],
        inputs=inputs,
        outputs={"audio": url("speech.wav")},
        markers=Markers(progress=url("progress.json"), result=url("result.json"), error=url("error.json")),
        heartbeat_interval_s=30,
        deadline=datetime.now(UTC) + timedelta(hours=1),
    ).model_dump(mode="json")


def test_tenants_in_turn_on_one_warm_worker_each_get_their_own_voice(
    models: None, weights: Path, voices: dict[str, Path], tmp_path: Path
) -> None:
    engine = VoiceEngine("chatterbox", weights_dir=weights, device="cpu")
    engine.load()  # as @modal.enter does, once per container
    store = Store(
        {"/alice1/voice.wav": voices["alice"].read_bytes(), "/bob2/voice.wav": voices["bob"].read_bytes()}
    )
    jobs = [("alice1", True), ("carol3", False), ("bob2", True), ("dave4", False)]

    with httpx.Client(transport=httpx.MockTransport(store)) as client:
        assert all(run_task(voice_task(job, ref), client, step=engine) for job, ref in jobs)

    heard = {}
    for job, _ in jobs:
        assert json.loads(store.put[f"/{job}/result.json"])["sample_rate"] == S3GEN_SR
        (tmp_path / f"{job}.wav").write_bytes(store.put[f"/{job}/speech.wav"])
        heard[job] = pitch_of(tmp_path / f"{job}.wav")
    assert heard == pytest.approx(
        {"alice1": ALICE_HZ, "carol3": BUILT_IN_HZ, "bob2": BOB_HZ, "dave4": BUILT_IN_HZ}, abs=3
    )
