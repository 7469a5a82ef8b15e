"""chatterbox and indextts2: zero-shot voice cloning on a GPU.

    engine = VoiceEngine("chatterbox", weights_dir=Path("/weights"))
    engine.load()          # imports torch and the model's package, reads the weights
    run_task(task, step=engine)  # text (+ inputs.reference_voice) → speech.wav / speech.mp3

Everything around the model is done here, and tested on real audio without the model:
- the reference voice must hold 5–60 s of speech once leading and trailing silence is trimmed; it is
  resampled to the rate the model reads it at (Chatterbox 24 kHz, IndexTTS-2 22.05 kHz),
  loudness-normalised and written as a 16-bit WAV;
- the text is split into sentences short enough for one autoregressive pass each, spoken one by one
  (progress per sentence) and joined with short pauses;
- neither model has a speed control, so speed is a time-stretch afterwards (ffmpeg atempo keeps the
  pitch); pitch is ignored with a warning: shifting a cloned voice moves its formants away from the
  speaker it is meant to sound like.
Without a reference voice Chatterbox speaks in its built-in voice; IndexTTS-2 has none (its repository
ships no default prompt), so such a request is refused with INVALID_REQUEST.

Each model call sits behind one small method, `_synthesize_chatterbox` / `_synthesize_indextts2`:
(text, prepared reference or None, resolved controls) → (float32 mono samples, sample rate).

Sources read (their code, not copied): resemble-ai/chatterbox at 59bc590b (= chatterbox-tts 0.1.7 on
PyPI): `ChatterboxTTS.from_local(dir, device)`, `.generate(text, audio_prompt_path, exaggeration,
cfg_weight)` → (1, T) tensor at `.sr` = 24 kHz, the reference read at 24 kHz (first 10 s for the
decoder, all of it for the speaker embedding), at most 1000 speech tokens = 40 s per call;
`ChatterboxMultilingualTTS` adds `language_id` for 23 languages. index-tts/index-tts at ee40fa7d:
`IndexTTS2(cfg_path, model_dir, use_fp16, device, use_cuda_kernel, use_deepspeed, ..., aux_paths)`,
`.infer(spk_audio_prompt, text, output_path=None, emo_vector | use_emo_text + emo_text, emo_alpha)` →
(22050, int16 samples); the speaker prompt is cut to 15 s; Chinese and English only; no bundled
default voice.

Nothing is fetched at load time: both packages fall back to the Hugging Face Hub's `main` for what
they do not find locally (IndexTTS-2's four helper models, Chatterbox's Cangjie table), so the engine
hands them the pinned downloads and loads them with huggingface_hub in offline mode (`hub_offline`),
where anything still unpinned fails instead of silently fetching.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import av
import ffmpeg
import numpy as np

from talkstack.contract.request import VoiceOptions
from talkstack.contract.worker import WorkerTask, task_options
from talkstack.engines.base import ProgressFn, RenderResult, no_progress
from talkstack.engines.gpu.base import Engine
from talkstack.engines.gpu.weights import CATALOGUE, paths_for
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.audio import (
    SILENCE_DBFS,
    frame_levels_dbfs,
    normalize_loudness,
    read_audio,
    resample,
    write_wav,
)
from talkstack.media.ffmpeg import ffmpeg_exe
from talkstack.safety.watermark import write_marked_wav
from talkstack.settings import MediaLimits, environ, get_limits

REFERENCE_MIN_S = 5.0
REFERENCE_MAX_S = 60.0
PAUSE_S = 0.25  # between sentences: about a speaker's breath
MIN_SENTENCE_CHARS = 24  # shorter fragments ("Yes.") ride with the next sentence: alone they go wrong
TRIM_BELOW_PEAK_DB = 40.0  # a 20 ms frame this far under the loudest one is silence (or room noise)
MP3_BITRATE = "128k"

# The engine reads these files from `weights_dir/<owner>/<name>/` (the weights catalogue downloads
# them; tests/unit/test_weights.py and test_voice_weights.py check the two agree).
CHATTERBOX_REPO = "ResembleAI/chatterbox"
CHATTERBOX_FILES = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json", "conds.pt")
# What chatterbox-tts 0.1.7's ChatterboxMultilingualTTS.from_local opens (mtl_tts.py: ve.pt,
# t3_mtl23ls_v2.safetensors, s3gen.pt, grapheme_mtl_merged_expanded_v1.json; conds.pt if present,
# and the engine needs it for the built-in voice) plus the Cangjie table its tokenizer fetches
# through hf_hub_download (models/tokenizers/tokenizer.py) — from_pretrained's allow_patterns.
CHATTERBOX_MULTILINGUAL_FILES = (
    "ve.pt",
    "t3_mtl23ls_v2.safetensors",
    "s3gen.pt",
    "grapheme_mtl_merged_expanded_v1.json",
    "Cangjie5_TC.json",
    "conds.pt",
)
CHATTERBOX_CANGJIE = "Cangjie5_TC.json"
INDEXTTS2_REPO = "IndexTeam/IndexTTS-2"
INDEXTTS2_FILES = (
    "config.yaml",
    "bpe.model",
    "gpt.pth",
    "s2mel.pth",
    "wav2vec2bert_stats.pt",
    "feat1.pt",
    "feat2.pt",
    "qwen0.6bemo4-merge",  # a folder: the text → emotion model behind use_emo_text
)
# IndexTTS-2's helper models. Given no `aux_paths`, IndexTTS2.__init__ calls
# indextts.utils.model_download.ensure_models_available(model_dir) (infer_v2.py:59-61 at ee40fa7d),
# which fetches all four from the Hub's `main` into model_dir/hf_cache (snapshot_download for
# w2v-bert-2.0, hf_hub_download for the rest). Each `aux_paths` key here names the weights-catalogue
# role whose pinned download holds what infer_v2.py then opens:
INDEXTTS2_AUX_ROLES: dict[str, str] = {
    "w2v_bert": "w2v-bert",  # a folder: SeamlessM4TFeatureExtractor + Wav2Vec2BertModel (:129-131)
    "semantic_codec": "semantic-codec",  # a file: safetensors.torch.load_model (:139-141)
    "campplus": "campplus",  # a file: torch.load (:168-170)
    "bigvgan": "bigvgan",  # a folder: BigVGAN.from_pretrained, config.json + bigvgan_generator.pt (:176-177)
}

# ChatterboxMultilingualTTS's SUPPORTED_LANGUAGES (chatterbox-tts 0.1.7); English uses the English model.
_CHATTERBOX_CODES = "ar da de el en es fi fr he hi it ja ko ms nl no pl pt ru sv sw tr zh"
CHATTERBOX_LANGUAGES = frozenset(_CHATTERBOX_CODES.split())
INDEXTTS2_LANGUAGES = frozenset({"en", "zh"})
# IndexTTS-2's emotion vector, in the order `infer(emo_vector=...)` takes it.
INDEXTTS2_EMOTIONS = ("happy", "angry", "sad", "afraid", "disgusted", "melancholic", "surprised", "calm")
INDEXTTS2_EMOTION_ALIASES = {"neutral": "calm", "fear": "afraid", "scared": "afraid", "surprise": "surprised"}
INDEXTTS2_EMOTION_WEIGHT = 0.8  # one emotion at full strength, as the IndexTTS-2 README's examples use
INDEXTTS2_TEXT_EMOTION_ALPHA = 0.6  # the README's advice for text-described emotion: more natural


@dataclass(frozen=True)
class ModelSpec:
    reference_rate: int
    """Rate the model reads the reference at: giving it that rate spares it a resample."""
    reference_lufs: float
    max_sentence_chars: int
    """Longest text for one call: well inside what one autoregressive pass speaks reliably."""
    languages: frozenset[str]


SPECS: dict[str, ModelSpec] = {
    # -27 LUFS is what Resemble's own Chatterbox-Turbo normalises references to. 300 characters is
    # ~20 s of speech, half the 40 s (1000 speech tokens) one generate() call can produce.
    "chatterbox": ModelSpec(24_000, -27.0, 300, CHATTERBOX_LANGUAGES),
    # IndexTTS-2 computes its reference mel at 22.05 kHz; it splits text at 120 BPE tokens itself,
    # so 300 characters keeps every call to one of its own segments.
    "indextts2": ModelSpec(22_050, -23.0, 300, INDEXTTS2_LANGUAGES),
}


@dataclass(frozen=True)
class PreparedReference:
    path: Path
    duration_s: float
    """Speech kept, after trimming."""
    sample_rate: int
    trimmed_s: float
    """Leading plus trailing silence removed."""


@dataclass(frozen=True)
class IndexEmotion:
    """How IndexTTS-2 is steered: a one-hot emotion vector, or a text the model turns into one."""

    vector: tuple[float, ...] | None = None
    text: str | None = None
    alpha: float = 1.0


# ---------------------------------------------------------------------------------------------
# Preparation: pure functions on real audio and text (no model needed)
# ---------------------------------------------------------------------------------------------


def speech_bounds(samples: np.ndarray, rate: int, margin_s: float = 0.1) -> tuple[int, int]:
    """[start, end) sample indices of the speech in `samples`, with a margin kept on both sides so
    onsets and final consonants are not clipped. (0, 0) when nothing rises above the threshold."""
    window = 0.02
    levels = frame_levels_dbfs(samples, rate, window_s=window)
    # Relative to the loudest frame, so a steady room hum counts as silence too.
    threshold = max(SILENCE_DBFS, float(levels.max()) - TRIM_BELOW_PEAK_DB)
    voiced = np.nonzero(levels > threshold)[0]
    if voiced.size == 0:
        return 0, 0
    hop = max(1, round(rate * window))
    margin = round(rate * margin_s)
    start = max(0, int(voiced[0]) * hop - margin)
    end = min(len(samples), (int(voiced[-1]) + 1) * hop + margin)
    return start, end


def trim_silence(samples: np.ndarray, rate: int, margin_s: float = 0.1) -> np.ndarray:
    start, end = speech_bounds(samples, rate, margin_s)
    return samples[start:end]


def prepare_reference(
    path: Path,
    workdir: Path,
    *,
    rate: int,
    target_lufs: float,
    limits: MediaLimits | None = None,
) -> PreparedReference:
    """The reference voice as the model should hear it; TalkstackError when it cannot clone from it."""
    clip = read_audio(path, limits)  # unreadable, silent, corrupt or huge files fail here
    speech = trim_silence(clip.samples, clip.sample_rate, margin_s=0.15)
    duration = len(speech) / clip.sample_rate
    if duration < REFERENCE_MIN_S:
        raise TalkstackError(
            ErrorCode.AUDIO_TOO_SHORT,
            f"reference_voice holds {duration:.1f} s of speech; voice cloning needs at least "
            f"{REFERENCE_MIN_S:g} s",
            input="reference_voice",
            duration_s=round(duration, 2),
            min_s=REFERENCE_MIN_S,
        )
    if duration > REFERENCE_MAX_S:
        raise TalkstackError(
            ErrorCode.AUDIO_TOO_LONG,
            f"reference_voice holds {duration:.1f} s of speech; give at most {REFERENCE_MAX_S:g} s "
            f"(10-30 s of clean speech clones best)",
            input="reference_voice",
            duration_s=round(duration, 2),
            max_s=REFERENCE_MAX_S,
        )
    prepared = normalize_loudness(resample(speech, clip.sample_rate, rate), rate, target_lufs)
    # Named by content: IndexTTS-2 caches the speaker's conditioning by prompt path.
    digest = hashlib.sha256(prepared.tobytes()).hexdigest()[:16]
    out = write_wav(workdir / f"reference-{digest}.wav", prepared, rate)
    trimmed = len(clip.samples) / clip.sample_rate - duration
    return PreparedReference(out, duration, rate, trimmed)


_ABBREVIATION_WORDS = "mr mrs ms dr prof sr jr st vs etc e.g i.e no fig approx dept inc ltd co mt ft"
_ABBREVIATIONS = frozenset(_ABBREVIATION_WORDS.split())
# A sentence ends after . ! ? … (plus closing quotes/brackets) and whitespace, or after a CJK full stop.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+|(?<=[。！？])\s*")
_CLAUSE_END = re.compile(r"(?<=[,;:，；：、—])\s*")


# Chinese, Japanese and Korean characters (and their punctuation) each take about as long to say as
# four Latin letters: lengths below count them four times, so a limit means the same speaking time.
_UNSPACED = (
    r"\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"  # Han, kana, their punctuation
)
_WIDE = re.compile(rf"[{_UNSPACED}\uac00-\ud7af]")  # ... and Hangul, which is spaced
_NO_SPACES = re.compile(rf"[{_UNSPACED}]")
WIDE_WEIGHT = 4


def spoken_length(text: str) -> int:
    """Characters, with each CJK character counted as WIDE_WEIGHT."""
    return len(text) + (WIDE_WEIGHT - 1) * len(_WIDE.findall(text))


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Sentences of at most `max_chars` (by `spoken_length`), in order, whitespace-normalised. Longer
    sentences are cut at clause punctuation, then between words, then (unspaced scripts) anywhere;
    fragments too short to say well alone join a neighbour."""
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        pieces = _split_keeping_abbreviations(paragraph)
        for piece in _merge_short(pieces, max_chars):
            sentences.extend(_fit(piece, max_chars))
    return sentences


