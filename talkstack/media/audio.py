"""Audio: decode and validate speech, normalise loudness, resample, write WAV.

Decoding goes through PyAV (libav in the wheel), so WAV, MP3, M4A/AAC, FLAC and OGG
(Vorbis/Opus) need no system ffmpeg. Everything downstream works on mono float32.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile
import soxr

from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.files import check_input_file, sniff_mime
from talkstack.settings import MediaLimits, get_limits

# libav demuxer names accepted as speech containers.
AUDIO_FORMATS = {"wav", "mp3", "mov,mp4,m4a,3gp,3g2,mj2", "flac", "ogg"}
FORMAT_LABELS = {"mov,mp4,m4a,3gp,3g2,mj2": "m4a"}
SILENCE_DBFS = -55.0  # a 20 ms window quieter than this is silence
ENGINE_SAMPLE_RATE = 16_000  # what the avatar engines (wav2vec2, lite) expect
TARGET_LUFS = -23.0  # EBU R128
DECODE_MAX_RATE = 48_000
"""Audio is decoded at its own rate up to this one (resampled above it): the engines want 16 kHz,
and a header claiming a huge rate must not size the decode buffer."""


@dataclass(frozen=True)
class AudioInfo:
    format: str
    codec: str
    sample_rate: int  # the file's own (the decoded samples may be at a lower one: AudioClip)
    channels: int
    duration_s: float
    bytes: int
    peak_dbfs: float
    voiced_s: float  # time above the silence threshold


@dataclass(frozen=True)
class AudioClip:
    """Decoded mono audio at its source sample rate, plus what was learnt while decoding it."""

    samples: np.ndarray  # float32, mono, [-1, 1]
    sample_rate: int
    info: AudioInfo


def read_audio(path: Path, limits: MediaLimits | None = None) -> AudioClip:
    """Decode and validate a speech file; raise TalkstackError with a specific code if unusable."""
    limits = limits or get_limits()
    size = check_input_file(path, what="audio", max_bytes=limits.max_audio_bytes)
    samples, rate, fmt, codec, channels, file_rate = _decode_mono(path, limits.max_audio_seconds)
    duration = len(samples) / rate
    if duration < limits.min_audio_seconds:
        raise TalkstackError(
            ErrorCode.AUDIO_TOO_SHORT,
            f"audio is {duration:.2f} s long; at least {limits.min_audio_seconds:g} s is needed",
            duration_s=round(duration, 3),
        )
    if duration > limits.max_audio_seconds:
        raise _too_long(duration, limits.max_audio_seconds)
    levels = frame_levels_dbfs(samples, rate, window_s=0.02)
    voiced_s = float(np.count_nonzero(levels > SILENCE_DBFS) * 0.02)
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    peak_dbfs = float(20 * np.log10(max(peak, 1e-10)))
    if voiced_s < 0.1:
        raise TalkstackError(
            ErrorCode.AUDIO_SILENT,
            f"audio is silent (loudest moment {float(levels.max()):.0f} dBFS; nothing above "
            f"{SILENCE_DBFS:.0f} dBFS)",
            peak_dbfs=round(peak_dbfs, 1),
        )
    info = AudioInfo(fmt, codec, file_rate, channels, duration, size, peak_dbfs, voiced_s)
    return AudioClip(samples, rate, info)


def _too_long(duration: float, limit: float) -> TalkstackError:
    return TalkstackError(
        ErrorCode.AUDIO_TOO_LONG,
        f"audio is {duration:.1f} s long; the limit is {limit:g} s",
        duration_s=round(duration, 3),
    )


def _decode_mono(path: Path, max_seconds: float) -> tuple[np.ndarray, int, str, str, int, int]:
    """(samples, their rate, format, codec, channels, the file's own rate)."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, EOFError, OSError) as exc:
        raise _unreadable(path, exc) from exc
    with container:
        fmt = container.format.name
        if fmt not in AUDIO_FORMATS or not container.streams.audio:
            raise TalkstackError(
                ErrorCode.UNSUPPORTED_MEDIA,
                f"{path.name} is {fmt!r}, not a supported audio file (WAV, MP3, M4A, FLAC, OGG)",
                format=fmt,
            )
        stream = container.streams.audio[0]
        rate, channels, codec = stream.rate, stream.channels, stream.codec_context.name
        # A 50 MB MP3 can hold an hour: refuse from the header before decoding (and allocating) it.
        declared = float(container.duration or 0) / av.time_base
        if declared > max_seconds + 1:
            raise _too_long(declared, max_seconds)
        if not rate or rate <= 0:
            raise TalkstackError(ErrorCode.CORRUPT_MEDIA, f"{path.name} is damaged: no sample rate")
        # The header may lie (FLAC's "total samples unknown", a streaming WAV's 0xFFFFFFFF sizes, an
        # MP3 timed from its first frame), so decoding itself stops at the limit: into one buffer of
        # exactly max_seconds, at most DECODE_MAX_RATE (a header can claim any rate). Pages of the
        # buffer that are never written are never resident, so a short clip costs what it holds.
        out_rate = min(rate, DECODE_MAX_RATE)
        buffer = np.empty(math.ceil(max_seconds * out_rate), np.float32)
        filled = 0
        # Down-mix and convert to packed float32 in libswresample (and cap the rate).
        resampler = av.AudioResampler(format="flt", layout="mono", rate=out_rate)
        try:
            for frame in container.decode(stream):
                filled = _append(buffer, filled, resampler.resample(frame), max_seconds)
            filled = _append(buffer, filled, resampler.resample(None), max_seconds)
        except (av.error.FFmpegError, EOFError) as exc:
            raise TalkstackError(
                ErrorCode.CORRUPT_MEDIA, f"{path.name} is damaged: decoding stopped ({exc})"
            ) from exc
    samples = buffer[:filled]
    np.clip(samples, -1.0, 1.0, out=samples)
    return samples, out_rate, FORMAT_LABELS.get(fmt, fmt), codec, channels, rate


def _append(buffer: np.ndarray, filled: int, frames: list[av.AudioFrame], max_seconds: float) -> int:
    """Copy decoded frames into `buffer` after `filled`; AUDIO_TOO_LONG as soon as they overflow it."""
    for frame in frames:
        data = frame.to_ndarray().reshape(-1)
        end = filled + len(data)
        if end > len(buffer):
            raise TalkstackError(
                ErrorCode.AUDIO_TOO_LONG,
                f"audio is longer than the {max_seconds:g} s limit (its header did not say so; "
                "decoding stopped at the limit)",
                limit_s=max_seconds,
            )
        buffer[filled:end] = data
        filled = end
    return filled


def _unreadable(path: Path, exc: Exception) -> TalkstackError:
    # Magic bytes of a known media type + failure to open = a damaged file, otherwise a wrong type.
    mime = sniff_mime(path)
    if mime and mime.split("/")[0] in {"audio", "video"}:
        return TalkstackError(
            ErrorCode.CORRUPT_MEDIA, f"{path.name} looks like {mime} but cannot be decoded", mime=mime
        )
    return TalkstackError(
        ErrorCode.UNSUPPORTED_MEDIA,
        f"{path.name} is not an audio file (WAV, MP3, M4A, FLAC, OGG)" + (f"; it is {mime}" if mime else ""),
        mime=mime,
    )


def frame_levels_dbfs(samples: np.ndarray, rate: int, window_s: float) -> np.ndarray:
    """RMS level of consecutive windows, in dBFS."""
    hop = max(1, round(rate * window_s))
    n = len(samples) // hop
    if n == 0:
        return np.array([-120.0])
    frames = samples[: n * hop].reshape(n, hop)  # a view: no copy of long audio
    rms = np.sqrt(np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / hop)
    return 20 * np.log10(np.maximum(rms, 1e-6))


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, rate_in, rate_out, quality="HQ").astype(np.float32)


def normalize_loudness(samples: np.ndarray, rate: int, target_lufs: float = TARGET_LUFS) -> np.ndarray:
    """Gain to the target integrated loudness (BS.1770), limited so no sample clips."""
    # Imported here: pyloudnorm pulls in SciPy (~150 MB), which the segment Lambda, a reader of
    # audio only, must not carry (Lambda's 250 MB limit).
    import pyloudnorm

    meter = pyloudnorm.Meter(rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyloudnorm warns on clipping; we limit below
        loudness = meter.integrated_loudness(samples.astype(np.float64))
    if not np.isfinite(loudness):
        return samples
    out = samples * np.float32(10 ** ((target_lufs - loudness) / 20))
    peak = float(np.max(np.abs(out)))
    if peak > 0.999:
        out *= np.float32(0.999 / peak)
    return out.astype(np.float32)


def prepare_speech(
    clip: AudioClip, rate: int = ENGINE_SAMPLE_RATE, target_lufs: float = TARGET_LUFS
) -> np.ndarray:
    """What the avatar engines consume: mono, `rate` Hz, loudness-normalised."""
    return normalize_loudness(resample(clip.samples, clip.sample_rate, rate), rate, target_lufs)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples, rate, subtype="PCM_16")
    return path
