"""The chatterbox / indextts2 voice engine on real audio: reference checks, text splitting, encoding,
options, progress, and the worker protocol.

The one faked boundary is the Chatterbox / IndexTTS-2 model itself — loading it and the one call per
sentence (`_synthesize_chatterbox` / `_synthesize_indextts2`) — because their weights cannot be
downloaded here. The fake answers with real speech (the bundled sample, resampled to the model's rate
and wrapped in silence the way a model's output is) and records what it was given, so the tests can
check what reached the model. Everything else runs for real: PyAV decoding, silence trimming, soxr
resampling, pyloudnorm, ffmpeg's atempo and MP3 encoder, the worker runner over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyloudnorm
import pytest
import soundfile

from talkstack.contract.request import VoiceOptions
from talkstack.contract.worker import InputUrl, Markers, OutputUrl, VoiceTask, WorkerTask
from talkstack.engines.gpu.voice import (
    INDEXTTS2_EMOTIONS,
    PAUSE_S,
    REFERENCE_MAX_S,
    REFERENCE_MIN_S,
    SPECS,
    IndexEmotion,
    VoiceEngine,
    prepare_reference,
    probe_audio,
    split_sentences,
    spoken_length,
)
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.audio import read_audio, resample, write_wav
from talkstack.workers.runner import run_task
from tests.conftest import SPEECH, transcode

TEXT = (
    "Good morning, and welcome to the quarterly review. Revenue grew in every region this year. "
    "Dr. Patel will walk us through the numbers, e.g. the margins by product line!"
)
MODEL_SILENCE_S = 0.4  # what the fake model puts before and after each sentence, as real models do


# ---------------------------------------------------------------------------------------------
# Real audio: references cut from the bundled sample (13.5 s of speech at 22.05 kHz)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    samples, rate = soundfile.read(str(SPEECH), dtype="float32")
    assert len(samples) / rate > 13, "the bundled sample got shorter: the cuts below assume 13.5 s"
    return samples, rate


@pytest.fixture(scope="module")
def refs(tmp_path_factory: pytest.TempPathFactory, speech: tuple[np.ndarray, int]) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("refs")
    samples, rate = speech
    silence = np.zeros(3 * rate, np.float32)
    files = {
        "3s": write_wav(d / "3s.wav", samples[: 3 * rate], rate),
        "10s": write_wav(d / "10s.wav", samples[: 10 * rate], rate),
        "70s": write_wav(d / "70s.wav", np.tile(samples, 6)[: 70 * rate], rate),
        # 3 s of silence, 10 s of speech, 3 s of silence: 16 s long, 10 s of it speech.
        "padded": write_wav(d / "padded.wav", np.concatenate([silence, samples[: 10 * rate], silence]), rate),
        # 9 s long but only 3 s of speech: the check is on speech, not on file length.
        "3s_in_9s": write_wav(
            d / "3s_in_9s.wav", np.concatenate([samples[: 3 * rate], silence, silence]), rate
        ),
        # A whisper: 30 dB down.
        "quiet": write_wav(d / "quiet.wav", samples[: 10 * rate] * np.float32(10 ** (-30 / 20)), rate),
    }
    # What a phone uploads: stereo MP3 at 44.1 kHz.
    files["phone_mp3"] = transcode(files["10s"], d / "phone.mp3", ar=44_100, ac=2, acodec="libmp3lame")
    return files


def lufs(path: Path) -> float:
    samples, rate = soundfile.read(str(path), dtype="float64")
    return float(pyloudnorm.Meter(rate).integrated_loudness(samples))


# ---------------------------------------------------------------------------------------------
# The engine with its model faked
# ---------------------------------------------------------------------------------------------


@dataclass
class Call:
    text: str
    reference: Path | None
    controls: dict[str, Any]
    reference_rate: int | None
    reference_s: float | None


class FakeModelVoiceEngine(VoiceEngine):
    """VoiceEngine whose model (load + one call per sentence) is faked; everything else is real."""

    def __init__(self, model: str, *, sample: tuple[np.ndarray, int], silent: bool = False) -> None:
        super().__init__(model)
        self.sample, self.silent = sample, silent
        self.calls: list[Call] = []
        self.loads = 0

    def _load(self) -> None:
        self.loads += 1

    def _answer(self, text: str, reference: Path | None, controls: dict[str, Any], rate: int):
        info = soundfile.info(str(reference)) if reference is not None else None
        self.calls.append(Call(text, reference, controls, info and info.samplerate, info and info.duration))
        return speech_like(text, rate, self.sample, silent=self.silent), rate

    def _synthesize_chatterbox(self, text: str, reference: Path | None, **controls: Any):
        return self._answer(text, reference, controls, 24_000)

    def _synthesize_indextts2(self, text: str, reference: Path, *, emotion: IndexEmotion):
        return self._answer(text, reference, {"emotion": emotion}, 22_050)


def speech_like(text: str, rate: int, sample: tuple[np.ndarray, int], silent: bool = False) -> np.ndarray:
    """Deterministic 'speech' for `text`: 1 s plus 40 ms per character of the real sample (its stretch
    from 2.6 s to 8.5 s, which has no long pause), wrapped in silence the way a TTS model's output is."""
    samples, sample_rate = sample
    stretch = samples[round(2.6 * sample_rate) : round(8.5 * sample_rate)]
    voiced = np.tile(resample(stretch, sample_rate, rate), 4)[: round(rate * spoken_s(text))]
    if silent:
        voiced = np.zeros_like(voiced)
    pad = np.zeros(round(rate * MODEL_SILENCE_S), np.float32)
    return np.concatenate([pad, voiced, pad])