def _join(left: str, right: str) -> str:
    # No space between two Chinese / Japanese pieces: those scripts do not use them.
    unspaced = bool(left and right and _NO_SPACES.match(left[-1]) and _NO_SPACES.match(right[0]))
    return left + right if unspaced else f"{left} {right}"


def _split_keeping_abbreviations(paragraph: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(paragraph):
        head = paragraph[start : match.start()].rstrip("\"'”’)]")
        last_word = head.rsplit(" ", 1)[-1].rstrip(".").lower()
        # "Dr. Smith", "J. R. R. Tolkien": a period after an abbreviation or an initial ends nothing.
        if head.endswith(".") and (last_word in _ABBREVIATIONS or re.fullmatch(r"[a-z]", last_word)):
            continue
        if piece := paragraph[start : match.end()].strip():
            pieces.append(piece)
        start = match.end()
    if piece := paragraph[start:].strip():
        pieces.append(piece)
    return pieces


def _merge_short(pieces: list[str], max_chars: int) -> list[str]:
    merged: list[str] = []
    carry = ""
    for piece in pieces:
        joined = _join(carry, piece) if carry else piece
        if spoken_length(joined) < MIN_SENTENCE_CHARS:
            carry = joined
            continue
        if carry and spoken_length(joined) > max_chars:  # cannot join: let the fragment stand alone
            merged.append(carry)
            joined = piece
        merged.append(joined)
        carry = ""
    if carry:
        if merged and spoken_length(_join(merged[-1], carry)) <= max_chars:
            merged[-1] = _join(merged[-1], carry)
        else:
            merged.append(carry)
    return merged


def _fit(sentence: str, max_chars: int) -> list[str]:
    if spoken_length(sentence) <= max_chars:
        return [sentence]
    clauses = [c.strip() for c in _CLAUSE_END.split(sentence) if c.strip()]
    if len(clauses) > 1:  # each clause fitted first, so chunks break at clause ends where they can
        return _pack([chunk for c in clauses for chunk in _fit(c, max_chars)], max_chars)
    words = sentence.split()
    if len(words) > 1:
        return _pack([chunk for w in words for chunk in _fit(w, max_chars)], max_chars)
    chunks = [""]
    for char in sentence:  # one unbroken run of text: cut anywhere
        if chunks[-1] and spoken_length(chunks[-1] + char) > max_chars:
            chunks.append("")
        chunks[-1] += char
    return chunks


def _pack(parts: list[str], max_chars: int) -> list[str]:
    out: list[str] = []
    for part in parts:
        if out and spoken_length(_join(out[-1], part)) <= max_chars:
            out[-1] = _join(out[-1], part)
        else:
            out.append(part)
    return out


def join_with_pauses(pieces: list[np.ndarray], rate: int, pause_s: float = PAUSE_S) -> np.ndarray:
    gap = np.zeros(round(rate * pause_s), np.float32)
    out: list[np.ndarray] = []
    for i, piece in enumerate(pieces):
        if i:
            out.append(gap)
        out.append(piece.astype(np.float32, copy=False))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def write_speech(samples: np.ndarray, rate: int, output: Path, *, speed: float = 1.0) -> Path:
    """WAV (16-bit) or MP3 by `output`'s suffix, at `rate`; `speed` ≠ 1 time-stretches (pitch kept).

    The watermark (docs/safety.md) is added to the samples as they will be heard: after the stretch."""
    samples = np.clip(samples, -1.0, 1.0)
    suffix = output.suffix.lower()
    if suffix not in {".wav", ".mp3"}:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST, f"voice output must be .wav or .mp3, got {output.name!r}"
        )
    if speed != 1.0:
        with tempfile.TemporaryDirectory() as tmp:
            raw = write_wav(Path(tmp) / "raw.wav", samples, rate)
            samples = read_audio(_encode(raw, Path(tmp) / "stretched.wav", rate, speed)).samples
    if suffix == ".wav":
        return write_marked_wav(output, samples, rate)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        return _encode(write_marked_wav(Path(tmp) / "speech.wav", samples, rate), output, rate)


