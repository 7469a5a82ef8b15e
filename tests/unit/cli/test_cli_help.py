"""What `--help` and `--version` say: flags without a value placeholder, every option explained, and
a flag given a value refused (the real command tree, in process)."""

from __future__ import annotations

from importlib.metadata import version

import pytest
import typer
from typer.testing import CliRunner

from talkstack.cli import app

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


@pytest.mark.parametrize(
    "command",
    [[], ["models"], ["submit"], ["api", "submit"], ["keys", "list"], ["demo"], ["render", "avatar"]],
)
def test_help_shows_flags_without_a_value_placeholder(command):
    result = runner.invoke(app, [*command, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    flags = [line for line in result.output.splitlines() if "--help" in line or "--json " in line]
    assert flags and all("<" not in line for line in flags), flags


def test_a_flag_given_a_value_is_refused():
    result = runner.invoke(app, ["models", "--json", "true"], env=WIDE)
    assert result.exit_code == 2
    assert "unexpected extra argument" in result.output and "(true)" in result.output


def _commands(group, path: tuple[str, ...] = ()):
    """(path, command) of every leaf command. Typer vendors its own click, so groups are told by
    their `commands`, not by click's classes."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def test_every_option_and_argument_has_help_text():
    root = typer.main.get_command(app)
    assert len(list(_commands(root))) > 20
    missing = [
        f"{path} {param.name}"
        for path, command in _commands(root)
        for param in command.params
        if not getattr(param, "help", None)
    ]
    assert missing == []


def test_version_prints_the_installed_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"talkstack {version('talkstack')}\n"