def spoken_s(text: str) -> float:
    return 1.0 + 0.04 * len(text)


def expected_duration(texts: list[str]) -> float:
    """What the engine should deliver: each sentence's speech (the model's silence trimmed to an 80 ms
    margin on both sides), joined with PAUSE_S pauses."""
    return sum(spoken_s(t) + 2 * 0.08 for t in texts) + PAUSE_S * (len(texts) - 1)


@pytest.fixture
def chatterbox(speech) -> FakeModelVoiceEngine:
    return FakeModelVoiceEngine("chatterbox", sample=speech)


@pytest.fixture
def indextts2(speech) -> FakeModelVoiceEngine:
    return FakeModelVoiceEngine("indextts2", sample=speech)


def quiet(fraction: float, message: str) -> None:
    return None


def options(model: str = "chatterbox", **kwargs: Any) -> VoiceOptions:
    return VoiceOptions(model=model, **kwargs)


def task(model: str = "chatterbox", *, text: str = TEXT, **opts: Any) -> WorkerTask:
    url = OutputUrl(url="http://store.test/marker", key="k", content_type="application/json")
    return VoiceTask(
        job_id="job-1",
        step="voice",
        attempt_id="voice-1-abc",
        attempt=1,
        model=model,
        options={"model": model, **opts},
        text=text,
        outputs={"audio": OutputUrl(url="http://store.test/out", key="job-1/speech.wav", content_type="x")},
        markers=Markers(progress=url, result=url, error=url),
        heartbeat_interval_s=30,
        deadline=datetime.now(UTC) + timedelta(hours=1),
    )


# ---------------------------------------------------------------------------------------------
# The reference voice
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["3s", "3s_in_9s"])
def test_a_reference_with_under_5_s_of_speech_is_audio_too_short(refs, tmp_path, name):
    with pytest.raises(TalkstackError) as info:
        prepare_reference(refs[name], tmp_path, rate=24_000, target_lufs=-27)
    error = info.value
    assert error.code == "AUDIO_TOO_SHORT"
    assert "reference_voice" in error.message and f"at least {REFERENCE_MIN_S:g} s" in error.message
    assert error.details["duration_s"] == pytest.approx(3.0, abs=0.2)
    assert error.details["input"] == "reference_voice"


def test_a_reference_with_over_60_s_of_speech_is_audio_too_long(refs, tmp_path):
    with pytest.raises(TalkstackError) as info:
        prepare_reference(refs["70s"], tmp_path, rate=24_000, target_lufs=-27)
    assert info.value.code == "AUDIO_TOO_LONG"
    assert f"at most {REFERENCE_MAX_S:g} s" in info.value.message
    assert info.value.details["duration_s"] == pytest.approx(70.0, abs=0.2)


