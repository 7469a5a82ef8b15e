"""`talkstack api …`: the CLI over the REST API (talkstack.client), for a deployed stack or a local one.

Unlike `talkstack submit`, which drops files into the input bucket with AWS credentials, these
commands need only the API's URL and a key (`--url`/`--key`, or TALKSTACK_API_URL/TALKSTACK_API_KEY;
the URL defaults to the API of a local `talkstack up`). `submit` uploads local media through
`POST /v1/uploads`, submits to the task's endpoint, follows the job and downloads its outputs.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Column, Table

from talkstack.cli.common import (
    AudioOption,
    ConsentByOption,
    ConsentSubjectOption,
    ImageOption,
    ManifestArg,
    TextOption,
    TimeoutOption,
    WebhookOption,
    add_consent,
    err,
    friendly_errors,
    out,
    progress_bar,
)
from talkstack.cli.quality import print_quality
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.settings.client import DEFAULT_API_URL

if TYPE_CHECKING:  # the client (and httpx) are imported when a command runs
    from talkstack.api.models import DataErasure, JobAccepted, JobDeletion, JobView
    from talkstack.client import TalkstackClient


TASK_METHODS = {
    "avatar": "generate_avatar",
    "voice": "clone_voice",
    "video": "generate_video",
    "composition": "generate_composition",
}

UrlOption = Annotated[
    str,
    typer.Option(
        "--url", envvar="TALKSTACK_API_URL", help="Base URL of the REST API (default: local stack)."
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key", envvar="TALKSTACK_API_KEY", help="API key (tsk_…; make one with `talkstack keys create`)."
    ),
]

api_app = typer.Typer(
    help="Use a talkstack REST API (--url/--key or TALKSTACK_API_URL/TALKSTACK_API_KEY).",
    no_args_is_help=True,
)


@contextmanager
def _client(url: str, key: str | None) -> Iterator[TalkstackClient]:
    from talkstack.client import TalkstackClient

    if not key:
        raise TalkstackError(
            ErrorCode.UNAUTHORIZED,
            "no API key: pass --key or set TALKSTACK_API_KEY (a local one: `talkstack keys create`)",
        )
    with TalkstackClient(url, key) as client:
        yield client


# --- submit ---------------------------------------------------------------------------------------


def _upload_media(
    client: TalkstackClient, task: str, document: dict[str, Any], media: dict[str, Path]
) -> None:
    """Upload each local media file once and put its upload id where the manifest named the file
    (the inputs, and the consent attestation's clip)."""
    from talkstack.cli.drop import media_fields, relative_media, set_media_ref
    from talkstack.contract.fields import MediaRef

    if task == "composition":  # media anywhere in the scenes, by dotted path
        uploaded_once: dict[str, str] = {}
        for field, key in relative_media(document).items():
            if key.startswith("upl_"):
                continue
            if key not in media:
                raise TalkstackError(
                    ErrorCode.INPUT_NOT_FOUND, f"{field}: no file {key!r} beside the manifest", field=field
                )
            if key not in uploaded_once:
                err.print(f"uploading {media[key]}", highlight=False)
                uploaded_once[key] = client.upload(media[key])
            set_media_ref(document, field, uploaded_once[key])
        return
    inputs = document.get("inputs")
    if not isinstance(inputs, dict):
        return  # the API says what is wrong with it
    places: list[tuple[dict[str, Any], str, str]] = [
        (inputs, name, f"inputs.{name}") for name in sorted(media_fields(task) & inputs.keys())
    ]
    consent = document.get("consent")
    if isinstance(consent, dict) and "clip" in consent:
        places.append((consent, "clip", "consent.clip"))
    uploaded: dict[str, str] = {}
    for section, name, field in places:
        try:
            ref = MediaRef.parse(section[name])
        except ValueError:
            continue  # not a ref: the API names the field and the problem
        if not ref.is_relative or ref.key.startswith("upl_"):
            continue  # s3://… or an earlier upload: sent as it is
        if ref.key not in media:
            raise TalkstackError(
                ErrorCode.INPUT_NOT_FOUND,
                f"{field}: no file {ref.key!r} beside the manifest (give a local file, "
                "an s3://bucket/key or an upload id)",
                field=field,
            )
        if ref.key not in uploaded:
            err.print(f"uploading {media[ref.key]}", highlight=False)
            uploaded[ref.key] = client.upload(media[ref.key])
        section[name] = uploaded[ref.key]


def _refuse_unavailable_models(client: TalkstackClient, task: str, document: dict[str, Any]) -> None:
    """Refuse before anything is uploaded when the API says (GET /v1/models) that it cannot run the
    job's model now, or has no such model: the model the request names, or else the task's default;
    for a text-driven avatar, its voice model too."""
    listed = {m.id: m for m in client.models().models}
    defaults = {m.task: m.id for m in listed.values() if m.default}
    options = document.get("options")
    options = options if isinstance(options, dict) else {}
    wanted = [("options.model", options.get("model") or defaults.get(task))]
    inputs = document.get("inputs")
    if task == "avatar" and isinstance(inputs, dict) and inputs.get("text") is not None:
        voice = options.get("voice")
        voice_model = voice.get("model") if isinstance(voice, dict) else None
        wanted.append(("options.voice.model", voice_model or defaults.get("voice")))
    for field, model_id in wanted:
        if not isinstance(model_id, str):
            continue  # no default listed, or not a string: the API names the problem
        model = listed.get(model_id)
        if model is None:
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST,
                f"{field}: this API has no model {model_id!r} (see talkstack api models); "
                "nothing was uploaded",
                field=field,
            )
        if not model.available:
            raise TalkstackError(
                ErrorCode.MODEL_UNAVAILABLE,
                f"{field}: {model_id} is unavailable on this API: {model.unavailable_reason}; "
                "nothing was uploaded",
                field=field,
                model=model_id,
            )


