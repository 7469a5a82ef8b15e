"""Everything the talking-avatar engines do before and around the model call, kept free of torch so
it is tested on real audio and images: speech tracks at 16 kHz and −23 LUFS, one-or-two-speaker
mixing, padding of short audio, frame counts, speaker boxes, and the settings and input document
handed to MultiTalk / InfiniteTalk.

Facts about the official code (MeiGen-AI/MultiTalk c1ad840, MeiGen-AI/InfiniteTalk 0107cd9) that
shape this module:
- video is 25 fps; one window is `frame_num` = 4n+1 frames (81 by default, trained on 81);
- the audio embedding has one row per 1/25 s and must be LONGER than frame_num, or the code
  asserts ("length not satisfies frame nums") — so short speech is padded with silence and the
  video trimmed back afterwards;
- how many frames `generate` returns is decided by its window loop, not by the embedding's length:
  `upstream_outcome` reproduces that arithmetic (MultiTalk cuts 3 frames too many off a stream),
  and `model_rows` picks the padding and `max_frames_num` that make it return every frame we need;
- `bbox` is read as [top, left, bottom, right] in source-image pixels; users give [x, y, w, h];
- two speakers: "add" = person1 then person2 (each silent while the other speaks), "para" = both
  at once (the official code needs equal lengths: we pad the shorter one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from talkstack.contract.request import AvatarOptions
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.audio import prepare_speech, read_audio

FPS = 25
SAMPLE_RATE = 16_000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640: one embedding row (one video frame) of speech
MUX_SAMPLE_RATE = 48_000
TURBO_STEPS = 4
"""Steps with the lightx2v step-distillation LoRA the catalogue ships (MultiTalk README: lightx2v
needs 4 steps; the 8 often quoted are FusionX's, a LoRA we do not ship)."""
CLIP_FRAMES = 81
MIN_BOX_SIDE = 32
MOTION_FRAMES = {"multitalk": 25, "infinitetalk": 9}
"""Frames of the previous window each streaming window is conditioned on (new frames = 81 − this):
the `--motion_frame` defaults of generate_multitalk.py (25) and generate_infinitetalk.py (9)."""
MAX_STREAM_FRAMES = {"multitalk": 1000}
"""The longest stream we ask of a model, in frames. MultiTalk's generate_multitalk.py passes
max_frames_num=1000 (40 s) in streaming mode and quality past it is untested, so longer speech is
refused; InfiniteTalk is made for long streams (its README: up to a minute per photo, more from a
video), so it gets no cap beyond the request's own limit."""
TAIL_PAD_FRAMES = 4
"""Silence appended after the speech, at least (frames). Upstream's window for frame i reads audio
rows i−2 … i+2, so the last real frames see silence rather than the clamped final row either way."""
APG_AFTER_S = 15.0
DEFAULT_PROMPT = "A person is talking naturally to the camera, with natural facial expressions."

AudioType = Literal["add", "para"]
Model = Literal["multitalk", "infinitetalk"]


def frames_for_samples(samples: int) -> int:
    """Embedding rows (= video frames) of `samples` of 16 kHz speech: one per 640 samples, floored.
    Integer arithmetic on purpose: upstream's `int(len / 16000 * 25)` in floats comes out one short
    at some exact multiples (640 × 29 samples → 28 rows), and the padding below must be exact."""
    return samples // SAMPLES_PER_FRAME


def embedding_frames(seconds: float) -> int:
    """Rows of the audio embedding (and frames of video) for `seconds` of speech."""
    return frames_for_samples(round(seconds * SAMPLE_RATE))


# ---------------------------------------------------------------------------------------------
# Upstream's window arithmetic
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpstreamOutcome:
    windows: int
    """Model windows `generate` renders (each: sampling_steps × passes per step)."""
    frames: int
    """Frames `generate` returns."""


def upstream_outcome(
    model: str, rows: int, *, frame_num: int, motion_frame: int, max_frames_num: int
) -> UpstreamOutcome:
    """What MultiTalkPipeline.generate (MultiTalk c1ad840, wan/multitalk.py) or
    InfiniteTalkPipeline.generate_infinitetalk (InfiniteTalk 0107cd9, same file) returns for an
    audio embedding of `rows` rows, step by step as their `while True` loop does it:

    - window 0 covers audio rows [0, frame_num) and keeps all its frames; every later window starts
      frame_num − motion_frame rows further and keeps its frames after the first motion_frame;
    - after each window: if max_frames_num <= frame_num, stop (clip mode). Otherwise, once the next
      window's end reaches min(max_frames_num, rows), that window is the last; if it also reaches
      past the embedding, the embedding is extended by miss = end − rows + 3 mirrored rows;
    - the result is cut to max_frames_num frames, then — streaming, miss > 0 — MultiTalk cuts
      `[:-miss]` (so it returns rows − 3 frames when the stream ends inside the cap: 125 rows →
      122 frames), InfiniteTalk cuts to the embedding's original length `[:rows]`.
    """
    if rows <= frame_num:  # upstream: `assert len(full_audio_embs) == HUMAN_NUMBER` after skipping it
        raise ValueError(f"{rows} embedding rows: upstream needs more than frame_num={frame_num}")
    start, end, kept, windows = 0, frame_num, frame_num, 1
    miss = 0
    if max_frames_num > frame_num:
        while True:
            start += frame_num - motion_frame
            end = start + frame_num
            if end >= min(max_frames_num, rows):
                miss = end - rows + 3 if end >= rows else 0
                kept += frame_num - motion_frame
                windows += 1
                break
            kept += frame_num - motion_frame
            windows += 1
    frames = min(kept, max_frames_num)
    if max_frames_num > frame_num and miss > 0:
        frames = max(0, frames - miss) if model == "multitalk" else min(frames, rows)
    return UpstreamOutcome(windows, frames)


def windows_for(frames: int, frame_num: int, motion_frame: int) -> int:
    """Windows that render `frames` frames: one, then one per frame_num − motion_frame new frames."""
    if frames <= frame_num:
        return 1
    return 1 + -(-(frames - frame_num) // (frame_num - motion_frame))


@dataclass(frozen=True)
class ModelPlan:
    """How to call upstream so it returns every frame of the speech."""

    rows: int
    """Embedding rows to hand it (speech + silence)."""
    max_frames_num: int
    windows: int


def model_plan(model: str, frames: int, *, frame_num: int = CLIP_FRAMES) -> ModelPlan:
    """The embedding length and `max_frames_num` for `frames` frames of speech.

    Streaming: max_frames_num = frames, and the embedding reaches past the last window's end. The
    loop then stops on the cap (not on the embedding's end), so no window is rendered beyond what
    the speech needs, nothing is mirrored and nothing is cut: upstream returns exactly `frames`
    (MultiTalk included, whose `[:-miss]` would otherwise drop 3). One window (speech ≤ frame_num
    frames): max_frames_num = frame_num, as generate_multitalk.py's clip mode passes; the video is
    trimmed afterwards. Either way at least TAIL_PAD_FRAMES of silence, and more than frame_num rows
    (upstream's assertion)."""
    motion = MOTION_FRAMES[model]
    windows = windows_for(frames, frame_num, motion)
    last_end = frame_num + (windows - 1) * (frame_num - motion)
    rows = max(last_end + 1, frames + TAIL_PAD_FRAMES)
    cap = frame_num if frames <= frame_num else frames
    return ModelPlan(rows=rows, max_frames_num=cap, windows=windows)


@dataclass(frozen=True)
class SpeechTracks:
    """Model-ready speech: one track per speaker plus their mix, all the same length."""

    speakers: list[np.ndarray]
    """16 kHz, −23 LUFS, float32; a silent stretch where the speaker does not talk ("add")."""
    mix: np.ndarray
    """16 kHz mix of the speakers (what the model's clip is timed against)."""
    mux: np.ndarray
    """48 kHz mix for the output file (the 16 kHz one would sound muffled)."""
    duration_s: float
    """Length of the speech, before padding: the video is trimmed to this."""
    padded_s: float
    """Silence appended so the model renders every frame of the speech (see `model_plan`)."""
    warnings: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        """Video frames for the speech: as many as its embedding has rows (what the model renders)."""
        return max(1, embedding_frames(self.duration_s))


def _combine(tracks: list[np.ndarray], audio_type: AudioType) -> tuple[list[np.ndarray], np.ndarray]:
    if len(tracks) == 1:
        return tracks, tracks[0]
    first, second = tracks
    if audio_type == "add":  # in turn: person1 speaks, then person2
        one = np.concatenate([first, np.zeros_like(second)])
        two = np.concatenate([np.zeros_like(first), second])
        return [one, two], np.concatenate([first, second])
    length = max(len(first), len(second))  # at once: pad the shorter (the official code would crash)
    one, two = (np.pad(t, (0, length - len(t))) for t in (first, second))
    return [one, two], np.clip(one + two, -1.0, 1.0)


def prepare_tracks(
    audio: Path,
    second_audio: Path | None = None,
    audio_type: AudioType | None = None,
    max_duration_s: float | None = None,
    frame_num: int = CLIP_FRAMES,
    model: str = "multitalk",
) -> SpeechTracks:
    """Decode and prepare the speech for `model` (and the output's audio track), padded with
    silence to the embedding length `model_plan` asks for."""
    clips = [read_audio(path) for path in (audio, second_audio) if path is not None]
    kind: AudioType = audio_type or "add"
    model_tracks = [prepare_speech(clip, SAMPLE_RATE) for clip in clips]
    mux_tracks = [prepare_speech(clip, MUX_SAMPLE_RATE) for clip in clips]
    speakers, mix = _combine(model_tracks, kind)
    _, mux = _combine(mux_tracks, kind)
    warnings = []
    if max_duration_s is not None and len(mix) > max_duration_s * SAMPLE_RATE:
        keep = int(max_duration_s * SAMPLE_RATE)
        speakers, mix = [s[:keep] for s in speakers], mix[:keep]
        mux = mux[: int(max_duration_s * MUX_SAMPLE_RATE)]
        warnings.append(f"speech cut at max_duration_s={max_duration_s:g}")
    duration = len(mix) / SAMPLE_RATE
    # Silence after the speech: upstream renders whole windows and its stream arithmetic needs
    # rows past the last one (model_plan); the video is trimmed back to the speech afterwards.
    plan = model_plan(model, max(1, frames_for_samples(len(mix))), frame_num=frame_num)
    extra = max(0, plan.rows * SAMPLES_PER_FRAME - len(mix))
    speakers = [np.pad(s, (0, extra)) for s in speakers]
    mix = np.pad(mix, (0, extra))
    return SpeechTracks(speakers, mix, mux, duration, extra / SAMPLE_RATE, warnings)


# ---------------------------------------------------------------------------------------------
# Speaker boxes
# ---------------------------------------------------------------------------------------------


def to_model_boxes(
    boxes: list[tuple[int, int, int, int]], image_width: int, image_height: int
) -> dict[str, list[int]]:
    """Users' [x, y, width, height] boxes → the official code's {"person1": [top, left, bottom, right]}.
    Boxes outside the photo, too small to hold a face, or covering the whole photo (the model then
    has no background to attend to and renders black frames) are refused with the reason."""
    converted = {}
    for i, (x, y, w, h) in enumerate(boxes):
        where = f"options.speaker_boxes[{i}]"
        if x + w > image_width or y + h > image_height:
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST,
                f"{where}: [{x}, {y}, {w}, {h}] reaches past the {image_width}×{image_height} photo "
                "(boxes are [x, y, width, height] in the photo's pixels)",
                field=where,
            )
        if min(w, h) < MIN_BOX_SIDE:
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST,
                f"{where}: {w}×{h} px is too small to hold a face (at least {MIN_BOX_SIDE}×{MIN_BOX_SIDE})",
                field=where,
            )
        converted[f"person{i + 1}"] = [y, x, y + h, x + w]
    covered = np.zeros((image_height, image_width), dtype=bool)
    for top, left, bottom, right in converted.values():
        covered[top:bottom, left:right] = True
    if covered.mean() > 0.95:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST,
            "options.speaker_boxes: the boxes cover the whole photo; draw them around the speakers' heads",
            field="options.speaker_boxes",
        )
    return converted


