"""`talkstack templates list|show|render`: what they print, and a bad --var refused with every problem."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from talkstack.cli import app
from talkstack.templates import bundled_templates

runner = CliRunner()


def test_list_json_and_text():
    result = runner.invoke(app, ["templates", "list", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [t["id"] for t in listed] == sorted(bundled_templates())
    assert {t["id"]: t["aspect"] for t in listed}["social-ad"] == "9:16"
    assert set(listed[0]) == {"id", "version", "name", "description", "category", "aspect", "resolution"}
    text = runner.invoke(app, ["templates", "list"])
    assert text.exit_code == 0
    for template_id in bundled_templates():
        assert template_id in text.stdout


def test_show_json_is_the_document():
    result = runner.invoke(app, ["templates", "show", "news", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document == bundled_templates()["news"].model_dump(mode="json")
    assert document["variables"]["headline"] == {
        "type": "text",
        "description": "The story's headline, in the lower third.",
        "required": True,
        "default": None,
        "max_length": 80,
        "choices": None,
    }


def test_show_text_lists_variables_with_types_and_defaults():
    result = runner.invoke(app, ["templates", "show", "social-ad"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    assert lines["headline"][1:3] == ["text", "yes"]
    assert lines["highlight_colour"][1:4] == ["colour", "no", "#FFD400"]
    assert lines["presenter"][1:4] == ["avatar", "no", "asset:samples/portrait.png"]
    assert "asset:music-loop.m4a — Apache-2.0" in result.stdout


def test_unknown_template():
    result = runner.invoke(app, ["templates", "show", "nope"])
    assert result.exit_code == 2
    assert "[NOT_FOUND]" in result.stderr and "social-ad" in result.stderr


def test_bad_vars_refused_with_every_problem(tmp_path):
    out = tmp_path / "ad.mp4"
    result = runner.invoke(
        app,
        [
            "templates", "render", "social-ad", "-o", str(out),
            "--var", "headlne=typo",
            "--var", "highlight_colour=yellow",
            "--var", "script",
            "--var", f"presenter={tmp_path / 'missing.png'}",
        ],
        env={"COLUMNS": "400"},
    )  # fmt: skip
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "[TEMPLATE_VARIABLES_INVALID]" in message
    assert "6 problems" in message
    for fragment in (
        "--var 'script': expected name=value",
        "headlne: social-ad has no such variable",
        "highlight_colour: expected a colour #rrggbb, got 'yellow'",
        "headline: required",
        "script: required",
        "presenter: no such file",
    ):
        assert fragment in message
    assert not out.exists()


def test_var_file_and_var_merge(tmp_path):
    from talkstack.cli.templates import parse_vars

    var_file = tmp_path / "vars.yaml"
    var_file.write_text("headline: From the file\nscript: Hello.\nvoice: {language: en-gb}\n")
    variables, problems = parse_vars(["headline=From the flag", 'voice={"language": "de"}'], var_file)
    assert problems == []
    assert variables == {"headline": "From the flag", "script": "Hello.", "voice": {"language": "de"}}


@pytest.mark.parametrize("var", ["script=Now kill yourself.", "headline=Now kill yourself"])
def test_render_runs_the_moderation_policy_before_any_engine(tmp_path, monkeypatch, var):
    # the script is spoken, the headline only shown: the policy judges both, as the pipeline does
    from talkstack.settings.moderation import get_moderation_settings
    from talkstack.workers import lite_steps

    def no_engine(*args, **kwargs):
        raise AssertionError("an engine ran for a refused script")

    for model in ("lite-voice", "lite-avatar", "lite-matte", "compose"):
        monkeypatch.setitem(lite_steps.LITE_STEPS, model, no_engine)
    monkeypatch.delenv("TALKSTACK_MODERATION_POLICY", raising=False)
    get_moderation_settings.cache_clear()
    out = tmp_path / "ad.mp4"
    result = runner.invoke(
        app,
        [
            "templates",
            "render",
            "social-ad",
            "--example",
            "--var",
            var,
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 2
    assert "[CONTENT_REFUSED]" in result.stderr
    assert not out.exists()


def test_show_prints_each_example_variable_on_one_line_a_shell_can_take(monkeypatch):
    """On a narrow terminal too: a wrapped --var line would paste as two broken commands."""
    import shlex

    from talkstack.cli import common

    monkeypatch.setattr(common.out, "_width", 60)  # a 60-column terminal (fixed when it was made)
    result = runner.invoke(app, ["templates", "show", "social-ad"])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("--var ")]
    example = bundled_templates()["social-ad"].example
    assert [shlex.split(line)[1] for line in lines] == [f"{k}={v}" for k, v in example.items()]


def test_render_names_its_side_files_as_the_pipeline_publishes_them(tmp_path):
    """OUT.preview.webp and OUT.scene-<n>.jpg from 1, like <stem>.preview.webp and
    <stem>.scene-<n>.jpg in a composition job's output folder (docs/pipeline.md)."""
    from talkstack.cli.templates import copy_outputs
    from talkstack.contract.composition import scene_thumbnail_role

    roles = ["video", "thumbnail", "captions_srt", "captions_vtt", "preview", "video_webm", "video_mov"]
    roles += [scene_thumbnail_role(0), scene_thumbnail_role(1)]
    produced = {}
    for role in roles:
        produced[role] = tmp_path / "work" / role
        produced[role].parent.mkdir(exist_ok=True)
        produced[role].write_text(role)
    written = copy_outputs(produced, tmp_path / "out" / "ad.mp4")
    names = {role: path.name for role, path in written.items()}
    assert names == {
        "video": "ad.mp4",
        "thumbnail": "ad.jpg",
        "captions_srt": "ad.srt",
        "captions_vtt": "ad.vtt",
        "preview": "ad.preview.webp",
        "video_webm": "ad.webm",
        "video_mov": "ad.mov",
        scene_thumbnail_role(0): "ad.scene-1.jpg",
        scene_thumbnail_role(1): "ad.scene-2.jpg",
    }
    assert all(path.read_text() == role for role, path in written.items())


def test_api_templates_show_example_is_one_shell_command(monkeypatch):
    """`talkstack api templates show` ends with an example command a shell runs as printed, whatever
    quotes, `$` or newlines the example's values hold."""
    import shlex
    from contextlib import contextmanager
    from types import SimpleNamespace

    from talkstack.cli import remote

    example = {
        "headline": 'Today\'s $20 "deal"',
        "script": "Line one.\nLine two.",
        "voice": {"language": "de"},
    }
    document = {
        "id": "mine",
        "version": 1,
        "name": "Mine",
        "aspect": "9:16",
        "variables": {},
        "example": example,
    }

    @contextmanager
    def fake_client(url, key):
        yield SimpleNamespace(
            get_template=lambda template_id: SimpleNamespace(template=document, source="own")
        )

    monkeypatch.setattr(remote, "_client", fake_client)
    result = runner.invoke(app, ["api", "templates", "show", "mine", "--key", "tsk_x_y"])
    assert result.exit_code == 0, result.output
    command = result.stdout[result.stdout.index("example: ") + len("example: ") :].strip()
    argv = shlex.split(command)
    assert argv[:4] == ["talkstack", "api", "templates", "generate"]
    given = {}
    for flag, pair in zip(argv[5::2], argv[6::2], strict=True):
        assert flag == "--var"
        name, _, value = pair.partition("=")
        given[name] = value
    assert given == {**example, "voice": '{"language": "de"}'}