def _progress_note(job: JobView) -> str:
    running = [s.name for s in job.steps if s.status == "running"]
    return job.progress_message or (f"{running[-1]} running" if running else job.status)


def _raise_unless_completed(job: JobView) -> None:
    if job.status == "completed":
        return
    if job.error is not None:
        raise TalkstackError(job.error.code, f"job {job.job_id} {job.status}: {job.error.message}")
    raise TalkstackError(ErrorCode.CONFLICT, f"job {job.job_id} was {job.status}")


@api_app.command("submit")
@friendly_errors
def submit_cmd(
    manifest: ManifestArg = None,
    image: ImageOption = None,
    audio: AudioOption = None,
    text: TextOption = None,
    webhook: WebhookOption = None,
    consent_subject: ConsentSubjectOption = None,
    consent_by: ConsentByOption = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the outputs.")] = Path("out"),
    wait: Annotated[bool, typer.Option(help="Follow the job and download its outputs.")] = True,
    timeout: TimeoutOption = 900.0,
    url: UrlOption = DEFAULT_API_URL,
    key: KeyOption = None,
) -> None:
    """Upload media, submit the job to the API, follow it and download its outputs into --output."""
    from talkstack.api.models import UPLOAD_ID_PATTERN as UPLOAD_ID
    from talkstack.cli.drop import local_media
    from talkstack.cli.stack import _manifest_from_options, read_manifest
    from talkstack.contract.parse import is_multitalk_v0_manifest, parse_job_request

    if manifest is not None:
        document = read_manifest(manifest)
        # upload ids (from an earlier `POST /v1/uploads`) are sent as they are, not read as files
        media = local_media(document, manifest.parent, skip=lambda key: bool(re.fullmatch(UPLOAD_ID, key)))
        if is_multitalk_v0_manifest(document):  # to the native shape, so its media refs are under `inputs`
            native = parse_job_request(document)
            document = native.model_dump(mode="json", exclude_unset=True, exclude_none=True)
        if webhook:
            document.setdefault("notify", {})["webhook_url"] = webhook
    else:
        document, media = _manifest_from_options(image, audio, text, webhook)
    add_consent(document, consent_subject, consent_by)
    task = document.get("task", "avatar")
    if not isinstance(task, str) or task not in TASK_METHODS:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST, f"task: {task!r} is not one of {', '.join(TASK_METHODS)}"
        )
    with _client(url, key) as client:
        _refuse_unavailable_models(client, task, document)
        _upload_media(client, task, document, media)
        accepted = getattr(client, TASK_METHODS[task])(document)
        _follow(client, accepted, wait, timeout, output)


