"""`talkstack` command line: render locally, list models, keep schemas in sync; the local stack's
commands (up, submit, download, status, events, keys, demo) live in cli/stack.py.

Expected failures print one line (`error [CODE]: message`) and exit 2; no tracebacks unless
TALKSTACK_DEBUG=1.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from talkstack.cli import audit as cli_audit
from talkstack.cli import data as cli_data
from talkstack.cli import moderation as cli_moderation
from talkstack.cli import remote as cli_remote
from talkstack.cli import settings as cli_settings
from talkstack.cli import stack as cli_stack
from talkstack.cli import templates as cli_templates
from talkstack.cli import verify as cli_verify
from talkstack.cli.common import err, friendly_errors, out, progress_bar
from talkstack.engines.base import RenderResult
from talkstack.engines.registry import get_model, list_models
from talkstack.errors import ErrorCode, TalkstackError

app = typer.Typer(
    help="talkstack: talking-avatar, voice and video generation — local CPU engines and the AWS pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
render_app = typer.Typer(help="Render locally with the CPU lite engines.", no_args_is_help=True)
app.add_typer(render_app, name="render")


def _print_version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("talkstack")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from talkstack import __version__ as installed
    out.print(f"talkstack {installed}", highlight=False)
    raise typer.Exit()


@app.callback()
def main_options(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    # No docstring: the app's help above is what `talkstack --help` shows.
    pass


cli_stack.register(app)
cli_remote.register(app)
cli_audit.register(app)
cli_data.register(app)
cli_settings.register(app)
cli_moderation.register(app)
cli_verify.register(app)
cli_templates.register(app)


def _short_side(resolution: str | None) -> int | None:
    if resolution is None:
        return None
    match = re.fullmatch(r"(\d{2,4})p?", resolution.strip().lower())
    if not match:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST, f"resolution must look like 480p or 720, got {resolution!r}"
        )
    return int(match.group(1))


def _report(result: RenderResult, started: float) -> None:
    wall = time.perf_counter() - started
    size = f"{result.width}×{result.height}, " if result.width else ""
    speed = f" ({result.duration_s / wall:.1f}× real time)" if wall > 0 else ""
    out.print(
        f"wrote {result.output} ({size}{result.duration_s:.2f} s, {result.bytes / 1e3:.0f} kB) "
        f"in {wall:.1f} s{speed}",
        highlight=False,
    )
    if result.poster:
        out.print(f"poster {result.poster}", highlight=False)
    for warning in result.warnings:
        err.print(f"[yellow]warning[/]: {warning}", highlight=False)


def _check_model(model_id: str, task: str) -> None:
    model = get_model(model_id)
    if model.task != task:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST, f"{model_id} is a {model.task} model, not a {task} model"
        )
    if not model.available:
        raise TalkstackError(
            ErrorCode.MODEL_UNAVAILABLE, f"{model_id} is unavailable here: {model.unavailable_reason}"
        )


def _moderate(text: str, language: str) -> None:
    """The operator's moderation policy (TALKSTACK_MODERATION_POLICY) on a text before rendering:
    the same check and the same CONTENT_REFUSED as the Moderate state, without a classifier (a
    local render has no GPU backend to ask) and without key overrides (no key renders here)."""
    from talkstack.safety.policy import FieldText, judge, load_policy, refusal
    from talkstack.settings.moderation import get_moderation_settings

    policy = load_policy(get_moderation_settings().policy)
    verdict = judge(policy, [FieldText("--text", text)], language=language.split("-")[0])
    if verdict.decision == "refused":
        raise refusal(verdict)


@render_app.command("avatar")
@friendly_errors
def render_avatar_cmd(
    image: Annotated[Path, typer.Option("--image", "-i", help="Photo with one face (PNG, JPEG, WebP).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="MP4 to write.")],
    audio: Annotated[
        Path | None, typer.Option("--audio", "-a", help="Speech (WAV, MP3, M4A, FLAC, OGG).")
    ] = None,
    text: Annotated[
        str | None, typer.Option("--text", "-t", help="Speak this text with lite-voice instead.")
    ] = None,
    poster: Annotated[Path | None, typer.Option(help="Poster JPEG (default: next to the video).")] = None,
    model: Annotated[str, typer.Option(help="Avatar model id.")] = "lite-avatar",
    resolution: Annotated[str | None, typer.Option(help="Short side, e.g. 480p; never upscales.")] = None,
    max_side: Annotated[int, typer.Option(help="Longest side in pixels (≤1280).")] = 1280,
    fps: Annotated[int, typer.Option(min=10, max=60, help="Frames per second.")] = 25,
    seed: Annotated[int, typer.Option(help="Seed for blinks and head motion.")] = 0,
    head_motion: Annotated[float, typer.Option(min=0.0, max=3.0, help="0 keeps the head still.")] = 1.0,
    expressiveness: Annotated[float, typer.Option(min=0.2, max=2.0, help="Jaw travel multiplier.")] = 1.0,
    blinks: Annotated[bool, typer.Option(help="Animate eye blinks.")] = True,
    voice: Annotated[str, typer.Option(help="espeak-ng voice for --text.")] = "en-us",
) -> None:
    """Photo + speech (or text) → talking-head MP4."""
    from talkstack.engines.lite.avatar import LiteAvatarOptions, render_avatar
    from talkstack.engines.lite.voice import LiteVoiceOptions, synthesize

    if (audio is None) == (text is None):
        raise TalkstackError(ErrorCode.INVALID_REQUEST, "give exactly one of --audio or --text")
    _check_model(model, "avatar")
    if text is not None:
        _moderate(text, voice)
    started = time.perf_counter()
    options = LiteAvatarOptions(
        fps=fps,
        max_side=max_side,
        short_side=_short_side(resolution),
        seed=seed,
        head_motion=head_motion,
        expressiveness=expressiveness,
        blinks=blinks,
    )
    poster = poster or output.with_suffix(".jpg")
    with tempfile.TemporaryDirectory() as tmp:
        if text is not None:
            _check_model("lite-voice", "voice")
            audio = synthesize(text, Path(tmp) / "speech.wav", options=LiteVoiceOptions(voice=voice)).output
        assert audio is not None
        with progress_bar("rendering") as progress:
            result = render_avatar(image, audio, output, options=options, poster=poster, progress=progress)
    _report(result, started)


@render_app.command("voice")
@friendly_errors
def render_voice_cmd(
    text: Annotated[str, typer.Option("--text", "-t", help="Text to speak.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="WAV or MP3 to write.")],
    model: Annotated[str, typer.Option(help="Voice model id.")] = "lite-voice",
    voice: Annotated[str, typer.Option(help="espeak-ng voice/language, e.g. en-us, en-gb, de.")] = "en-us",
    speed: Annotated[float, typer.Option(help="0.5–2.0 × normal rate.")] = 1.0,
    pitch: Annotated[int, typer.Option(help="0–99.")] = 50,
    reference: Annotated[Path | None, typer.Option(help="Reference voice (ignored by lite-voice).")] = None,
) -> None:
    """Text → speech file."""
    from talkstack.engines.lite.voice import LiteVoiceOptions, synthesize

    _check_model(model, "voice")
    _moderate(text, voice)
    started = time.perf_counter()
    result = synthesize(
        text,
        output,
        options=LiteVoiceOptions(voice=voice, speed=speed, pitch=pitch),
        reference_voice=reference,
    )
    _report(result, started)


@app.command("models")
@friendly_errors
def models_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List model ids, where they run, whether they are available here, and their licences."""
    models = list_models()
    if as_json:
        out.print_json(json.dumps([m.model_dump() for m in models]))
        return
    table = Table("id", "task", "backend", "here", "licence")
    for m in models:
        table.add_row(m.id, m.task, m.backend, "[green]yes[/]" if m.available else "[dim]no[/]", m.licence)
    out.print(table)
    for m in models:
        note = "" if m.available else f" [dim](unavailable: {m.unavailable_reason})[/]"
        out.print(f"[bold]{m.id}[/]: {m.description}{note}", highlight=False)


@app.command("schemas")
@friendly_errors
def schemas_cmd(
    directory: Annotated[Path, typer.Argument(help="Where the JSON Schemas live.")] = Path("schemas"),
    write: Annotated[bool, typer.Option("--write", help="Regenerate the files.")] = False,
) -> None:
    """Check (default) or regenerate the JSON Schemas of the contract and the API's OpenAPI document."""
    from talkstack.api.openapi import published_documents
    from talkstack.contract.schemas import stale_schemas, write_schemas

    documents = published_documents()
    if write:
        for path in write_schemas(directory, documents):
            out.print(f"wrote {path}", highlight=False)
        return
    stale = stale_schemas(directory, documents)
    if stale:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST, f"schemas out of date: {', '.join(stale)}; run `make schemas`"
        )
    out.print("schemas are up to date")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
