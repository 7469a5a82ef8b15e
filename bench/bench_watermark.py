"""Benchmark: what the watermark costs and what it survives.

Renders the bundled portrait speaking the bundled speech (lite engine, at --side, --seconds long)
twice: with the watermark and without. Then:

- cost: embedding time per frame (at the render's size) and per second of audio; the mark's PSNR
  against the unmarked frames and the audio mark's SNR;
- robustness: the detection score after each transformation a platform applies (libx264 at half and
  a quarter of the render's bitrate, 0.5× and 0.25× resizes, a 10 % crop; AAC 64k and 32k, MP3 128k
  of the sound), for the marked render (should be ≥ the threshold) and the unmarked one (should
  be below, with each of --keys keys).

Not a test: machines are shared and timings are noisy.

    python bench/bench_watermark.py [--seconds 8] [--side 512] [--keys 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ffmpeg

from talkstack.engines.lite.avatar import LiteAvatarOptions, render_avatar
from talkstack.media.audio import read_audio, write_wav
from talkstack.media.ffmpeg import ffmpeg_exe
from talkstack.media.video import iter_frames
from talkstack.safety import watermark_audio, watermark_video
from talkstack.settings import environ, get_provenance_settings

SAMPLES = Path(__file__).resolve().parents[1] / "talkstack" / "assets" / "samples"


def transcode(src: Path, dst: Path, **args: object) -> Path:
    (
        ffmpeg.input(str(src))
        .output(str(dst), **args)
        .global_args("-hide_banner", "-loglevel", "error")
        .run(cmd=ffmpeg_exe(), overwrite_output=True, quiet=True)
    )
    return dst


def bitrate(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return int(container.streams.video[0].bit_rate)


def render(tmp: Path, name: str, seconds: float, side: int, mark: bool) -> Path:
    environ.export({"TALKSTACK_WATERMARK": "true" if mark else "false"})
    get_provenance_settings.cache_clear()
    clip = read_audio(SAMPLES / "speech.wav")
    loops = int(np.ceil(seconds * clip.sample_rate / len(clip.samples)))
    samples = np.tile(clip.samples, loops)[: int(seconds * clip.sample_rate)]
    speech = write_wav(tmp / f"{name}.wav", samples, clip.sample_rate)
    out = tmp / f"{name}.mp4"
    render_avatar(SAMPLES / "portrait.png", speech, out, options=LiteAvatarOptions(max_side=side))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--keys", type=int, default=3)
    args = parser.parse_args()
    keys = [get_provenance_settings().watermark_key.get_secret_value()] + [
        f"bench-key-{i}" for i in range(args.keys - 1)
    ]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        renders = {"marked": render(tmp, "marked", args.seconds, args.side, True)}
        renders["plain"] = render(tmp, "plain", args.seconds, args.side, False)

        # cost
        frames = list(iter_frames(renders["plain"]))
        marker = watermark_video.VideoWatermarker(keys[0])
        t0 = time.perf_counter()
        marked = [marker.apply(f) for f in frames]
        per_frame = (time.perf_counter() - t0) / len(frames)
        psnr = [
            10 * np.log10(255**2 / np.mean((m.astype(np.float64) - f.astype(np.float64)) ** 2))
            for m, f in zip(marked, frames, strict=True)
        ]
        clip = read_audio(SAMPLES / "speech.wav")
        t0 = time.perf_counter()
        heard = watermark_audio.embed_audio(clip.samples, clip.sample_rate, keys[0])
        per_audio_s = (time.perf_counter() - t0) / (len(clip.samples) / clip.sample_rate)
        snr = 10 * np.log10(np.sum(clip.samples**2) / np.sum((heard - clip.samples) ** 2))
        h, w = frames[0].shape[:2]
        print(f"video {w}×{h}, {len(frames)} frames: embed {per_frame * 1000:.2f} ms/frame, "
              f"PSNR median {statistics.median(psnr):.1f} dB (min {min(psnr):.1f})")  # fmt: skip
        print(f"audio: embed {per_audio_s * 1000:.1f} ms per second of audio, SNR {snr:.1f} dB")
        # what the mark costs in bytes: the same render at the same CRF, with and without it
        sizes = {name: path.stat().st_size for name, path in renders.items()}
        print(f"file size at the engine's CRF: marked {sizes['marked'] / 1024:.0f} KiB, unmarked "
              f"{sizes['plain'] / 1024:.0f} KiB ({sizes['marked'] / sizes['plain']:.2f}×)")  # fmt: skip

        # robustness
        variants: dict[str, tuple[str, dict[str, object]]] = {
            "as rendered": ("", {}),
            "x264 half bitrate": ("mp4", {"vcodec": "libx264", "video_bitrate": "HALF", "an": None}),
            "x264 quarter bitrate": ("mp4", {"vcodec": "libx264", "video_bitrate": "QUARTER", "an": None}),
            "resize 0.5×": ("mp4", {"vcodec": "libx264", "vf": "scale=iw/2:-2", "an": None}),
            "resize 0.25×": ("mp4", {"vcodec": "libx264", "vf": "scale=iw/4:-2", "an": None}),
            "crop 10 %": ("mp4", {"vcodec": "libx264", "vf": "crop=iw*0.9:ih*0.9", "an": None}),
            "AAC 64k (audio)": ("m4a", {"vn": None, "acodec": "aac", "audio_bitrate": "64k"}),
            "AAC 32k (audio)": ("m4a", {"vn": None, "acodec": "aac", "audio_bitrate": "32k"}),
            "MP3 128k (audio)": ("mp3", {"vn": None, "acodec": "libmp3lame", "audio_bitrate": "128k"}),
        }
        print(f"\n| transformation | marked | unmarked (max over {len(keys)} keys) | threshold |")
        print("|---|---|---|---|")
        for label, (ext, opts) in variants.items():
            row = {}
            for name, path in renders.items():
                if ext:
                    opts = dict(opts)
                    if opts.get("video_bitrate") in ("HALF", "QUARTER"):
                        opts["video_bitrate"] = bitrate(path) // (2 if opts["video_bitrate"] == "HALF" else 4)
                    path = transcode(path, tmp / f"{name}-{abs(hash(label))}.{ext}", **opts)
                # The marked render carries keys[0] only; the unmarked one is scored with every key.
                tried = keys[:1] if name == "marked" else keys
                if "audio" in label:
                    clip = read_audio(path)
                    row[name] = [
                        watermark_audio.detect_audio(clip.samples, clip.sample_rate, k).score for k in tried
                    ]
                    threshold = watermark_audio.THRESHOLD
                else:
                    frames_ = list(iter_frames(path))
                    row[name] = [watermark_video.detect_frames(frames_, k).score for k in tried]
                    threshold = watermark_video.THRESHOLD
            if label == "as rendered":
                clip = read_audio(renders["marked"])
                audio = watermark_audio.detect_audio(clip.samples, clip.sample_rate, keys[0]).score
                label = f"as rendered (audio {audio:.1f})"
            print(f"| {label} | {row['marked'][0]:.2f} | {max(row['plain']):.2f} | {threshold:.1f} |")


if __name__ == "__main__":
    main()