def _follow(client: TalkstackClient, accepted: JobAccepted, wait: bool, timeout: float, output: Path) -> None:
    """Say what was submitted; with `wait`, follow the job and download its outputs into `output`."""
    out.print(f"submitted [bold]{accepted.job_id}[/] ({accepted.task} job)", highlight=False)
    if not wait:
        out.print(f"follow it with: talkstack api status {accepted.job_id}", highlight=False)
        return
    with progress_bar(accepted.job_id) as progress:
        job = client.wait(
            accepted.job_id,
            on_progress=lambda j: progress(j.progress, _progress_note(j)),
            timeout=timeout,
        )
    _raise_unless_completed(job)
    files = client.download(job, output)
    assert job.result is not None
    duration = f", {job.result.duration_s:.2f} s" if job.result.duration_s is not None else ""
    out.print(f"[bold green]completed[/] {job.job_id}{duration}", highlight=False)
    for path in files:
        out.print(f"  {path}  ({path.stat().st_size / 1e3:.0f} kB)", highlight=False)


# --- jobs -----------------------------------------------------------------------------------------


def _print_job(job: JobView) -> None:
    out.print(
        f"[bold]{job.job_id}[/] {job.task or '-'} / {job.model or '-'}: [bold]{job.status}[/] "
        f"{job.progress:.0%}" + (f"  {job.progress_message}" if job.progress_message else ""),
        highlight=False,
    )
    for step in job.steps:
        duration = f"{step.duration_s:.2f} s" if step.duration_s is not None else "…"
        out.print(
            f"  {step.name:9} {step.status:10} {duration:>9}  attempts {step.attempts}", highlight=False
        )
    if job.error is not None:
        out.print(f"  [red]{job.error.code}[/]: {job.error.message}", highlight=False)
    if job.result is not None:
        for item in job.result.outputs:
            out.print(f"  {item.kind:9} {item.key}  ({item.bytes / 1e3:.0f} kB)", highlight=False)
        out.print(f"  download URLs: talkstack api status {job.job_id} --json", highlight=False)
        for warning in job.result.warnings:
            out.print(f"  [yellow]warning[/]: {warning}", highlight=False)
        print_quality(job.result.quality)


@api_app.command("status")
@friendly_errors
def status_cmd(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's job view.")] = False,
    url: UrlOption = DEFAULT_API_URL,
    key: KeyOption = None,
) -> None:
    """Where a job stands: status, progress, steps, result (with download URLs in --json) or error."""
    with _client(url, key) as client:
        job = client.get_job(job_id)
    if as_json:
        out.print_json(job.model_dump_json())
        return
    _print_job(job)


@api_app.command("cancel")
@friendly_errors
def cancel_cmd(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    url: UrlOption = DEFAULT_API_URL,
    key: KeyOption = None,
) -> None:
    """Cancel a queued or running job."""
    with _client(url, key) as client:
        job = client.cancel(job_id)
    out.print(f"{job.job_id}: [bold]{job.status}[/]", highlight=False)


def print_receipt(receipt: JobDeletion | DataErasure, as_json: bool) -> None:
    """A deletion receipt: JSON, or one line of counts and then every removed object's s3:// key."""
    if as_json:
        out.print_json(receipt.model_dump_json())
        return
    counts = ", ".join(f"{kind} {n}" for kind, n in sorted(receipt.counts.items())) or "nothing"
    out.print(f"removed: {counts}", highlight=False)
    for removed in receipt.objects:
        out.print(f"  {removed.kind:8} s3://{removed.bucket}/{removed.key}", highlight=False, soft_wrap=True)
    for note in receipt.kept:
        out.print(f"kept: {note}", highlight=False)


@api_app.command("delete")
@friendly_errors
def delete_cmd(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the receipt as JSON.")] = False,
    url: UrlOption = DEFAULT_API_URL,
    key: KeyOption = None,
) -> None:
    """Delete a job and everything it left (a running one is cancelled first); prints the receipt."""
    with _client(url, key) as client:
        receipt = client.delete_job(job_id)
    print_receipt(receipt, as_json)


