"""Console helpers shared by the CLI modules: one-line errors, progress bars."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from talkstack.engines.base import ProgressFn
from talkstack.errors import TalkstackError
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
