"""Console helpers shared by the CLI modules: one-line errors, progress bars."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from talkstack.engines.base import ProgressFn
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.settings import get_settings

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TalkstackError as exc:
            err.print(f"[bold red]error[/] \\[{exc.code}]: {exc.message}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted; no output was written")
            raise typer.Exit(130) from None
        except Exception as exc:
            if get_settings().debug:
                raise
            err.print(
                f"[bold red]internal error[/]: {type(exc).__name__}: {exc} "
                "(set TALKSTACK_DEBUG=1 for details)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def progress_bar(label: str) -> Iterator[ProgressFn]:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=1.0, note="")

        def update(fraction: float, message: str) -> None:
            bar.update(task, completed=fraction, note=message)

        yield update


# The job options `talkstack submit` (S3 drop) and `talkstack api submit` (REST API) share.
ManifestArg = Annotated[
    Path | None, typer.Argument(help="A job.json; relative media refs are uploaded from beside it.")
]
ImageOption = Annotated[Path | None, typer.Option("--image", "-i", help="Photo (builds an avatar job).")]
AudioOption = Annotated[Path | None, typer.Option("--audio", "-a", help="Speech for the avatar.")]
TextOption = Annotated[str | None, typer.Option("--text", "-t", help="Text to speak instead of --audio.")]
WebhookOption = Annotated[str | None, typer.Option(help="Webhook URL for this job's events.")]
TimeoutOption = Annotated[float, typer.Option(help="Seconds to wait.")]
ConsentSubjectOption = Annotated[
    str | None,
    typer.Option(
        "--consent-subject",
        help="The person whose face (or cloned voice) the job uses, who agreed to it: adds a consent "
        "attestation (docs/safety.md). Bundled samples need none.",
    ),
]
ConsentByOption = Annotated[
    str | None, typer.Option("--consent-by", help="Who attests that consent (default: the subject).")
]
CLI_STATEMENT_ID = "talkstack-cli"
"""The `statement_id` of attestations made with --consent-subject: the statement is the option itself."""


def add_consent(document: dict[str, Any], subject: str | None, by: str | None) -> None:
    """Put a consent attestation built from --consent-subject/--consent-by into a job document:
    scope from what the job uses (a photo: likeness; a reference voice: voice), given now."""
    if subject is None:
        if by is not None:
            raise TalkstackError(ErrorCode.INVALID_REQUEST, "--consent-by needs --consent-subject")
        return
    if "consent" in document:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST, "--consent-subject: the job file already has a consent attestation"
        )
    inputs = document.get("inputs")
    inputs = inputs if isinstance(inputs, dict) else {}
    likeness = document.get("task", "avatar") == "avatar"
    voice = inputs.get("reference_voice") is not None
    document["consent"] = {
        "attested_by": by or subject,
        "attested_at": datetime.now(UTC).isoformat(),
        "subject": subject,
        "scope": "both" if likeness and voice else "voice" if voice else "likeness",
        "statement_id": CLI_STATEMENT_ID,
    }