def _encode(source: Path, output: Path, rate: int, speed: float = 1.0) -> Path:
    """ffmpeg `source` → `output` (WAV or MP3 by suffix) at `rate`, time-stretched by `speed`."""
    output.parent.mkdir(parents=True, exist_ok=True)
    codec = (
        {"acodec": "libmp3lame", "audio_bitrate": MP3_BITRATE}
        if output.suffix.lower() == ".mp3"
        else {"acodec": "pcm_s16le"}
    )
    stream = ffmpeg.input(str(source))
    if speed != 1.0:
        stream = stream.filter("atempo", speed)  # WSOLA: tempo changes, pitch stays (0.5–100×)
    try:
        (
            stream.output(str(output), ar=rate, ac=1, **codec)
            .global_args("-hide_banner", "-loglevel", "error")
            .run(cmd=ffmpeg_exe(), overwrite_output=True, quiet=True)
        )
    except ffmpeg.Error as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise TalkstackError(
            ErrorCode.GENERATION_FAILED,
            f"ffmpeg could not write {output.name}: {detail[-1] if detail else exc}",
        ) from exc
    return output


def probe_audio(path: Path) -> tuple[float, int]:
    """(duration in seconds, sample rate) of a written file, by decoding it: exact for MP3 too."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.rate, stream.rate


def primary_language(tag: str) -> str:
    return tag.split("-", 1)[0].lower()


def chatterbox_cfg_weight(exaggeration: float) -> float:
    # Chatterbox's README: more exaggeration speeds speech up; a lower cfg_weight slows it back down.
    return 0.3 if exaggeration > 0.5 else 0.5


def indextts2_emotion(emotion: str | None) -> IndexEmotion:
    """An emotion label IndexTTS-2 has a slot for becomes its vector; anything else is a description
    its text → emotion model (QwenEmotion) reads."""
    if emotion is None:
        return IndexEmotion()
    label = emotion.strip().lower()
    label = INDEXTTS2_EMOTION_ALIASES.get(label, label)
    if label in INDEXTTS2_EMOTIONS:
        vector = tuple(INDEXTTS2_EMOTION_WEIGHT if e == label else 0.0 for e in INDEXTTS2_EMOTIONS)
        return IndexEmotion(vector=vector)
    return IndexEmotion(text=emotion.strip(), alpha=INDEXTTS2_TEXT_EMOTION_ALPHA)


# ---------------------------------------------------------------------------------------------
# Loading without the Hub: the pinned downloads, handed to the upstream loaders
# ---------------------------------------------------------------------------------------------


def hub_offline() -> None:
    """Put huggingface_hub in offline mode before a model package imports it, or refuse to load.

    Both upstream packages fetch from the Hub's `main` whatever they do not find where they look;
    offline, such a fetch raises instead, so a file the catalogue does not pin shows up as a load
    error rather than as unpinned bytes. huggingface_hub reads HF_HUB_OFFLINE once, at import (and
    transformers asks it), so setting it only helps before that import: the Modal images set it in
    their environment; here it is defaulted for other callers and then checked where it counts, in
    the library itself."""
    environ.export_defaults({"HF_HUB_OFFLINE": "1"})
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        raise TalkstackError(
            ErrorCode.MODEL_UNAVAILABLE,
            "the voice models must load with the Hugging Face Hub offline (they would fetch unpinned "
            "files from it): set HF_HUB_OFFLINE=1 before anything imports huggingface_hub",
        )


def _pinned_paths(model: str, weights_dir: Path, roles: dict[str, str]) -> dict[str, Path]:
    """key → the catalogue's path for `roles[key]`, each checked to hold what the spec requires."""
    paths = paths_for(model, weights_dir)
    specs = {spec.role: spec for spec in CATALOGUE if model in spec.model_ids}
    out: dict[str, Path] = {}
    missing: list[str] = []
    for key, role in roles.items():
        path, spec = paths[role], specs[role]
        needed = [path] if spec.entry else [path / rel for rel in spec.required]
        missing += [str(p) for p in needed if not p.exists()]
        out[key] = path
    if missing:
        raise TalkstackError(
            ErrorCode.MODEL_UNAVAILABLE,
            f"{model}: {', '.join(missing[:3])} missing; fill the weights volume with "
            f"`modal run -m modal_workers.weights --models {model}`",
        )
    return out