def test_leading_and_trailing_silence_is_trimmed(refs, tmp_path):
    prepared = prepare_reference(refs["padded"], tmp_path, rate=24_000, target_lufs=-27)

    # 10 s of speech plus the 150 ms margins kept on each side; the 6 s of silence is gone.
    assert prepared.duration_s == pytest.approx(10.3, abs=0.1)
    assert prepared.trimmed_s == pytest.approx(5.7, abs=0.1)
    written = read_audio(prepared.path)
    assert written.info.duration_s == pytest.approx(prepared.duration_s, abs=0.01)
    levels_at_edges = np.abs(written.samples[:2400]).max(), np.abs(written.samples[-2400:]).max()
    assert max(levels_at_edges) < 0.01, "the 100 ms at each edge should be the kept margin, i.e. quiet"


@pytest.mark.parametrize("model", ["chatterbox", "indextts2"])
@pytest.mark.parametrize("name", ["phone_mp3", "quiet", "10s"])
def test_the_reference_is_mono_at_the_models_rate_and_loudness(refs, tmp_path, model, name):
    spec = SPECS[model]
    prepared = prepare_reference(
        refs[name], tmp_path, rate=spec.reference_rate, target_lufs=spec.reference_lufs
    )

    info = soundfile.info(str(prepared.path))
    assert (info.samplerate, info.channels, info.subtype) == (spec.reference_rate, 1, "PCM_16")
    assert prepared.sample_rate == spec.reference_rate
    assert lufs(prepared.path) == pytest.approx(spec.reference_lufs, abs=1.0)
    assert prepared.duration_s == pytest.approx(10.0, abs=0.1)


def test_model_rates_and_targets_are_the_ones_the_models_read():
    # Chatterbox loads its reference at 24 kHz (S3GEN_SR); IndexTTS-2's mel is at 22.05 kHz.
    assert SPECS["chatterbox"].reference_rate == 24_000
    assert SPECS["indextts2"].reference_rate == 22_050


def test_the_prepared_file_is_named_by_its_content(refs, tmp_path):
    a = prepare_reference(refs["10s"], tmp_path / "a", rate=22_050, target_lufs=-23)
    b = prepare_reference(refs["10s"], tmp_path / "b", rate=22_050, target_lufs=-23)
    c = prepare_reference(refs["padded"], tmp_path / "c", rate=22_050, target_lufs=-23)
    assert a.path.name == b.path.name != c.path.name


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------


def test_sentences_split_at_sentence_ends_but_not_after_abbreviations_or_initials():
    text = (
        "Dr. Smith met J. R. R. Tolkien in Oxford. They talked for hours, e.g. about languages! "
        'Was it fun? "Very," he said.\n\nA new paragraph starts here.'
    )
    assert split_sentences(text, 300) == [
        "Dr. Smith met J. R. R. Tolkien in Oxford.",
        "They talked for hours, e.g. about languages!",
        'Was it fun? "Very," he said.',  # "Was it fun?" alone is too short: it rides with the next
        "A new paragraph starts here.",
    ]


def test_short_fragments_join_their_neighbours():
    assert split_sentences("Yes. No. Maybe so, if you insist on it.", 300) == [
        "Yes. No. Maybe so, if you insist on it."
    ]
    assert split_sentences("This sentence is long enough on its own. Thanks.", 300) == [
        "This sentence is long enough on its own. Thanks."
    ]


def test_long_sentences_break_at_clauses_then_words_and_lose_nothing():
    clause = "and then the committee reviewed another proposal in great detail, "
    text = "In the morning " + clause * 12 + "before lunch."
    pieces = split_sentences(text, 120)

    assert all(len(p) <= 120 for p in pieces)
    assert " ".join(pieces) == " ".join(text.split())
    assert sum(p.endswith(",") for p in pieces) >= len(pieces) - 1, "breaks fall after commas"

    unspaced = "这是一个没有标点的很长的句子" * 30
    chunks = split_sentences(unspaced, 100)
    assert "".join(chunks) == unspaced
    # A Chinese character takes about as long to say as four Latin letters: 100 → 25 characters.
    assert {len(c) for c in chunks[:-1]} == {25} and max(map(spoken_length, chunks)) <= 100


