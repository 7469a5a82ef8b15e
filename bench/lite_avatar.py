"""Benchmark: lite-avatar render speed and memory for 5 s, 30 s and 120 s of speech.

Each run is a fresh process (so peak RSS is that run's own Python process; the ffmpeg encoder is a
separate process, not counted), rendering the bundled portrait at
its demo size (512×512) with the bundled speech looped to the wanted length. Prints a table of
medians over --repeats runs. Not a test: machines are shared and timings are noisy.

    python bench/lite_avatar.py [--durations 5 30 120] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import soundfile

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from talkstack.engines.lite.avatar import render_avatar
image, audio, out = map(Path, sys.argv[1:4])
t = time.perf_counter()
r = render_avatar(image, audio, out)
wall = time.perf_counter() - t
print(json.dumps({
    "wall_s": wall, "frames": r.frames, "duration_s": r.duration_s, "render_s": r.timings["render_s"],
    "prepare_s": r.timings["prepare_s"], "width": r.width, "height": r.height,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def looped_speech(seconds: float, path: Path) -> Path:
    source = Path(str(resources.files("talkstack") / "assets" / "samples" / "speech.wav"))
    samples, rate = soundfile.read(source, dtype="float32")
    reps = int(np.ceil(seconds * rate / len(samples)))
    soundfile.write(path, np.tile(samples, reps)[: int(seconds * rate)], rate, subtype="PCM_16")
    return path


def run_once(image: Path, audio: Path, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(image), str(audio), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--durations", type=float, nargs="+", default=[5, 30, 120])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    image = Path(str(resources.files("talkstack") / "assets" / "samples" / "portrait.png"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.durations:
            audio = looped_speech(seconds, Path(tmp) / f"speech_{seconds:g}.wav")
            runs = [run_once(image, audio, Path(tmp) / "out.mp4") for _ in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            rows.append((seconds, med, runs))

    size = f"{int(rows[0][1]['width'])}×{int(rows[0][1]['height'])}"
    print(
        f"lite-avatar benchmark — {platform.machine()}, {_cpus()} CPUs, Python {platform.python_version()}, "
        f"median of {args.repeats} runs, {size} @ 25 fps"
    )
    header = f"{'speech':>8} {'frames':>7} {'render fps':>11} {'real-time x':>12} {'wall s':>8} "
    header += f"{'prepare s':>10} {'peak RSS MB':>12}"
    print(header)
    print("-" * len(header))
    for seconds, med, _ in rows:
        print(
            f"{seconds:>7g}s {int(med['frames']):>7} {med['frames'] / med['render_s']:>11.1f} "
            f"{med['duration_s'] / med['wall_s']:>12.2f} {med['wall_s']:>8.2f} {med['prepare_s']:>10.2f} "
            f"{med['rss_mb']:>12.0f}"
        )
    rss = [med["rss_mb"] for _, med, _ in rows]
    spread = max(rss) - min(rss)
    print(f"\npeak RSS spread across durations: {spread:.0f} MB ({min(rss):.0f}–{max(rss):.0f} MB)")


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


if __name__ == "__main__":
    main()
