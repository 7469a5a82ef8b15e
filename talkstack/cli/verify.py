"""`talkstack verify FILE`: the C2PA content credentials and the invisible watermark of a file.

Reads the manifest with c2pa (validation state, signer, generator, models, job id, the
AI-generated assertion) and looks for the watermark in the video frames and the audio, with
TALKSTACK_WATERMARK_KEY (the public test key by default). Exit status: 0 when credentials or a
watermark were found (and the credentials, if any, validate), 3 when neither was found, 4 when
credentials are present but fail validation (the file was changed after signing).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from talkstack.cli.common import friendly_errors, out
from talkstack.errors import ErrorCode, TalkstackError

EXIT_NOTHING_FOUND = 3
EXIT_CREDENTIALS_INVALID = 4
UNTRUSTED = " (the signer is on no trust list this reader knows: e.g. a test certificate)"
MAX_FRAMES = 1500
"""Frames read for the watermark (a minute at 25 fps): enough for a confident score."""


def inspect_file(path: Path, key: str) -> dict[str, Any]:
    """The report `verify` prints: credentials, and the watermark in the frames and the audio."""
    from talkstack.media.audio import read_audio
    from talkstack.media.video import iter_frames
    from talkstack.safety.credentials import read_credentials
    from talkstack.safety.watermark_audio import detect_audio
    from talkstack.safety.watermark_video import detect_frames

    report: dict[str, Any] = {"file": str(path), "credentials": asdict(read_credentials(path))}
    video: dict[str, Any] | None = None
    if path.suffix.lower() in {".mp4", ".mov", ".m4v", ".webm", ".mkv"}:
        frames = iter_frames(path)
        try:
            found = detect_frames(itertools.islice(frames, MAX_FRAMES), key)
        finally:
            frames.close()
        video = {"detected": found.detected, "score": round(found.score, 2), "threshold": found.threshold}
    audio: dict[str, Any] | None = None
    try:
        clip = read_audio(path)
    except TalkstackError:
        clip = None  # no audio stream (a video-only clip), or none we can read
    if clip is not None:
        heard = detect_audio(clip.samples, clip.sample_rate, key)
        audio = {"detected": heard.detected, "score": round(heard.score, 2), "threshold": heard.threshold}
    report["watermark"] = {"video": video, "audio": audio}
    return report


def exit_status(report: dict[str, Any]) -> int:
    credentials = report["credentials"]
    marks = [m for m in report["watermark"].values() if m is not None]
    if credentials["found"] and credentials["validation_state"] == "Invalid":
        return EXIT_CREDENTIALS_INVALID
    if credentials["found"] or any(m["detected"] for m in marks):
        return 0
    return EXIT_NOTHING_FOUND


def _print(report: dict[str, Any]) -> None:
    c = report["credentials"]
    if c["found"]:
        out.print(f"content credentials: [bold]{c['validation_state']}[/]", highlight=False)
        for label, value in (
            ("signed by", f"{c['signer']} ({c['issuer']})"),
            ("generator", c["generator"]),
            ("AI-generated", "yes (trainedAlgorithmicMedia)" if c["ai_generated"] else "not stated"),
            ("models", ", ".join(c["models"]) or "not stated"),
            ("job", c["job_id"] or "not stated"),
        ):
            out.print(f"  {label}: {value}", highlight=False)
        for failure in c["failures"]:
            note = UNTRUSTED if failure == "signingCredential.untrusted" else ""
            out.print(f"  [red]failure[/]: {failure}{note}", highlight=False)
    else:
        out.print("content credentials: none" + (f" ({c['error']})" if c["error"] else ""), highlight=False)
    for medium, mark in report["watermark"].items():
        if mark is None:
            continue
        verdict = "[bold]found[/]" if mark["detected"] else "not found"
        out.print(
            f"watermark ({medium}): {verdict} (score {mark['score']}, threshold {mark['threshold']})",
            highlight=False,
        )
    status = exit_status(report)
    if status == EXIT_NOTHING_FOUND:
        out.print("nothing found: no content credentials and no talkstack watermark for this key")
    elif status == EXIT_CREDENTIALS_INVALID:
        out.print("the content credentials do not validate: the file was changed after signing")


@friendly_errors
def _verify(file: Path, as_json: bool) -> int:
    from talkstack.settings import get_provenance_settings

    if not file.is_file():
        raise TalkstackError(ErrorCode.INPUT_NOT_FOUND, f"{file} does not exist")
    # Detection uses the key even where embedding is turned off.
    key = get_provenance_settings().watermark_key.get_secret_value()
    report = inspect_file(file, key)
    if as_json:
        out.print_json(json.dumps(report))
    else:
        _print(report)
    return exit_status(report)


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def verify(
        file: Annotated[Path, typer.Argument(help="A video (MP4) or audio file (WAV, MP3, M4A).")],
        as_json: Annotated[bool, typer.Option("--json", help="The report as JSON.")] = False,
    ) -> None:
        """Report a file's C2PA content credentials and talkstack watermark (exit 0: found; 3: neither
        found; 4: credentials that fail validation)."""
        # Outside friendly_errors, which turns any exception (typer.Exit too) into an internal error.
        raise typer.Exit(_verify(file, as_json))