def test_chinese_sentences_split_at_full_stops_and_korean_keeps_its_spaces():
    assert split_sentences("今天天气很好，我们一起去公园散步吧。明天可能会下雨，记得带伞出门！", 300) == [
        "今天天气很好，我们一起去公园散步吧。",
        "明天可能会下雨，记得带伞出门！",
    ]
    korean = "오늘 날씨가 정말 좋네요, 공원에 산책하러 갈까요? 네, 좋아요. 그럼 지금 바로 출발합시다!"
    assert " ".join(split_sentences(korean, 40)) == korean


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "rate"), [("chatterbox", 24_000), ("indextts2", 22_050)])
@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_wav_and_mp3_decode_to_the_expected_duration_at_the_models_rate(
    speech, refs, tmp_path, model, rate, fmt
):
    engine = FakeModelVoiceEngine(model, sample=speech)
    result = engine.speak(TEXT, options(model, format=fmt), tmp_path, reference_voice=refs["10s"])

    sentences = [c.text for c in engine.calls]
    assert len(sentences) == 3
    decoded = read_audio(result.output)
    assert decoded.info.format == fmt and decoded.sample_rate == rate == result.sample_rate
    # Within 0.25 s: a sentence's speech may itself end in a short pause, which is trimmed too. Had the
    # model's own silence been kept, it would be 2.4 s longer.
    assert decoded.info.duration_s == pytest.approx(expected_duration(sentences), abs=0.25)
    assert result.duration_s == pytest.approx(decoded.info.duration_s, abs=0.03)
    assert result.output == tmp_path / f"speech.{fmt}" and result.bytes == result.output.stat().st_size
    assert set(result.timings) == {"reference_s", "synthesis_s", "encode_s"}


def test_speed_time_stretches_the_speech_and_keeps_the_rate(chatterbox, tmp_path):
    normal = chatterbox.speak(TEXT, options(), tmp_path / "normal")
    fast = chatterbox.speak(TEXT, options(speed=1.5), tmp_path / "fast")
    slow = chatterbox.speak(TEXT, options(speed=0.5, format="mp3"), tmp_path / "slow")

    assert fast.duration_s == pytest.approx(normal.duration_s / 1.5, rel=0.03)
    assert slow.duration_s == pytest.approx(normal.duration_s / 0.5, rel=0.03)
    assert fast.sample_rate == slow.sample_rate == normal.sample_rate == 24_000
    assert not fast.warnings


def test_pitch_is_ignored_with_a_warning(chatterbox, tmp_path):
    plain = chatterbox.speak(TEXT, options(), tmp_path / "plain")
    pitched = chatterbox.speak(TEXT, options(pitch=4), tmp_path / "pitched")

    assert any("pitch was ignored" in w for w in pitched.warnings) and not plain.warnings
    assert np.array_equal(read_audio(plain.output).samples, read_audio(pitched.output).samples)


def test_progress_is_reported_per_sentence_and_ends_at_one(chatterbox, refs, tmp_path):
    reports: list[tuple[float, str]] = []
    chatterbox.speak(
        TEXT, options(), tmp_path, reference_voice=refs["10s"], progress=lambda f, m: reports.append((f, m))
    )

    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[0] >= 0 and fractions[-1] == 1.0
    messages = [m for _, m in reports]
    assert messages[0] == "preparing the reference voice"
    assert [m for m in messages if m.startswith("sentence")] == [
        "sentence 1/3",
        "sentence 2/3",
        "sentence 3/3",
    ]
    assert messages[-2:] == ["encoding", "speech ready"]


def test_a_model_that_returns_silence_is_generation_failed(speech, tmp_path, error_code):
    engine = FakeModelVoiceEngine("chatterbox", sample=speech, silent=True)
    assert error_code(engine.speak, TEXT, options(), tmp_path) == "GENERATION_FAILED"


@pytest.mark.parametrize(
    ("text", "code"), [("   ", "INVALID_REQUEST"), (None, "INVALID_REQUEST"), ("x" * 5001, "TEXT_TOO_LONG")]
)
def test_empty_or_overlong_text_is_refused_before_the_model_runs(
    chatterbox, tmp_path, error_code, text, code
):
    assert error_code(chatterbox.speak, text, options(), tmp_path) == code
    assert chatterbox.calls == []