@api_app.command("erase")
@friendly_errors
def erase_cmd(
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the receipt as JSON.")] = False,
    url: UrlOption = DEFAULT_API_URL,
    key: KeyOption = None,
) -> None:
    """Erase everything of this key: jobs, uploads, outputs, webhooks, then the key itself."""
    if not yes:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST, "erasing deletes every job and the key itself: add --yes to confirm"
        )
    with _client(url, key) as client:
        receipt = client.erase_data()
    print_receipt(receipt, as_json)


@api_app.command("jobs")
@friendly_errors
def jobs_cmd(
    status: Annotated[
        str | None, typer.Option(help="Only these statuses (comma-separated, e.g. running,queued).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many (newest first).")] = 20,
    cursor: Annotated[str | None, typer.Option(help="Continue after a previous page.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The API's page, as JSON.")] = False,
    url: UrlOption = DEFAULT_API_URL,
    key: KeyOption = None,
) -> None:
    """This key's jobs, newest first."""
    with _client(url, key) as client:
        page = client.list_jobs(status, limit, cursor)
    if as_json:
        out.print_json(page.model_dump_json())
        return
    table = Table(
        Column("job", no_wrap=True), "task", "model", "status", "progress", "created (UTC)", "error"
    )
    for job in page.jobs:
        table.add_row(
            job.job_id,
            job.task or "-",
            job.model or "-",
            job.status,
            f"{job.progress:.0%}",
            f"{job.created_at:%Y-%m-%d %H:%M:%S}",
            job.error_code or "",
        )
    out.print(table)
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}", highlight=False, soft_wrap=True)


# --- models, usage ----------------------------------------------------------------------------------


@api_app.command("models")
@friendly_errors
def models_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    url: UrlOption = DEFAULT_API_URL,
    key: KeyOption = None,
) -> None:
    """The API's models: where they run, whether it can run them now, their licences."""
    with _client(url, key) as client:
        models = client.models()
    if as_json:
        out.print_json(models.model_dump_json())
        return
    table = Table("id", "task", "default", "backend", "available", "licence")
    for m in models.models:
        available = "[green]yes[/]" if m.available else f"[dim]no: {m.unavailable_reason}[/]"
        table.add_row(m.id, m.task, "yes" if m.default else "", m.backend, available, m.licence)
    out.print(table)
    out.print("[dim]A request that names no model gets its task's default.[/]")


@api_app.command("usage")
@friendly_errors
def usage_cmd(
    period: Annotated[str, typer.Option(help="day or month buckets.")] = "day",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    url: UrlOption = DEFAULT_API_URL,
    key: KeyOption = None,
) -> None:
    """Jobs, rendered seconds, GPU seconds and estimated cost of this key per day or month."""
    if period not in ("day", "month"):
        raise TalkstackError(ErrorCode.INVALID_REQUEST, f"--period: day or month, not {period!r}")
    with _client(url, key) as client:
        usage = client.usage(period)
    if as_json:
        out.print_json(usage.model_dump_json())
        return
    limits = ", ".join(f"{k} {v}" for k, v in usage.limits.items())
    out.print(f"tier [bold]{usage.tier}[/] ({limits})", highlight=False)
    table = Table(
        period, "jobs", "completed", "failed", "cancelled", "active", "rendered s", "GPU s", "est. USD"
    )
    fmt = "%Y-%m-%d" if period == "day" else "%Y-%m"
    for b in [*usage.buckets, usage.totals]:
        table.add_row(
            "total" if b is usage.totals else f"{b.start:{fmt}}",
            str(b.jobs),
            str(b.completed),
            str(b.failed),
            str(b.cancelled),
            str(b.active),
            f"{b.seconds_rendered:.1f}",
            f"{b.gpu_seconds:.1f}",
            f"{b.estimated_cost_usd:.4f}",
        )
    out.print(table)


# --- templates and previews -----------------------------------------------------------------------

