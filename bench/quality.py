"""Benchmark: what the avatar quality report costs per video minute (it runs on every avatar job).

Renders the bundled portrait speaking the bundled speech looped to each length (lite engine, once
per length, not timed), optionally re-encoded at another size (832×480 is the GPU engines' 480p
bucket), then times `assess_avatar` on it. Prints, per length: frames decoded, frames the
landmarker measured, seconds, seconds per video minute, and the report's own values. Not a test:
machines are shared and timings are noisy.

    python bench/quality.py [--durations 10 60] [--size 832x480] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import ffmpeg
import numpy as np
import soundfile
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talkstack.engines.lite.avatar import LiteAvatarOptions, render_avatar
from talkstack.engines.quality import assess_avatar
from talkstack.media.ffmpeg import ffmpeg_exe

SAMPLES = Path(str(resources.files("talkstack") / "assets" / "samples"))


def looped_speech(seconds: float, path: Path) -> Path:
    samples, rate = soundfile.read(SAMPLES / "speech.wav", dtype="float32")
    reps = int(np.ceil(seconds * rate / len(samples)))
    soundfile.write(path, np.tile(samples, reps)[: int(seconds * rate)], rate, subtype="PCM_16")
    return path


def resized(video: Path, size: str, out: Path) -> Path:
    """The render scaled to fit `size` and padded to it (the face keeps its proportions)."""
    width, height = (int(v) for v in size.split("x"))
    stream = ffmpeg.input(str(video))
    picture = stream.video.filter("scale", width, height, force_original_aspect_ratio="decrease").filter(
        "pad", width, height, "(ow-iw)/2", "(oh-ih)/2"
    )
    (
        ffmpeg.output(picture, stream.audio, str(out), vcodec="libx264", pix_fmt="yuv420p", acodec="copy")
        .global_args("-hide_banner", "-loglevel", "error")
        .run(cmd=ffmpeg_exe(), overwrite_output=True, quiet=True)
    )
    return out


def _num(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--durations", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--size", default=None, help="re-encode the render at WxH first (e.g. 832x480)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()

    photo = np.asarray(Image.open(SAMPLES / "portrait.png").convert("RGB"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.durations:
            audio = looped_speech(seconds, Path(tmp) / f"speech_{seconds:g}.wav")
            video = Path(tmp) / f"avatar_{seconds:g}.mp4"
            render_avatar(SAMPLES / "portrait.png", audio, video, options=LiteAvatarOptions())
            if args.size:
                video = resized(video, args.size, Path(tmp) / f"avatar_{seconds:g}_{args.size}.mp4")
            assess_avatar(video, photo)  # warm-up: librosa/numba and MediaPipe load once per process
            times, report = [], None
            for _ in range(args.repeats):
                t = time.perf_counter()
                report = assess_avatar(video, photo)
                times.append(time.perf_counter() - t)
            assert report is not None
            wall = statistics.median(times)
            rows.append(
                {
                    "video_s": seconds,
                    "size": args.size or "512x512",
                    "frames": report.frames,
                    "measured_frames": report.sampled_frames,
                    "seconds": round(wall, 3),
                    "seconds_per_video_minute": round(wall / seconds * 60, 2),
                    "lipsync": report.lipsync,
                    "identity_drift": report.identity_drift,
                    "colour_drift": report.colour_drift,
                    "passed": report.passed,
                }
            )

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"quality report benchmark — {platform.machine()}, {cpus} CPUs, Python {platform.python_version()}, "
        f"median of {args.repeats} runs, {rows[0]['size']} @ 25 fps"
    )
    header = f"{'video':>7} {'frames':>7} {'measured':>9} {'seconds':>8} {'s/min':>7} {'lipsync':>8} "
    header += f"{'identity':>9} {'colour':>7} {'passed':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['video_s']:>6g}s {r['frames']:>7} {r['measured_frames']:>9} {r['seconds']:>8.2f} "
            f"{r['seconds_per_video_minute']:>7.2f} {_num(r['lipsync'], 8, 3)} "
            f"{_num(r['identity_drift'], 9, 3)} {_num(r['colour_drift'], 7, 2)} {r['passed']!s:>7}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