def indextts2_aux_paths(weights_dir: Path) -> dict[str, str]:
    """IndexTTS2's `aux_paths`: its four helper models, at the catalogue's pinned downloads."""
    return {k: str(v) for k, v in _pinned_paths("indextts2", weights_dir, INDEXTTS2_AUX_ROLES).items()}


def chatterbox_multilingual_view(folder: Path, view: Path) -> Path:
    """A folder ChatterboxMultilingualTTS.from_local(view) loads entirely from `folder`, the pinned
    download. from_local opens its files by name, but its tokenizer gets the Cangjie table (how
    Chinese is spelt for the model) with `hf_hub_download(REPO_ID, "Cangjie5_TC.json",
    cache_dir=<that folder>)` (chatterbox-tts 0.1.7, models/tokenizers/tokenizer.py): a Hub-cache
    lookup of `main`, which would fetch an unpinned copy and, offline, finds nothing (the tokenizer
    logs a warning and Chinese turns to unknown tokens). So the view links the files and lays the
    table out as Hub-cache entry of the pinned commit, with `refs/main` naming it: offline,
    hf_hub_download resolves `main` from that ref and returns our file."""
    (spec,) = [s for s in CATALOGUE if s.repo_id == CHATTERBOX_REPO]
    assert spec.revision is not None  # the catalogue pins it
    view.mkdir(parents=True, exist_ok=True)
    for name in CHATTERBOX_MULTILINGUAL_FILES:
        _link(view / name, folder / name)
    cache = view / f"models--{CHATTERBOX_REPO.replace('/', '--')}"
    (cache / "refs").mkdir(parents=True, exist_ok=True)
    (cache / "refs" / "main").write_text(spec.revision)
    _link(cache / "snapshots" / spec.revision / CHATTERBOX_CANGJIE, folder / CHATTERBOX_CANGJIE)
    return view


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target.resolve())


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