# ---------------------------------------------------------------------------------------------
# Generation settings and the input document
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationSettings:
    """Arguments of MultiTalkPipeline.generate / InfiniteTalkPipeline.generate_infinitetalk."""

    size_bucket: str
    sampling_steps: int
    text_guide_scale: float
    audio_guide_scale: float
    shift: float
    seed: int
    mode: Literal["clip", "streaming"]
    frame_num: int
    motion_frame: int
    max_frames_num: int
    use_teacache: bool
    teacache_thresh: float
    use_apg: bool
    apg_momentum: float = -0.75
    apg_norm_threshold: float = 55.0
    color_correction_strength: float = 1.0
    warnings: tuple[str, ...] = ()
    """Options changed because upstream cannot honour them (shown on the job's result)."""

    def windows(self, frames: int) -> int:
        """Model windows needed for `frames` frames of video."""
        if self.mode == "clip":
            return 1
        return windows_for(frames, self.frame_num, self.motion_frame)

    def passes_per_step(self) -> int:
        # Upstream's test, math.isclose(text_guide_scale, 1.0): text guidance 1 drops the text-free
        # passes (conditional + audio-free: 2); otherwise conditional, text-free, unconditional (3).
        return 2 if math.isclose(self.text_guide_scale, 1.0) else 3

    def generate_kwargs(self) -> dict[str, Any]:
        return {
            "size_buckget": self.size_bucket,  # sic: the official argument name
            "motion_frame": self.motion_frame,
            "frame_num": self.frame_num,
            "shift": self.shift,
            "sampling_steps": self.sampling_steps,
            "text_guide_scale": self.text_guide_scale,
            "audio_guide_scale": self.audio_guide_scale,
            "seed": self.seed,
            "offload_model": False,  # an 80 GB GPU holds everything; offloading costs minutes per window
            "max_frames_num": self.max_frames_num,
            "color_correction_strength": self.color_correction_strength,
        }

    def extra_args(self) -> dict[str, Any]:
        """The `extra_args` namespace the official generate reads (it must always be given)."""
        return {
            "use_teacache": self.use_teacache,
            "teacache_thresh": self.teacache_thresh,
            "size": self.size_bucket,
            "use_apg": self.use_apg,
            "apg_momentum": self.apg_momentum,
            "apg_norm_threshold": self.apg_norm_threshold,
        }


