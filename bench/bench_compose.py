"""Benchmark: how fast the compositor assembles a composition, by layout and resolution.

For each resolution (720p, 1080p, 16:9) and layout (full, background, pip circle, split), composes
one avatar scene (the bundled portrait and speech encoded as a 480p render, --seconds long) over a
colour with a lower third, and prints:

- draw: median milliseconds to draw one frame (background, placed source, overlay), encoder aside;
- compose: milliseconds per frame of the whole compose step (soundtrack, drawing, libx264 encode
  in its own process, thumbnails, animated preview), and its real-time factor at 25 fps
  (> 1: faster than real time).

Not a test: machines are shared and timings are noisy. Run it on an idle machine; `taskset -c 0`
pins the Python side to one core (ffmpeg's encoder is its own process).

    python bench/bench_compose.py [--seconds 4] [--resolutions 720p,1080p]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talkstack.compose.render import _Drawer, compose_video
from talkstack.compose.timeline import build_timeline
from talkstack.contract.composition import ComposeOptions, canvas_size
from talkstack.media.ffmpeg import ffmpeg_exe

SAMPLES = Path(__file__).resolve().parents[1] / "talkstack" / "assets" / "samples"
FPS = 25
LAYOUTS = {
    "full": {"type": "full"},
    "background": {"type": "background", "position": "right", "scale": 0.85, "cutout": False},
    "pip circle": {"type": "pip", "position": "bottom_right", "scale": 0.4, "shape": "circle"},
    "split": {"type": "split", "side": "left"},
}


def render_stand_in(path: Path, seconds: float) -> Path:
    """What an avatar engine hands the compositor: a 480×480 H.264 render with its speech."""
    subprocess.run(
        [
            ffmpeg_exe(), "-y", "-loglevel", "error", "-loop", "1", "-i", str(SAMPLES / "portrait.png"),
            "-i", str(SAMPLES / "speech.wav"), "-t", str(seconds), "-vf", "scale=480:480,format=yuv420p",
            "-r", str(FPS), "-c:v", "libx264", "-c:a", "aac", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


def composition(layout: dict, resolution: str) -> ComposeOptions:
    width, height = canvas_size("16:9", resolution)  # type: ignore[arg-type]
    scene = {
        "source": {"type": "avatar", "inputs": {"image": "photo.png", "audio": "speech.wav"}},
        "layout": layout,
        "background": {"colour": "#1d3557"},
        "overlays": [{"type": "lower_third", "text": "Eileen Collins", "secondary": "Commander, STS-93"}],
    }
    return ComposeOptions.model_validate(
        {
            "width": width,
            "height": height,
            "options": {"fps": FPS, "resolution": resolution, "captions": {"sidecar": False}},
            "scenes": [{"rendered": True, "scene": scene}],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--resolutions", default="720p,1080p")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        render = render_stand_in(work / "render.mp4", args.seconds)
        inputs = {"scene_0_video": render}
        # Warm-up: the first compose pays for imports (librosa, the fonts) that a worker pays once.
        compose_video(
            composition(LAYOUTS["full"], "720p"), inputs, work / "warm-up", lambda *_: None, watermark=False
        )
        for resolution in args.resolutions.split(","):
            for name, layout in LAYOUTS.items():
                options = composition(layout, resolution)
                timeline = build_timeline(options.scenes, inputs, FPS)
                drawer = _Drawer(options, inputs, timeline, alpha=False)
                draws = []
                for f in range(timeline.frames):
                    started = time.perf_counter()
                    drawer.frame(f / FPS)
                    draws.append((time.perf_counter() - started) * 1000)
                drawer.close()
                started = time.perf_counter()
                composed = compose_video(
                    options, inputs, work / f"{resolution}-{name}", lambda *_: None, watermark=False
                )
                per_frame = (time.perf_counter() - started) * 1000 / composed.frames
                rows.append((resolution, name, statistics.median(draws), per_frame, 1000 / FPS / per_frame))
    print(f"{'resolution':<11}{'layout':<13}{'draw ms/frame':>15}{'compose ms/frame':>18}{'× real time':>13}")
    for resolution, name, draw, compose, speed in rows:
        print(f"{resolution:<11}{name:<13}{draw:>15.1f}{compose:>18.1f}{speed:>13.1f}")


if __name__ == "__main__":
    main()
