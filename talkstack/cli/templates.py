"""`talkstack templates list|show|render`: the bundled templates (docs/templates.md), and an offline
render of one on this machine with the lite engines (no stack, no AWS).

`render` takes variables as `--var name=value` (a value starting with `{` or `[` is JSON) and/or a
`--var-file` (a JSON or YAML object; --var wins); media variables (image, video, audio, avatar) are
local file paths, `asset:<name>` for a bundled file, or left to their defaults. ID may also be the
path of your own template file (.yaml, .yml, .json).
"""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from talkstack.cli.common import err, friendly_errors, out, progress_bar
from talkstack.errors import ErrorCode, TalkstackError

if TYPE_CHECKING:
    from talkstack.contract.template import TemplateDocument

templates_app = typer.Typer(help="Templates: finished videos from a few variables.", no_args_is_help=True)

TemplateArgument = Annotated[
    str, typer.Argument(help="A template id (templates list shows them) or a template file (.yaml/.json).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document instead of text.")]
MEDIA_TYPES = ("image", "video", "audio", "avatar")


def _template(ref: str) -> TemplateDocument:
    from talkstack.templates import get_template, load_template

    path = Path(ref)
    if path.suffix in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise TalkstackError(ErrorCode.NOT_FOUND, f"{ref}: no such template file")
        return load_template(path)
    return get_template(ref)


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value)


@templates_app.command("list")
@friendly_errors
def list_cmd(as_json: JsonOption = False) -> None:
    """The bundled templates: id, aspect, what they make."""
    from talkstack.templates import bundled_templates

    templates = bundled_templates()
    if as_json:
        fields = ("id", "version", "name", "description", "category", "aspect", "resolution")
        typer.echo(
            json.dumps([t.model_dump(mode="json", include=set(fields)) for t in templates.values()], indent=2)
        )
        return
    table = Table(show_edge=False, box=None, pad_edge=False)
    for column in ("id", "version", "aspect", "category", "name"):
        table.add_column(column)
    for template in templates.values():
        table.add_row(template.id, str(template.version), template.aspect, template.category, template.name)
    out.print(table)


