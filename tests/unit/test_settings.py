"""One settings system: the catalogue, `talkstack settings`, docs/settings.md, and no stray os.environ."""

from __future__ import annotations

import io
import json
import tokenize
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from talkstack.cli import app
from talkstack.cli.settings import DOCS_COMMAND, groups
from talkstack.settings import ModalDeploySettings, environ, get_settings
from talkstack.settings.catalogue import MASK, describe, env_name, markdown
from talkstack.settings.quality import get_quality_thresholds

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("talkstack", "aws", "modal_workers", "infra", "bench", "scripts")
SETTINGS_MODULES = ("talkstack/settings/", "infra/cdk/talkstack_cdk/settings.py")
"""The only code that may touch the process environment (reads, and the local stack's writes)."""
ENVIRONMENT_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def environment_uses(source: str) -> list[int]:
    """Lines that use os.environ / os.getenv / … in code (comments and strings do not count)."""
    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type in (tokenize.NAME, tokenize.OP)
    ]
    lines = []
    for i, token in enumerate(tokens):
        attribute = (
            token.string == "os"
            and i + 2 < len(tokens)
            and tokens[i + 1].string == "."
            and tokens[i + 2].string in ENVIRONMENT_NAMES
        )
        # `from os import environ` (or getenv, …) anywhere on an import line.
        imported = (
            token.string == "from"
            and i + 2 < len(tokens)
            and tokens[i + 1].string == "os"
            and tokens[i + 2].string == "import"
            and any(t.string in ENVIRONMENT_NAMES for t in tokens[i + 3 :] if t.start[0] == token.start[0])
        )
        if attribute or imported:
            lines.append(token.start[0])
    return lines


def test_nothing_outside_the_settings_modules_touches_the_environment():
    offenders = []
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if relative.startswith(SETTINGS_MODULES) or "/node_modules/" in relative or "cdk.out" in relative:
                continue
            offenders += [f"{relative}:{line}" for line in environment_uses(path.read_text())]
    assert not offenders, (
        "read settings through talkstack.settings (or PipelineConfig), and write the environment with "
        f"talkstack.settings.environ; found os.environ/os.getenv at: {', '.join(offenders)}"
    )


@pytest.mark.parametrize(
    "code",
    [
        'value = os.environ.get("X")',
        'value = os.environ["X"]',
        'value = os.getenv("X", "y")',
        "from os import environ",
        "from os import path, getenv",
        'os.environ.update({"X": "1"})',
    ],
)
def test_the_environment_check_catches_reads_and_writes(code):
    assert environment_uses(f"import os\n\n\ndef f():\n    {code}\n") == [5]


def test_the_environment_check_ignores_comments_and_strings():
    assert environment_uses('# os.environ["X"]\ndoc = "os.getenv"\nenvironment = 1\n') == []


def test_docs_settings_md_is_generated_from_the_classes():
    expected = markdown(groups(), DOCS_COMMAND)
    assert (REPO / "docs" / "settings.md").read_text() == expected, (
        f"docs/settings.md is stale: {DOCS_COMMAND}"
    )


def test_every_group_and_setting_is_documented():
    names = [g.name for g in groups()]
    assert names == [
        "pipeline",
        "limits",
        "engines",
        "local",
        "client",
        "modal",
        "provenance",
        "quality",
        "moderation",
        "scan",
        "cdk",
    ]
    text = (REPO / "docs" / "settings.md").read_text()
    for group in groups():
        for name, info in group.model.model_fields.items():
            assert f"`{env_name(group, name, info)}`" in text