def generation_settings(model: str, options: AvatarOptions, duration_s: float) -> GenerationSettings:
    """The job's options → the official code's arguments, with the READMEs' recommended defaults."""
    resolution = options.effective_resolution or "480p"
    high = resolution == "720p" or max(options.width or 0, options.height or 0) > 900
    family = "infinitetalk" if model == "infinitetalk" else "multitalk"
    turbo = options.turbo
    frames = max(1, embedding_frames(duration_s))
    streaming = frames > CLIP_FRAMES
    max_frames = MAX_STREAM_FRAMES.get(model)
    if max_frames is not None and frames > max_frames:
        raise TalkstackError(
            ErrorCode.AUDIO_TOO_LONG,
            f"{model} renders at most {max_frames / FPS:.0f} s in one stream (the official cap); use "
            "infinitetalk, or options.long_audio='parallel'",
            duration_s=round(duration_s, 2),
        )
    text_guide = options.text_guidance or (1.0 if turbo else 5.0)
    warnings: list[str] = []
    teacache = options.teacache if options.teacache is not None else not turbo
    if teacache and math.isclose(text_guide, 1.0):
        # Upstream's TeaCache keys its caches on the forward pass's position in a 3-pass step
        # (cnt % 3: cond, drop-text, uncond; multitalk_model.py). Text guidance 1 runs 2 passes a
        # step (cond, drop-audio), so it would reuse one pass's residual for another: garbage.
        teacache = False
        if options.teacache:
            warnings.append("teacache needs text guidance above 1 (three passes a step): turned off")
    return GenerationSettings(
        size_bucket=f"{family}-{720 if high else 480}",
        sampling_steps=options.steps or (TURBO_STEPS if turbo else 40),
        text_guide_scale=text_guide,
        audio_guide_scale=options.audio_guidance or (2.0 if turbo else 4.0),
        shift=2.0 if turbo else (11.0 if high else 7.0),
        seed=options.seed if options.seed is not None else 42,
        mode="streaming" if streaming else "clip",
        frame_num=CLIP_FRAMES,
        motion_frame=MOTION_FRAMES[model],
        max_frames_num=model_plan(model, frames).max_frames_num,
        use_teacache=teacache,
        teacache_thresh=0.2,
        use_apg=options.apg if options.apg is not None else duration_s > APG_AFTER_S,
        warnings=tuple(warnings),
    )


def input_document(
    model: str,
    *,
    prompt: str | None,
    image: Path,
    embeddings: list[Path],
    mix: Path,
    audio_type: AudioType | None,
    boxes: dict[str, list[int]] | None,
) -> dict[str, Any]:
    """The `input_data` dict the official generate takes: audio as saved embedding tensors (.pt),
    plus the mixed 16 kHz track."""
    document: dict[str, Any] = {
        "prompt": prompt or DEFAULT_PROMPT,
        "cond_audio": {f"person{i + 1}": str(path) for i, path in enumerate(embeddings)},
        "video_audio": str(mix),
    }
    # InfiniteTalk calls its reference `cond_video` (a photo or a video to dub).
    document["cond_video" if model == "infinitetalk" else "cond_image"] = str(image)
    if len(embeddings) > 1:
        document["audio_type"] = audio_type or "add"
        if boxes:
            document["bbox"] = boxes
    return document
