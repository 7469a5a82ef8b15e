"""Everything the talking-avatar engines do before and around the model call, kept free of torch so
it is tested on real audio and images: speech tracks at 16 kHz and −23 LUFS, one-or-two-speaker
mixing, padding of short audio, frame counts, speaker boxes, and the settings and input document
handed to MultiTalk / InfiniteTalk.

Facts about the official code (MeiGen-AI/MultiTalk c1ad840, MeiGen-AI/InfiniteTalk 0107cd9) that
shape this module:
- video is 25 fps; one window is `frame_num` = 4n+1 frames (81 by default, trained on 81);
- the audio embedding has int(seconds × 25) rows and must be LONGER than frame_num, or the code
  asserts ("length not satisfies frame nums") — so short speech is padded with silence and the
  video trimmed back afterwards;
- `bbox` is read as [top, left, bottom, right] in source-image pixels; users give [x, y, w, h];
- two speakers: "add" = person1 then person2 (each silent while the other speaks), "para" = both
  at once (the official code needs equal lengths: we pad the shorter one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from talkstack.contract.request import AvatarOptions
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.audio import prepare_speech, read_audio

FPS = 25
SAMPLE_RATE = 16_000
MUX_SAMPLE_RATE = 48_000
CLIP_FRAMES = 81
MIN_BOX_SIDE = 32
MOTION_FRAMES = {"multitalk": 25, "infinitetalk": 9}
"""Frames of the previous window each streaming window is conditioned on (new frames = 81 − this)."""
MAX_STREAM_FRAMES = {"multitalk": 1000, "infinitetalk": 1000}
"""MultiTalk's streaming cap is hard-coded at 1000 frames (40 s); InfiniteTalk's is max_frame_num."""
APG_AFTER_S = 15.0
DEFAULT_PROMPT = "A person is talking naturally to the camera, with natural facial expressions."

AudioType = Literal["add", "para"]


def embedding_frames(seconds: float) -> int:
    """Rows of the audio embedding (and frames of video) the official code makes from `seconds`."""
    return int(seconds * FPS)


def min_samples_for_window(frame_num: int = CLIP_FRAMES, rate: int = SAMPLE_RATE) -> int:
    """Samples of audio whose embedding is longer than one window (the official assertion)."""
    return int(np.ceil((frame_num + 1) / FPS * rate)) + rate // FPS  # + one frame of margin


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
    """Silence appended so the model gets at least one full window."""
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
) -> SpeechTracks:
    """Decode and prepare the speech for the model (and the output's audio track)."""
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
    need = min_samples_for_window(frame_num)
    padded = 0.0
    if len(mix) < need:
        # The model cannot render less than one window: pad with silence, trim the video later.
        extra = need - len(mix)
        speakers = [np.pad(s, (0, extra)) for s in speakers]
        mix = np.pad(mix, (0, extra))
        padded = extra / SAMPLE_RATE
    return SpeechTracks(speakers, mix, mux, duration, padded, warnings)


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

    def windows(self, frames: int) -> int:
        """Model windows needed for `frames` frames of video."""
        if self.mode == "clip" or frames <= self.frame_num:
            return 1
        new = self.frame_num - self.motion_frame
        return 1 + -(-(frames - self.frame_num) // new)

    def passes_per_step(self) -> int:
        # Text guidance 1 drops the text-free pass: conditional + audio-free (2); else 3.
        return 2 if self.text_guide_scale == 1.0 else 3

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
            "max_frames_num": self.frame_num if self.mode == "clip" else self.max_frames_num,
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
    frames = embedding_frames(duration_s)
    streaming = frames > CLIP_FRAMES
    max_frames = MAX_STREAM_FRAMES[model]
    if model == "multitalk" and frames > max_frames:
        raise TalkstackError(
            ErrorCode.AUDIO_TOO_LONG,
            f"multitalk renders at most {max_frames / FPS:.0f} s in one stream (the official cap); use "
            "infinitetalk, or options.long_audio='parallel'",
            duration_s=round(duration_s, 2),
        )
    return GenerationSettings(
        size_bucket=f"{family}-{720 if high else 480}",
        sampling_steps=options.steps or (8 if turbo else 40),
        text_guide_scale=options.text_guidance or (1.0 if turbo else 5.0),
        audio_guide_scale=options.audio_guidance or (2.0 if turbo else 4.0),
        shift=2.0 if turbo else (11.0 if high else 7.0),
        seed=options.seed if options.seed is not None else 42,
        mode="streaming" if streaming else "clip",
        frame_num=CLIP_FRAMES,
        motion_frame=MOTION_FRAMES[model],
        max_frames_num=max(max_frames, frames + 1) if model == "infinitetalk" else max_frames,
        # TeaCache assumes three passes per step and skips nothing in its first 15: useless for turbo.
        use_teacache=options.teacache if options.teacache is not None else not turbo,
        teacache_thresh=0.2,
        use_apg=options.apg if options.apg is not None else duration_s > APG_AFTER_S,
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