templates_app = typer.Typer(
    help="Templates of the API: the bundled ones and this key's own; generate videos from them.",
    no_args_is_help=True,
)
TemplateIdArg = Annotated[str, typer.Argument(help="Template id (see `talkstack api templates list`).")]
OutputOption = Annotated[Path, typer.Option("--output", "-o", help="Folder for the outputs.")]


@templates_app.command("list")
@friendly_errors
def templates_list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    url: UrlOption = DEFAULT_API_URL,
    key: KeyOption = None,
) -> None:
    """The bundled templates and this key's own."""
    with _client(url, key) as client:
        listed = client.list_templates()
    if as_json:
        out.print_json(listed.model_dump_json())
        return
    table = Table("id", "version", "source", "aspect", "category", Column("name"), Column("variables"))
    for t in listed.templates:
        table.add_row(t.id, str(t.version), t.source, t.aspect, t.category, t.name, ", ".join(t.variables))
    out.print(table)


@templates_app.command("show")
@friendly_errors
def templates_show_cmd(
    template_id: TemplateIdArg,
    as_json: Annotated[bool, typer.Option("--json", help="The whole template document.")] = False,
    url: UrlOption = DEFAULT_API_URL,
    key: KeyOption = None,
) -> None:
    """One template: its variables (type, required, default, description) and an example."""
    import json

    with _client(url, key) as client:
        view = client.get_template(template_id)
    document = view.template
    if as_json:
        out.print_json(json.dumps(document))
        return
    out.print(
        f"[bold]{document.get('id')}[/] v{document.get('version')} ({view.source}): {document.get('name')}, "
        f"{document.get('aspect')} {document.get('resolution', '')}",
        highlight=False,
    )
    out.print(str(document.get("description", "")), highlight=False)
    table = Table("variable", "type", "required", "default", Column("description"))
    for name, variable in (document.get("variables") or {}).items():
        default = variable.get("default")
        table.add_row(
            name,
            str(variable.get("type")),
            "yes" if variable.get("required") else "",
            "" if default is None else json.dumps(default),
            str(variable.get("description", "")),
        )
    out.print(table)
    example = " ".join(  # quoted for a shell: a value may hold quotes, `$` or newlines
        f"--var {shlex.quote(f'{k}={v if isinstance(v, str) else json.dumps(v)}')}"
        for k, v in (document.get("example") or {}).items()
    )
    if example:
        out.print(
            f"example: talkstack api templates generate {template_id} {example}",
            highlight=False,
            soft_wrap=True,
        )


@templates_app.command("put")
@friendly_errors
def templates_put_cmd(
    document: Annotated[Path, typer.Argument(help="Template document (.json, .yaml or .yml).", exists=True)],
    template_id: Annotated[
        str | None, typer.Option("--id", help="Store it under this id (default: the document's).")
    ] = None,
    url: UrlOption = DEFAULT_API_URL,
    key: KeyOption = None,
) -> None:
    """Create or replace one of this key's templates from a JSON or YAML file."""
    data = _read_document(document)
    with _client(url, key) as client:
        view = client.put_template(data, template_id)
    out.print(
        f"stored template [bold]{view.template.get('id')}[/] v{view.template.get('version')}", highlight=False
    )


@templates_app.command("delete")
@friendly_errors
def templates_delete_cmd(
    template_id: TemplateIdArg,
    url: UrlOption = DEFAULT_API_URL,
    key: KeyOption = None,
) -> None:
    """Delete one of this key's templates."""
    with _client(url, key) as client:
        client.delete_template(template_id)
    out.print(f"deleted template {template_id}", highlight=False)


