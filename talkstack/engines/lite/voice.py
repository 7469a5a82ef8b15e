"""lite-voice: text → speech with espeak-ng, run as a separate program (it is GPL-3; never linked).

A formant synthesiser: intelligible, robotic, instant. It is not a voice clone — a reference voice
is ignored and the result says so in its warnings.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ffmpeg

from talkstack.engines.base import RenderResult
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.audio import read_audio
from talkstack.media.ffmpeg import ffmpeg_exe
from talkstack.safety.watermark import write_marked_wav
from talkstack.settings import MediaLimits, get_limits, get_settings

ESPEAK_WPM = 175  # espeak-ng's default rate, i.e. speed 1.0
INSTALL_HINT = "install espeak-ng: apt-get install espeak-ng | brew install espeak-ng | dnf install espeak-ng"


@dataclass(frozen=True)
class LiteVoiceOptions:
    voice: str = "en-us"  # an espeak-ng voice / language (`espeak-ng --voices`)
    speed: float = 1.0  # 0.5–2.0 × the normal rate
    pitch: int = 50  # 0–99


def synthesize(
    text: str,
    output: Path,
    *,
    options: LiteVoiceOptions | None = None,
    reference_voice: Path | None = None,
    limits: MediaLimits | None = None,
) -> RenderResult:
    """Write speech for `text` to `output` (.wav, or .mp3 through ffmpeg)."""
    options = options or LiteVoiceOptions()
    limits = limits or get_limits()
    text = text.strip()
    _validate(text, options, Path(output), limits)
    exe = shutil.which(get_settings().espeak)
    if exe is None:
        raise TalkstackError(
            ErrorCode.MODEL_UNAVAILABLE, f"lite-voice needs espeak-ng, which is not installed; {INSTALL_HINT}"
        )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        rate = str(round(ESPEAK_WPM * options.speed))
        cmd = [exe, "-v", options.voice, "-s", rate, "-p", str(options.pitch), "-w", str(wav), "--stdin"]
        # Text goes through stdin, never the command line: no option injection, no length limit.
        proc = subprocess.run(cmd, input=text.encode(), capture_output=True, timeout=300)
        if proc.returncode != 0 or not wav.exists():
            message = proc.stderr.decode(errors="replace").strip() or f"exit status {proc.returncode}"
            code = (
                ErrorCode.INVALID_REQUEST
                if "voice does not exist" in message
                else ErrorCode.GENERATION_FAILED
            )
            raise TalkstackError(code, f"espeak-ng failed: {message}", voice=options.voice)
        # The watermark (docs/safety.md) goes into the speech before any encoding.
        spoken = read_audio(wav, limits)
        wav = write_marked_wav(Path(tmp) / "marked.wav", spoken.samples, spoken.sample_rate)
        produced = Path(tmp) / f"out{output.suffix}"
        if output.suffix == ".mp3":
            (
                ffmpeg.input(str(wav))
                .output(str(produced), acodec="libmp3lame", audio_bitrate="128k")
                .global_args("-hide_banner", "-loglevel", "error")
                .run(cmd=ffmpeg_exe(), overwrite_output=True, quiet=True)
            )
        else:
            produced = wav
        clip = read_audio(produced, limits)  # also proves the result is valid, non-silent audio
        shutil.move(produced, output)
    warnings = []
    if reference_voice is not None:
        warnings.append("lite-voice is not a voice clone: the reference voice was ignored")
    return RenderResult(
        output=output,
        bytes=output.stat().st_size,
        duration_s=clip.info.duration_s,
        sample_rate=clip.sample_rate,
        warnings=warnings,
    )


def _validate(text: str, options: LiteVoiceOptions, output: Path, limits: MediaLimits) -> None:
    if not text:
        raise TalkstackError(ErrorCode.INVALID_REQUEST, "text is empty")
    if len(text) > limits.max_text_chars:
        raise TalkstackError(
            ErrorCode.TEXT_TOO_LONG,
            f"text is {len(text)} characters; the limit is {limits.max_text_chars}",
            chars=len(text),
        )
    if not 0.5 <= options.speed <= 2.0:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST, f"speed must be between 0.5 and 2.0, got {options.speed}"
        )
    if not 0 <= options.pitch <= 99:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST, f"pitch must be between 0 and 99, got {options.pitch}"
        )
    if output.suffix.lower() not in {".wav", ".mp3"}:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST, f"voice output must be .wav or .mp3, got {output.name!r}"
        )