@templates_app.command("show")
@friendly_errors
def show_cmd(template_ref: TemplateArgument, as_json: JsonOption = False) -> None:
    """A template's variables (type, required, default, description), example and assets."""
    template = _template(template_ref)
    if as_json:
        typer.echo(json.dumps(template.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    out.print(
        f"[bold]{template.id}[/] v{template.version} — {template.name} "
        f"({template.aspect}, {template.resolution}, {len(template.composition.scenes)} scenes)",
        highlight=False,
    )
    out.print(template.description, highlight=False)
    table = Table(title="variables", show_edge=False, box=None, pad_edge=False, title_justify="left")
    for column in ("name", "type", "required", "default", "description"):
        table.add_column(column, overflow="fold")
    for name, variable in template.variables.items():
        detail = variable.description
        if variable.choices:
            detail += f" One of: {', '.join(variable.choices)}."
        if variable.max_length:
            detail += f" At most {variable.max_length} characters."
        table.add_row(
            name, variable.type, "yes" if variable.required else "no", _shown(variable.default), detail
        )
    out.print(table)
    out.print("[bold]example[/] (or render with --example)", highlight=False)
    for name, value in template.example.items():
        # One line each, never wrapped, so that the lines can be copied into a shell.
        line = f"  --var {shlex.quote(f'{name}={_shown(value)}')}"
        out.print(line, highlight=False, markup=False, soft_wrap=True)
    if template.assets:
        out.print("[bold]bundled assets[/]", highlight=False)
        for asset in template.assets:
            out.print(f"  asset:{asset.path} — {asset.licence}; {asset.source}", highlight=False)


def parse_vars(pairs: list[str], var_file: Path | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Variables from a --var-file and `name=value` pairs, and the problems with them."""
    from talkstack.templates import read_template_data

    variables: dict[str, Any] = {}
    problems: list[dict[str, Any]] = []
    if var_file is not None:
        if not var_file.is_file():
            raise TalkstackError(ErrorCode.INPUT_NOT_FOUND, f"--var-file {var_file}: no such file")
        try:
            data = read_template_data(var_file.read_bytes())
        except TalkstackError:
            data = None
        if not isinstance(data, dict):
            problems.append(
                {
                    "variable": None,
                    "code": "invalid",
                    "message": f"--var-file {var_file}: not a JSON or YAML object",
                }
            )
        else:
            variables.update({str(k): v for k, v in data.items()})
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            problems.append(
                {
                    "variable": name or None,
                    "code": "invalid",
                    "message": f"--var {pair!r}: expected name=value",
                }
            )
            continue
        if value.startswith(("{", "[")):
            try:
                variables[name] = json.loads(value)
                continue
            except json.JSONDecodeError:
                pass
        variables[name] = value
    return variables, problems


def stage_media(
    template: TemplateDocument, variables: dict[str, Any], staging: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Media variables given as local paths, copied under `staging/inputs` and named by the
    relative key the composition reads them as; missing files are problems."""
    staged = dict(variables)
    problems: list[dict[str, Any]] = []
    for name, value in variables.items():
        variable = template.variables.get(name)
        if variable is None or variable.type not in MEDIA_TYPES or not isinstance(value, str):
            continue
        if value.startswith(("asset:", "s3://")):
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            problems.append(
                {"variable": name, "code": "not_found", "message": f"{name}: no such file {value}"}
            )
            continue
        target = staging / "inputs" / f"{name}{path.suffix.lower()}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        staged[name] = f"inputs/{target.name}"
    return staged, problems


def build_request(
    template: TemplateDocument,
    variables: dict[str, Any],
    staging: Path,
    problems: list[dict[str, Any]],
    preview: bool,
) -> dict[str, Any]:
    """The composition request for an offline render: media staged under `staging`; every problem
    (--var syntax, missing files, the template's own checks) in one TEMPLATE_VARIABLES_INVALID."""
    from talkstack.templates import asset_path, instantiate
    from talkstack.templates.variables import variables_invalid

    staged, missing = stage_media(template, variables, staging)
    problems = [*problems, *missing]

    def resolve_asset(name: str) -> str:
        source = asset_path(name)
        target = staging / "assets" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return f"assets/{name}"

    # A file that is missing is reported once: the template's checks see a placeholder of its type.
    checked = {
        **staged,
        **{p["variable"]: f"missing{Path(str(variables[p['variable']])).suffix}" for p in missing},
    }
    try:
        request = instantiate(template, checked, resolve_asset=resolve_asset)
    except TalkstackError as exc:
        if exc.code != ErrorCode.TEMPLATE_VARIABLES_INVALID:
            raise
        problems.extend(exc.details.get("problems", []))
        raise variables_invalid(template.id, problems) from None
    if problems:
        raise variables_invalid(template.id, problems)
    request["preview"] = preview
    return request


def moderate(request: Any) -> None:
    """The operator's moderation policy (TALKSTACK_MODERATION_POLICY) on every text the composition
    shows or speaks (scripts, titles, overlays, bullets, transcripts, prompts), before rendering: what
    the pipeline's Moderate step judges, without its classifier (a local render has no GPU backend to
    ask)."""
    from talkstack.safety.policy import judge, load_policy, refusal, request_language, request_texts
    from talkstack.settings.moderation import get_moderation_settings

    policy = load_policy(get_moderation_settings().policy)
    verdict = judge(policy, request_texts(request), language=request_language(request))
    if verdict.decision == "refused":
        raise refusal(verdict)


def copy_outputs(produced: dict[str, Path], output: Path) -> dict[str, Path]:
    """The compose outputs beside OUT, named as the pipeline publishes them beside its video
    (docs/pipeline.md): OUT itself, OUT.srt, OUT.vtt, OUT.preview.webp, OUT.webm, OUT.mov,
    OUT.scene-<n>.jpg (n from 1), and the thumbnail as OUT.jpg (as `talkstack render` writes it)."""
    from talkstack.pipeline.outputs import composition_file_name

    output.parent.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for role, path in produced.items():
        if role == "video":
            target = output
        elif role == "thumbnail":
            target = output.with_suffix(".jpg")
        elif name := composition_file_name(output.stem, role):
            target = output.with_name(name)
        else:
            continue
        shutil.copyfile(path, target)
        written[role] = target
    return written


def render_template(
    template: TemplateDocument,
    variables: dict[str, Any],
    output: Path,
    *,
    preview: bool = False,
    problems: list[dict[str, Any]] | None = None,
    label: str | None = None,
) -> tuple[dict[str, Path], list[str]]:
    """Render `template` with `variables` offline into `output` (+ side files); returns what was
    written by role and the steps' warnings. Also used by `make demo`."""
    from talkstack.contract.composition import CompositionRequest
    from talkstack.workers.offline_composition import local_media, render_composition

    if output.suffix.lower() != ".mp4":
        raise TalkstackError(ErrorCode.INVALID_REQUEST, f"-o {output}: the video is an .mp4")
    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="talkstack-template-") as scratch:
        staging = Path(scratch) / "media"
        data = build_request(template, variables, staging, problems or [], preview)
        request = CompositionRequest.model_validate(data)
        moderate(request)
        with progress_bar(label or f"rendering {template.id}") as bar:
            produced = render_composition(
                request, Path(scratch) / "work", progress=bar, media=local_media(staging), warnings=warnings
            )
        written = copy_outputs(produced, output)
    return written, warnings


@templates_app.command("render")
@friendly_errors
def render_cmd(
    template_ref: TemplateArgument,
    output: Annotated[Path, typer.Option("--output", "-o", help="MP4 to write; side files go beside it.")],
    var: Annotated[
        list[str] | None,
        typer.Option("--var", help="name=value (repeat it); media as local file paths; JSON for objects."),
    ] = None,
    var_file: Annotated[
        Path | None, typer.Option("--var-file", help="A JSON or YAML object of variables (--var wins).")
    ] = None,
    preview: Annotated[
        bool, typer.Option("--preview", help="Fast and cheap: 360p, lite engines, a PREVIEW mark.")
    ] = False,
    example: Annotated[
        bool,
        typer.Option(
            "--example", help="Start from the template's example variables (--var-file, --var win)."
        ),
    ] = False,
) -> None:
    """Render a template on this machine (lite engines, no stack): OUT.mp4 with OUT.srt, OUT.vtt,
    OUT.jpg, OUT.preview.webp and one OUT.scene-<n>.jpg per scene (n from 1) beside it."""
    template = _template(template_ref)
    variables, problems = parse_vars(var or [], var_file)
    if example:
        variables = {**template.example, **variables}
    started = time.perf_counter()
    written, warnings = render_template(template, variables, output, preview=preview, problems=problems)
    out.print(f"wrote {output} in {time.perf_counter() - started:.1f} s", highlight=False)
    for role, path in written.items():
        if role != "video":
            out.print(f"  {role}: {path}", highlight=False)
    for warning in warnings:
        err.print(f"[yellow]warning[/]: {warning}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(templates_app, name="templates")


__all__ = ["register", "render_template"]
