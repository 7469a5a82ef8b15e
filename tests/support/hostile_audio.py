"""Audio files whose headers hide how long they are (decompression bombs), built from real encoders
and then patched the way an attacker would, plus a peak-memory probe that runs a decode in a fresh
process and reads its peak resident set (what the kernel charged: PyAV's C buffers included, which
tracemalloc does not see).

The peak is /proc/self/status VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across
fork + exec, so a child of a 300 MB pytest reports at least 300 MB whatever it does itself.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile
from imageio_ffmpeg import get_ffmpeg_exe

REPO = Path(__file__).resolve().parents[2]
STREAMINFO_SAMPLES = 18
"""File offset of the 64-bit word of STREAMINFO that ends in "total samples" (36 bits): "fLaC" (4),
the metadata block header (4), min/max block size (2 + 2) and min/max frame size (3 + 3); then
sample rate (20 bits), channels − 1 (3), bits per sample − 1 (5), total samples (36), MD5 (16 bytes)."""
SAMPLES_MASK = (1 << 36) - 1


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def hide_flac_length(path: Path) -> int:
    """Set STREAMINFO's total samples to 0 ("unknown", which the FLAC format allows) and its MD5 to
    zeros ("not computed"); return the count it had."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0, "STREAMINFO must be the first block"
    assert int.from_bytes(data[5:8], "big") == 34
    (word,) = struct.unpack(">Q", data[STREAMINFO_SAMPLES : STREAMINFO_SAMPLES + 8])
    data[STREAMINFO_SAMPLES : STREAMINFO_SAMPLES + 8] = struct.pack(">Q", word & ~SAMPLES_MASK)
    data[26:42] = bytes(16)
    path.write_bytes(bytes(data))
    return word & SAMPLES_MASK


def flac_of_unknown_length(path: Path, seconds: float, rate: int = 16_000) -> Path:
    soundfile.write(str(path), tone(seconds, rate), rate, format="FLAC", subtype="PCM_16")
    assert hide_flac_length(path) == int(seconds * rate)
    return path


def flac_bomb(path: Path, seconds: int, rate: int = 48_000) -> Path:
    """A few MB of stereo FLAC (a second of tone, then digital silence: FLAC's CONSTANT subframes
    cost a few bytes a block) that decodes to `seconds` of audio, its length hidden."""
    block = np.zeros((rate * 60, 2), np.int16)
    block[:rate, 0] = (3000 * np.sin(np.arange(rate) * 2 * np.pi * 220 / rate)).astype(np.int16)
    with soundfile.SoundFile(str(path), "w", rate, 2, "PCM_16", format="FLAC") as out:
        for _ in range(-(-seconds // 60)):
            out.write(block)
    hide_flac_length(path)
    return path


def streaming_wav(path: Path, seconds: float, size_word: int, rate: int = 8000) -> Path:
    """A WAV whose RIFF and data chunk sizes are `size_word` (0xFFFFFFFF or 0: what a recorder
    writing to a pipe leaves, since it cannot seek back to fill them in)."""
    soundfile.write(str(path), tone(seconds, rate), rate, format="WAV", subtype="PCM_16")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    data[4:8] = struct.pack("<I", size_word)
    at = data.index(b"data", 12)
    data[at + 4 : at + 8] = struct.pack("<I", size_word)
    path.write_bytes(bytes(data))
    return path


def mp3_without_xing(path: Path, loud_s: float, long_s: float, rate: int = 44_100) -> Path:
    """An MP3 with no Xing/Info header whose first frames are 320 kbit/s and the rest 32 kbit/s: a
    demuxer that times it from the first frame and the file size sees a tenth of its length."""
    parts = []
    for name, seconds, bitrate in (("loud", loud_s, "320k"), ("long", long_s, "32k")):
        wav, mp3 = path.with_name(f"{name}.wav"), path.with_name(f"{name}.mp3")
        soundfile.write(str(wav), tone(seconds, rate), rate)
        encode = ["-c:a", "libmp3lame", "-b:a", bitrate, "-write_xing", "0", "-id3v2_version", "0"]
        subprocess.run(
            [get_ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(wav), *encode, str(mp3)], check=True
        )
        parts.append(mp3.read_bytes())
    path.write_bytes(b"".join(parts))  # MP3 is a sequence of self-contained frames
    return path


PROBE = """
import json, sys
from pathlib import Path
from talkstack.errors import TalkstackError
from talkstack.media.audio import read_audio
from talkstack.settings import MediaLimits
limits = MediaLimits(**json.loads(sys.argv[2]))
try:
    clip = read_audio(Path(sys.argv[1]), limits)
    outcome = {"code": None, "seconds": clip.info.duration_s}
except TalkstackError as exc:
    outcome = {"code": str(exc.code), "message": exc.message}
status = Path("/proc/self/status").read_text()
outcome["peak_mb"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps(outcome))
"""


def decode_in_fresh_process(path: Path, **limits: float) -> dict:
    """read_audio(path) in a new interpreter: {code, message | seconds, peak_mb (whole process)}."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), json.dumps(limits)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])