def test_settings_command_shows_sources_and_masks_secrets(no_pipeline_environment):
    env = {"TALKSTACK_ESPEAK": "/opt/espeak-test", "TALKSTACK_WEBHOOK_SECRET": "whsec_do-not-print"}
    result = CliRunner().invoke(app, ["settings", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert "whsec_do-not-print" not in result.output
    document = {group["group"]: group for group in json.loads(result.output)}
    rows = {row["env"]: row for group in document.values() for row in group["settings"]}
    assert rows["TALKSTACK_ESPEAK"] | {"description": ""} == {
        "group": "engines",
        "name": "espeak",
        "env": "TALKSTACK_ESPEAK",
        "type": "str",
        "default": "espeak-ng",
        "value": "/opt/espeak-test",
        "source": "env",
        "description": "",
    }
    assert rows["TALKSTACK_WEBHOOK_SECRET"]["value"] == MASK
    assert rows["TALKSTACK_WEBHOOK_SECRET"]["source"] == "env"
    # The pipeline group needs bucket names it does not have here: listed all the same.
    assert rows["TALKSTACK_INPUT_BUCKET"]["source"] == "required, unset"
    assert "input_bucket" in document["pipeline"]["problem"]
    assert rows["TALKSTACK_MAX_TEXT_CHARS"]["source"] == "default"
    assert rows["TALKSTACK_CDK_STACK_NAME"]["value"] == "talkstack"

    text = CliRunner().invoke(app, ["settings", "--group", "engines", "--group", "pipeline"], env=env)
    assert text.exit_code == 0, text.output
    assert "whsec_do-not-print" not in text.output
    espeak = next(line for line in text.output.splitlines() if "TALKSTACK_ESPEAK" in line)
    assert "/opt/espeak-test" in espeak and "[env; default: espeak-ng]" in espeak
    secret = next(line for line in text.output.splitlines() if "TALKSTACK_WEBHOOK_SECRET " in line)
    assert MASK in secret
    assert "(required, unset)" in text.output
    assert "TALKSTACK_MAX_TEXT_CHARS" not in text.output  # the limits group was not asked for


def test_settings_command_refuses_an_unknown_group():
    result = CliRunner().invoke(app, ["settings", "--group", "nope"])
    assert result.exit_code == 2
    assert "unknown settings group nope" in result.output


def test_settings_command_writes_the_docs(tmp_path):
    target = tmp_path / "settings.md"
    result = CliRunner().invoke(app, ["settings", "--write", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_text() == (REPO / "docs" / "settings.md").read_text()


def test_cli_option_variables_are_in_the_catalogue():
    """Typer reads some variables as option defaults (--port, --url, …): they are settings too."""
    catalogued = {env_name(g, name, info) for g in groups() for name, info in g.model.model_fields.items()}

    def envvars(command: click.Command) -> set[str]:
        found = {
            v for p in command.params for v in ([p.envvar] if isinstance(p.envvar, str) else p.envvar or [])
        }
        for sub in getattr(command, "commands", {}).values():
            found |= envvars(sub)
        return found

    used = envvars(typer.main.get_command(app))
    assert used, "the CLI has options read from the environment"
    assert used <= catalogued, sorted(used - catalogued)


def test_modal_deploy_settings_follow_the_deploying_shell(monkeypatch):
    monkeypatch.setenv("TALKSTACK_VOICE_GPU", "L4")
    monkeypatch.setenv("TALKSTACK_AVATAR_MIN_CONTAINERS", "1")
    monkeypatch.setenv("TALKSTACK_HF_SECRET", "Yes")
    deploy = ModalDeploySettings()
    assert (deploy.voice_gpu, deploy.avatar_min_containers, deploy.hf_secret) == ("L4", 1, True)
    assert deploy.avatar_gpu == "H100"  # unset: the default
    monkeypatch.setenv("TALKSTACK_HF_SECRET", "on")  # only 1/true/yes opt in, as before
    assert ModalDeploySettings().hf_secret is False


def test_writing_the_environment_refreshes_cached_settings(monkeypatch):
    monkeypatch.setenv("TALKSTACK_ESPEAK", "espeak-before")
    environ.reset_settings()
    assert get_settings().espeak == "espeak-before"
    environ.export({"TALKSTACK_ESPEAK": "espeak-after"})
    assert get_settings().espeak == "espeak-after"
    environ.unset(["TALKSTACK_ESPEAK"])
    assert get_settings().espeak == "espeak-ng"
    environ.reset_settings()


def test_the_local_stack_can_turn_chunk_re_rendering_off(monkeypatch):
    # The quality group is cached like the others: a stack configured with it must see the change
    monkeypatch.delenv("TALKSTACK_QUALITY_RERENDER_CHUNKS", raising=False)
    environ.reset_settings()
    assert get_quality_thresholds().rerender_chunks is True
    environ.export({"TALKSTACK_QUALITY_RERENDER_CHUNKS": "false"})
    assert get_quality_thresholds().rerender_chunks is False
    environ.unset(["TALKSTACK_QUALITY_RERENDER_CHUNKS"])
    assert get_quality_thresholds().rerender_chunks is True


def test_debug_means_any_non_empty_value(monkeypatch):
    for value, expected in (("1", True), ("0", True), ("", False)):
        monkeypatch.setenv("TALKSTACK_DEBUG", value)
        environ.reset_settings()
        assert get_settings().debug is expected
    monkeypatch.delenv("TALKSTACK_DEBUG")
    environ.reset_settings()


def test_a_group_that_does_not_load_is_described_from_the_raw_values(no_pipeline_environment, monkeypatch):
    monkeypatch.setenv("TALKSTACK_HEARTBEAT_SECONDS", "not-a-number")
    pipeline = next(g for g in groups() if g.name == "pipeline")
    rows, problem = describe(pipeline)
    heartbeat = next(row for row in rows if row.name == "heartbeat_seconds")
    assert (heartbeat.value, heartbeat.source) == ("not-a-number", "env")
    assert problem is not None and "heartbeat_seconds" in problem


def test_reset_settings_forgets_every_cached_group():
    # A group left out keeps values parsed before the local stack exported its own (the C2PA signer
    # secret, the watermark switch): every cached getter of the package is cleared.
    import importlib
    import pkgutil

    import talkstack.settings as package

    getters = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"talkstack.settings.{info.name}")
        getters += [
            value
            for name, value in vars(module).items()
            if name.startswith("get_")
            and hasattr(value, "cache_clear")
            and value.__module__ == module.__name__
        ]
    assert len(getters) >= 8
    for getter in getters:
        getter()
    environ.reset_settings()
    cached = [g.__module__ + "." + g.__name__ for g in getters if g.cache_info().currsize]
    assert cached == []