@templates_app.command("generate")
@friendly_errors
def templates_generate_cmd(
    template_id: TemplateIdArg,
    var: Annotated[
        list[str] | None,
        typer.Option(
            "--var",
            help="name=value (repeatable). A media variable may name a local file: it is uploaded. "
            "JSON values (numbers, objects) are read as JSON.",
        ),
    ] = None,
    var_file: Annotated[
        Path | None, typer.Option("--var-file", help="A JSON object of variables.", exists=True)
    ] = None,
    preview: Annotated[
        bool, typer.Option("--preview", help="Fast and cheap: lite engines, 360p, a PREVIEW mark.")
    ] = False,
    output: OutputOption = Path("out"),
    wait: Annotated[bool, typer.Option(help="Follow the job and download its outputs.")] = True,
    timeout: TimeoutOption = 900.0,
    url: UrlOption = DEFAULT_API_URL,
    key: KeyOption = None,
) -> None:
    """Make a video from a template and its variables (every problem with them is listed at once)."""
    variables = _variables(var or [], var_file)
    with _client(url, key) as client:
        _upload_variable_files(client, client.get_template(template_id).template, variables)
        try:
            accepted = client.generate_from_template(template_id, variables, preview=preview or None)
        except TalkstackError as exc:
            _print_problems(exc)
            raise
        _follow(client, accepted, wait, timeout, output)
        if preview:
            out.print(f"render it in full: talkstack api render {accepted.job_id}", highlight=False)


@api_app.command("render")
@friendly_errors
def render_cmd(
    job_id: Annotated[str, typer.Argument(help="A preview job's id (submitted with preview: true).")],
    output: OutputOption = Path("out"),
    wait: Annotated[bool, typer.Option(help="Follow the job and download its outputs.")] = True,
    timeout: TimeoutOption = 900.0,
    url: UrlOption = DEFAULT_API_URL,
    key: KeyOption = None,
) -> None:
    """Render a preview in full: a new job with the preview's request, full resolution."""
    with _client(url, key) as client:
        accepted = client.render_job(job_id)
        _follow(client, accepted, wait, timeout, output)


def _read_document(path: Path) -> dict[str, Any]:
    import json

    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # json's ValueError, yaml's YAMLError: the file does not parse
        raise TalkstackError(ErrorCode.INVALID_REQUEST, f"{path}: not a template document: {exc}") from exc
    if not isinstance(data, dict):
        raise TalkstackError(ErrorCode.INVALID_REQUEST, f"{path}: a template document is an object")
    return data


def _variables(pairs: list[str], var_file: Path | None) -> dict[str, Any]:
    """--var-file first, then each --var name=value (a JSON value where it parses as one)."""
    import json

    variables: dict[str, Any] = {}
    if var_file is not None:
        loaded = json.loads(var_file.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise TalkstackError(ErrorCode.INVALID_REQUEST, f"--var-file {var_file}: expected a JSON object")
        variables.update(loaded)
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise TalkstackError(ErrorCode.INVALID_REQUEST, f"--var {pair!r}: expected name=value")
        parsed: Any = value
        if (
            value[:1] in ("{", "[")
            or value in ("true", "false", "null")
            or re.fullmatch(r"-?\d+(\.\d+)?", value)
        ):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = value
        variables[name.strip()] = parsed
    return variables


MEDIA_VARIABLE_TYPES = ("image", "video", "audio", "avatar")


def _upload_variable_files(
    client: TalkstackClient, document: dict[str, Any], variables: dict[str, Any]
) -> None:
    """Media variables that name a local file are uploaded; their value becomes the upload id."""
    declared = document.get("variables") or {}
    for name, value in list(variables.items()):
        kind = (declared.get(name) or {}).get("type")
        if kind not in MEDIA_VARIABLE_TYPES or not isinstance(value, str):
            continue
        path = Path(value).expanduser()
        if value.startswith(("s3://", "asset:", "upl_")) or not path.is_file():
            continue
        err.print(f"uploading {path}", highlight=False)
        variables[name] = client.upload(path)


def _print_problems(exc: TalkstackError) -> None:
    problems = exc.details.get("problems")
    if exc.code != ErrorCode.TEMPLATE_VARIABLES_INVALID or not isinstance(problems, list):
        return
    for problem in problems:
        if isinstance(problem, dict):
            err.print(
                f"  {problem.get('variable') or '-'}: [{problem.get('code')}] {problem.get('message')}",
                highlight=False,
                soft_wrap=True,
                markup=False,
            )


api_app.add_typer(templates_app, name="templates")


def register(app: typer.Typer) -> None:
    app.add_typer(api_app, name="api")


__all__ = ["api_app", "register"]
