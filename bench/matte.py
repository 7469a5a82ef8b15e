"""Benchmark: what a person mask costs on a CPU (lite-matte) and what the alpha encoders cost.

Renders the bundled portrait speaking the bundled speech with the lite avatar (--seconds long, at
--side), then times, per frame:

- lite-matte's photo method (the lite avatar's own photo, moved with the head) and its per-frame
  method (segment, refine, face, smoothing), mask encoding included;
- the per-frame method alone on the render upscaled to 1280×720 and 1920×1080 canvases (uploads);
- encode_alpha_webm and encode_prores4444 of the cut-out render.

Not a test: machines are shared and timings are noisy.

    python bench/matte.py [--seconds 2] [--side 512]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talkstack.engines.lite.avatar import LiteAvatarOptions, render_avatar
from talkstack.engines.lite.matte import frame_matter, matte_video
from talkstack.media.alpha import encode_alpha_webm, encode_prores4444, read_mask_frames
from talkstack.media.audio import read_audio, write_wav
from talkstack.media.video import iter_frames

SAMPLES = Path(__file__).resolve().parents[1] / "talkstack" / "assets" / "samples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--side", type=int, default=512)
    args = parser.parse_args()
    rows: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        clip = read_audio(SAMPLES / "speech.wav")
        speech = write_wav(
            tmp / "s.wav", clip.samples[: int(args.seconds * clip.sample_rate)], clip.sample_rate
        )
        video = tmp / "avatar.mp4"
        render_avatar(SAMPLES / "portrait.png", speech, video, options=LiteAvatarOptions(max_side=args.side))
        frames = list(iter_frames(video))
        size = f"{frames[0].shape[1]}×{frames[0].shape[0]}"

        for label, photo in (
            ("lite-matte, photo method", SAMPLES / "portrait.png"),
            ("lite-matte, per frame", None),
        ):
            started = time.perf_counter()
            matte_video(video, tmp / "mask.mp4", photo=photo)
            rows.append((label, size, (time.perf_counter() - started) / len(frames)))

        for width, height in ((1280, 720), (1920, 1080)):
            canvas = np.full((height, width, 3), 180, np.uint8)
            side = height
            person = cv2.resize(frames[0], (side, side), interpolation=cv2.INTER_CUBIC)
            canvas[:, (width - side) // 2 : (width - side) // 2 + side] = person
            with frame_matter() as matte:
                matte(canvas)
                started = time.perf_counter()
                for _ in range(10):
                    matte(canvas)
            rows.append(
                (
                    "lite-matte, per frame (no encoding)",
                    f"{width}×{height}",
                    (time.perf_counter() - started) / 10,
                )
            )

        masks = list(read_mask_frames(tmp / "mask.mp4"))
        for label, encode, name in (
            ("encode_alpha_webm (VP9 alpha)", encode_alpha_webm, "cut.webm"),
            ("encode_prores4444 (ProRes 4444)", encode_prores4444, "cut.mov"),
        ):
            rgba = (
                np.dstack([f, (m * 255).round().astype(np.uint8)]) for f, m in zip(frames, masks, strict=True)
            )
            started = time.perf_counter()
            path = encode(rgba, 25, tmp / name)
            per_frame = (time.perf_counter() - started) / len(frames)
            rows.append(
                (f"{label}, {path.stat().st_size / len(frames) / 1024:.0f} KiB a frame", size, per_frame)
            )

    print(f"{'what':<58} {'size':>10} {'ms/frame':>9}")
    for label, size, seconds in rows:
        print(f"{label:<58} {size:>10} {seconds * 1000:>9.1f}")


if __name__ == "__main__":
    main()