# ---------------------------------------------------------------------------------------------
# What reaches the model
# ---------------------------------------------------------------------------------------------


def test_chatterbox_render_sends_the_prepared_reference_and_controls(chatterbox, refs, tmp_path):
    produced, result = chatterbox.render(
        task(exaggeration=0.8), {"reference_voice": refs["padded"]}, tmp_path, quiet
    )

    assert produced == {"audio": tmp_path / "speech.wav"} and result.output == produced["audio"]
    assert " ".join(c.text for c in chatterbox.calls) == TEXT
    for call in chatterbox.calls:
        assert call.controls == {"language": "en", "exaggeration": 0.8, "cfg_weight": 0.3}
        assert call.reference_rate == 24_000
        assert call.reference_s == pytest.approx(10.3, abs=0.1)  # the trimmed one, not the upload
        assert call.reference.parent == tmp_path / "work"
    assert result.sample_rate == 24_000 and result.warnings == []


def test_chatterbox_defaults_to_its_built_in_voice_and_neutral_exaggeration(chatterbox, tmp_path):
    _, result = chatterbox.render(task(), {}, tmp_path, quiet)

    assert {c.reference for c in chatterbox.calls} == {None}
    assert chatterbox.calls[0].controls == {"language": "en", "exaggeration": 0.5, "cfg_weight": 0.5}
    assert result.duration_s > 5


def test_chatterbox_other_languages_go_to_the_multilingual_model(chatterbox, tmp_path, error_code):
    chatterbox.render(task(language="fr-FR", text="Bonjour à tous, et bienvenue."), {}, tmp_path, quiet)
    assert chatterbox.calls[0].controls["language"] == "fr"

    assert error_code(chatterbox.speak, TEXT, options(language="tlh"), tmp_path) == "INVALID_REQUEST"


def test_chatterbox_warns_that_it_takes_no_emotion_label(chatterbox, tmp_path):
    result = chatterbox.speak(TEXT, options(emotion="happy"), tmp_path)
    assert any("emotion was ignored" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("emotion", "expected"),
    [
        (None, IndexEmotion()),
        ("Sad", IndexEmotion(vector=tuple(0.8 if e == "sad" else 0.0 for e in INDEXTTS2_EMOTIONS))),
        ("neutral", IndexEmotion(vector=(0.0,) * 7 + (0.8,))),
        ("nervous before a big exam", IndexEmotion(text="nervous before a big exam", alpha=0.6)),
    ],
)
def test_indextts2_emotion_becomes_a_vector_or_an_emotion_text(indextts2, refs, tmp_path, emotion, expected):
    opts = {} if emotion is None else {"emotion": emotion}
    _, result = indextts2.render(
        task("indextts2", **opts), {"reference_voice": refs["phone_mp3"]}, tmp_path, quiet
    )

    assert {c.controls["emotion"] for c in indextts2.calls} == {expected}
    assert {c.reference_rate for c in indextts2.calls} == {22_050}
    assert result.sample_rate == 22_050


def test_indextts2_needs_a_reference_voice(indextts2, tmp_path, error_code):
    with pytest.raises(TalkstackError) as info:
        indextts2.render(task("indextts2"), {}, tmp_path, quiet)
    assert info.value.code == "INVALID_REQUEST" and "inputs.reference_voice" in info.value.message
    assert indextts2.calls == []


def test_indextts2_speaks_english_and_chinese_only_and_ignores_exaggeration(
    indextts2, refs, tmp_path, error_code
):
    ref = {"reference_voice": refs["10s"]}
    assert (
        error_code(indextts2.speak, TEXT, options("indextts2", language="de"), tmp_path) == "INVALID_REQUEST"
    )
    _, result = indextts2.render(task("indextts2", language="zh-CN", exaggeration=1.2), ref, tmp_path, quiet)
    assert any("exaggeration" in w for w in result.warnings)


def test_a_task_for_another_model_is_model_unavailable(chatterbox, tmp_path, error_code):
    assert error_code(chatterbox, task("indextts2"), {}, tmp_path, quiet) == "MODEL_UNAVAILABLE"
    assert chatterbox.loads == 0 and chatterbox.calls == []
    assert error_code(VoiceEngine, "ltx-video") == "MODEL_UNAVAILABLE"