class VoiceEngine(Engine):
    """Chatterbox (MIT; built-in voice or a clone; 23 languages) or IndexTTS-2 (bilibili model
    licence; clone only; Chinese and English; emotion by label or description)."""

    model_ids: ClassVar[tuple[str, ...]] = ("chatterbox", "indextts2")

    def __init__(self, model: str, *, weights_dir: Path | None = None, device: str | None = None) -> None:
        super().__init__(model, weights_dir=weights_dir, device=device)
        self.spec = SPECS[model]
        self._models: dict[str, Any] = {}  # chatterbox: "en" / "multilingual"; indextts2: "indextts2"
        self._builtin_conds: dict[str, Any] = {}
        self._conditioned_on: dict[str, str | None] = {}  # variant → reference path it is primed with
        self._model_lock = threading.Lock()  # the models keep the last speaker as state: one call at a time

    # -- loading ------------------------------------------------------------------------------

    def _load(self) -> None:
        hub_offline()  # first: before torch or the model packages pull huggingface_hub in
        import torch

        if self.device is None:
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.model == "chatterbox":
            self._chatterbox("en")
        else:
            self._indextts2()

    def _weights(self, repo_id: str, files: tuple[str, ...]) -> Path:
        """`weights_dir/<repo_id>`, which must hold `files`: weights come from the pinned downloads of
        talkstack.engines.gpu.weights (the weights app), never from the Hub at run time."""
        assert self.weights_dir is not None  # the Engine base defaults it
        local = self.weights_dir / repo_id
        missing = [name for name in files if not (local / name).exists()]
        if missing:
            raise TalkstackError(
                ErrorCode.MODEL_UNAVAILABLE,
                f"{self.model}: {local} lacks {', '.join(missing[:3])}; fill the weights volume with "
                f"`modal run -m modal_workers.weights --models {self.model}`",
            )
        return local

    def _chatterbox(self, language: str) -> Any:
        variant = "en" if language == "en" else "multilingual"
        if variant not in self._models:  # the multilingual model loads on its first request
            hub_offline()
            if variant == "en":
                from chatterbox.tts import ChatterboxTTS

                model = ChatterboxTTS.from_local(
                    self._weights(CHATTERBOX_REPO, CHATTERBOX_FILES), self.device
                )
            else:
                from chatterbox.mtl_tts import ChatterboxMultilingualTTS

                folder = self._weights(CHATTERBOX_REPO, CHATTERBOX_MULTILINGUAL_FILES)
                view = chatterbox_multilingual_view(folder, Path(tempfile.mkdtemp(prefix="chatterbox-mtl-")))
                model = ChatterboxMultilingualTTS.from_local(view, self.device)
            self._builtin_conds[variant] = model.conds  # conds.pt: the built-in voice
            self._conditioned_on[variant] = None
            self._models[variant] = model
        return self._models[variant]

    def _indextts2(self) -> Any:
        if "indextts2" not in self._models:
            hub_offline()
            from indextts.infer_v2 import IndexTTS2

            folder = self._weights(INDEXTTS2_REPO, INDEXTTS2_FILES)
            assert self.weights_dir is not None  # the Engine base defaults it
            cuda = str(self.device).startswith("cuda")
            self._models["indextts2"] = IndexTTS2(
                cfg_path=str(folder / "config.yaml"),
                model_dir=str(folder),
                use_fp16=cuda,  # halves the GPT's memory and time; the README's own GPU advice
                device="cuda:0" if self.device == "cuda" else self.device,
                use_cuda_kernel=False,  # BigVGAN's fused kernel compiles with nvcc, absent from the image
                use_deepspeed=False,
                # The pinned helper models: without them it fetches all four from the Hub's `main`.
                aux_paths=indextts2_aux_paths(self.weights_dir),
            )
        return self._models["indextts2"]

    # -- the model calls (the only boundary tests fake) ----------------------------------------

    def _synthesize_chatterbox(
        self, text: str, reference: Path | None, *, language: str, exaggeration: float, cfg_weight: float
    ) -> tuple[np.ndarray, int]:
        model = self._chatterbox(language)
        variant = "en" if language == "en" else "multilingual"
        wanted = str(reference) if reference is not None else None
        if self._conditioned_on[variant] != wanted:
            # generate() keeps the last speaker in model.conds: prime it once per task, and restore
            # the built-in voice explicitly so a request without a reference never gets the previous
            # request's cloned voice.
            if reference is None:
                model.conds = self._builtin_conds[variant]
            else:
                model.prepare_conditionals(str(reference), exaggeration=exaggeration)
            self._conditioned_on[variant] = wanted
        extra = {} if variant == "en" else {"language_id": language}
        wav = model.generate(text, exaggeration=exaggeration, cfg_weight=cfg_weight, **extra)
        return wav.squeeze(0).detach().cpu().numpy().astype(np.float32), int(model.sr)

    def _synthesize_indextts2(
        self, text: str, reference: Path, *, emotion: IndexEmotion
    ) -> tuple[np.ndarray, int]:
        model = self._indextts2()
        steer: dict[str, Any] = {}
        if emotion.vector is not None:
            steer = {"emo_vector": list(emotion.vector), "emo_alpha": emotion.alpha}
        elif emotion.text is not None:
            steer = {"use_emo_text": True, "emo_text": emotion.text, "emo_alpha": emotion.alpha}
        result = model.infer(spk_audio_prompt=str(reference), text=text, output_path=None, **steer)
        if result is None:  # it found nothing to say in `text`
            raise TalkstackError(
                ErrorCode.GENERATION_FAILED, f"indextts2 produced no audio for {text[:40]!r}"
            )
        rate, pcm = result  # int16, shape (samples, 1)
        return np.asarray(pcm, dtype=np.float32).reshape(-1) / 32768.0, int(rate)

    # -- render ---------------------------------------------------------------------------------

    def render(
        self, task: WorkerTask, inputs: dict[str, Path], outdir: Path, progress: ProgressFn
    ) -> tuple[dict[str, Path], RenderResult]:
        options = task_options(task, VoiceOptions)
        result = self.speak(
            task.text, options, outdir, reference_voice=inputs.get("reference_voice"), progress=progress
        )
        return {"audio": result.output}, result

    def speak(
        self,
        text: str | None,
        options: VoiceOptions,
        outdir: Path,
        *,
        reference_voice: Path | None = None,
        progress: ProgressFn = no_progress,
    ) -> RenderResult:
        """Speech for `text` in `outdir/speech.<format>`, cloned from `reference_voice` when given."""
        text = self._check_text(text)
        language = self._check_language(options.language)
        if reference_voice is None and self.model == "indextts2":
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST,
                "indextts2 needs inputs.reference_voice (5-60 s of the voice to clone): it has no "
                "built-in voice; chatterbox has one",
            )
        warnings = self._ignored(options)
        timings: dict[str, float] = {}
        workdir = outdir / "work"
        workdir.mkdir(parents=True, exist_ok=True)

        started = time.perf_counter()
        reference: Path | None = None
        if reference_voice is not None:
            progress(0.02, "preparing the reference voice")
            reference = prepare_reference(
                reference_voice, workdir, rate=self.spec.reference_rate, target_lufs=self.spec.reference_lufs
            ).path
        timings["reference_s"] = time.perf_counter() - started

        self.load()
        started = time.perf_counter()
        sentences = split_sentences(text, self.spec.max_sentence_chars)
        pieces: list[np.ndarray] = []
        rate = 0
        with self._model_lock:
            for i, sentence in enumerate(sentences):
                progress(0.05 + 0.85 * i / len(sentences), f"sentence {i + 1}/{len(sentences)}")
                samples, rate = self._speak(sentence, reference, options, language)
                pieces.append(trim_silence(samples, rate, margin_s=0.08))
        speech = join_with_pauses(pieces, rate)
        timings["synthesis_s"] = time.perf_counter() - started
        if speech.size == 0 or float(frame_levels_dbfs(speech, rate, 0.02).max()) <= SILENCE_DBFS:
            raise TalkstackError(ErrorCode.GENERATION_FAILED, f"{self.model} produced only silence")

        started = time.perf_counter()
        progress(0.92, "encoding")
        output = write_speech(speech, rate, outdir / f"speech.{options.format}", speed=options.speed)
        duration, out_rate = probe_audio(output)
        timings["encode_s"] = time.perf_counter() - started
        progress(1.0, "speech ready")
        return RenderResult(
            output=output,
            bytes=output.stat().st_size,
            duration_s=duration,
            sample_rate=out_rate,
            warnings=warnings,
            timings=timings,
        )

    def _speak(
        self, sentence: str, reference: Path | None, options: VoiceOptions, language: str
    ) -> tuple[np.ndarray, int]:
        if self.model == "chatterbox":
            exaggeration = 0.5 if options.exaggeration is None else options.exaggeration
            return self._synthesize_chatterbox(
                sentence,
                reference,
                language=language,
                exaggeration=exaggeration,
                cfg_weight=chatterbox_cfg_weight(exaggeration),
            )
        assert reference is not None  # speak() refuses indextts2 without one
        return self._synthesize_indextts2(sentence, reference, emotion=indextts2_emotion(options.emotion))

    def _check_text(self, text: str | None) -> str:
        text = (text or "").strip()
        if not text:
            raise TalkstackError(ErrorCode.INVALID_REQUEST, "voice step without text")
        limit = get_limits().max_text_chars
        if len(text) > limit:
            raise TalkstackError(
                ErrorCode.TEXT_TOO_LONG,
                f"text is {len(text)} characters; the limit is {limit}",
                chars=len(text),
            )
        return text

    def _check_language(self, tag: str) -> str:
        language = primary_language(tag)
        if language not in self.spec.languages:
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST,
                f"{self.model} does not speak {tag!r}; it speaks {', '.join(sorted(self.spec.languages))}",
                language=tag,
            )
        return language

    def _ignored(self, options: VoiceOptions) -> list[str]:
        warnings = []
        if options.pitch != 0:
            warnings.append(
                f"{self.model} has no pitch control: pitch was ignored (shifting a cloned voice "
                "would move it away from the speaker)"
            )
        if self.model == "chatterbox" and options.emotion is not None:
            warnings.append("chatterbox takes no emotion label: emotion was ignored; use exaggeration")
        if self.model == "indextts2" and options.exaggeration is not None:
            warnings.append("indextts2 takes no exaggeration: it was ignored; use emotion")
        return warnings