# ---------------------------------------------------------------------------------------------
# Through the worker protocol
# ---------------------------------------------------------------------------------------------


class Store:
    """The pre-signed URLs' other end: serves inputs, keeps what the worker PUTs."""

    def __init__(self, inputs: dict[str, bytes]) -> None:
        self.inputs = inputs
        self.put: dict[str, bytes] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET":
            return (
                httpx.Response(200, content=self.inputs[path]) if path in self.inputs else httpx.Response(404)
            )
        self.put[path] = request.content
        return httpx.Response(200)


def protocol_task(model: str, **opts: Any) -> WorkerTask:
    def url(name: str, content_type: str = "application/json") -> OutputUrl:
        return OutputUrl(url=f"http://store.test/{name}", key=f"job-1/{name}", content_type=content_type)

    return VoiceTask(
        job_id="job-1",
        step="voice",
        attempt_id="voice-1-abc",
        attempt=1,
        model=model,
        options={"model": model, **opts},
        text=TEXT,
        inputs={"reference_voice": InputUrl(url="http://store.test/in/voice.mp3", filename="voice.mp3")},
        outputs={"audio": url("speech.mp3", "audio/mpeg")},
        markers=Markers(progress=url("progress.json"), result=url("result.json"), error=url("error.json")),
        heartbeat_interval_s=30,
        deadline=datetime.now(UTC) + timedelta(hours=1),
    )


def test_handle_runs_a_task_end_to_end_over_http(chatterbox, refs, tmp_path):
    store = Store({"/in/voice.mp3": refs["phone_mp3"].read_bytes()})
    with httpx.Client(transport=httpx.MockTransport(store)) as client:
        payload = protocol_task("chatterbox", format="mp3").model_dump(mode="json")
        ok = run_task(payload, client, step=chatterbox)

    assert ok and chatterbox.loads == 1
    result = json.loads(store.put["/result.json"])
    assert result["sample_rate"] == 24_000 and result["warnings"] == []
    (tmp_path / "speech.mp3").write_bytes(store.put["/speech.mp3"])
    assert result["outputs"]["audio"]["bytes"] == len(store.put["/speech.mp3"])
    assert probe_audio(tmp_path / "speech.mp3") == pytest.approx((result["duration_s"], 24_000), abs=0.03)
    assert "/error.json" not in store.put


def test_handle_reports_a_bad_reference_as_a_non_retryable_error_marker(chatterbox, refs):
    store = Store({"/in/voice.mp3": refs["3s"].read_bytes()})
    with httpx.Client(transport=httpx.MockTransport(store)) as client:
        ok = run_task(protocol_task("chatterbox").model_dump_json(), client, step=chatterbox)

    marker = json.loads(store.put["/error.json"])
    assert not ok and marker["retryable"] is False
    assert marker["error"]["code"] == "AUDIO_TOO_SHORT" and marker["error"]["step"] == "voice"
    assert chatterbox.calls == []


# ---------------------------------------------------------------------------------------------
# Import hygiene
# ---------------------------------------------------------------------------------------------


def test_importing_the_engine_loads_no_ml_library():
    code = (
        "import sys, talkstack.engines.gpu.voice\n"
        "heavy = {'torch', 'torchaudio', 'chatterbox', 'indextts', 'transformers', 'huggingface_hub'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_weights_name_the_command_that_fetches_them_instead_of_downloading(tmp_path: Path) -> None:
    from talkstack.engines.gpu.voice import CHATTERBOX_FILES, CHATTERBOX_REPO

    engine = VoiceEngine("chatterbox", weights_dir=tmp_path)
    with pytest.raises(TalkstackError) as caught:
        engine._weights(CHATTERBOX_REPO, CHATTERBOX_FILES)
    assert caught.value.code == ErrorCode.MODEL_UNAVAILABLE
    assert "modal run -m modal_workers.weights --models chatterbox" in caught.value.message
    folder = tmp_path / CHATTERBOX_REPO
    folder.mkdir(parents=True)
    for name in CHATTERBOX_FILES:
        (folder / name).write_bytes(b"x")
    assert engine._weights(CHATTERBOX_REPO, CHATTERBOX_FILES) == folder
