"""CLI commands of the local stack: `up`, `submit`, `download`, `status`, `events`, `keys`, and `demo`
(the whole pipeline on the bundled sample). `submit`, `download`, `status`, `events` and `keys` talk
to a running stack over its endpoint, like any AWS client would.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

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
from talkstack.contract.events import JobEvent
from talkstack.contract.record import JobRecord
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.local.resources import DEFAULT_PORT, DEFAULT_STACK, LOCAL_WEBHOOK_SECRET, LocalResources
from talkstack.settings import environ
from talkstack.settings.local import DEMO_PORT

SAMPLES = resources.files("talkstack") / "assets" / "samples"

PortOption = Annotated[
    int, typer.Option(envvar="TALKSTACK_LOCAL_PORT", help="Port of the local stack's endpoint.")
]
StackOption = Annotated[str, typer.Option(envvar="TALKSTACK_LOCAL_STACK", help="Local stack name.")]


def _resources(stack: str, port: int) -> LocalResources:
    return LocalResources(stack=stack, port=port)


def _connect(resources: LocalResources) -> Any:
    """Point this process's AWS clients at a running local stack; fail clearly if none is there."""
    import httpx

    from talkstack.pipeline import aws
    from talkstack.pipeline.store import JobStore

    try:
        httpx.get(f"{resources.endpoint}/moto-api/", timeout=2)
    except httpx.TransportError:
        raise TalkstackError(
            ErrorCode.STACK_NOT_RUNNING,
            f"no local stack at {resources.endpoint}; start one with `talkstack up` (or point at yours "
            "with --port / TALKSTACK_LOCAL_PORT)",
        ) from None
    environ.export(resources.client_env())
    aws.reset_clients()
    return JobStore(resources.jobs_table)


# --- up ------------------------------------------------------------------------------------------


def up_cmd(
    port: PortOption = DEFAULT_PORT,
    stack: StackOption = DEFAULT_STACK,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Local worker processes.")] = 2,
    verbose: Annotated[
        bool,
        typer.Option(
            help="Log every handler invocation and the emulator (default: one line per job that ends)."
        ),
    ] = False,
) -> None:
    """Run the local stack (emulated S3, Lambda, Step Functions, DynamoDB, SNS, SQS) until Ctrl-C."""
    import logging

    from talkstack.local.console import banner, job_line
    from talkstack.local.stack import LocalStack

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    logging.getLogger("werkzeug").setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:
        # moto logs every failed state at ERROR with the whole state machine's repr: an ordinary job
        # failure (no face, a missing input) is told by its one job line instead.
        logging.getLogger("moto").setLevel(logging.CRITICAL)

    def job_ended(event: JobEvent) -> None:
        style = {"job.completed": "green", "job.failed": "red"}.get(event.type)
        out.print(job_line(event), style=style, markup=False, highlight=False, soft_wrap=True)

    r = _resources(stack, port)
    with LocalStack(r, workers=workers, log_level="INFO" if verbose else "ERROR", on_job_end=job_ended):
        for number, line in enumerate(banner(r)):
            out.print(
                line, style="bold" if number == 0 else None, markup=False, highlight=False, soft_wrap=True
            )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
    err.print("stopped")


# --- submit / status / events --------------------------------------------------------------------


def _manifest_from_options(
    image: Path | None, audio: Path | None, text: str | None, webhook: str | None
) -> tuple[dict[str, Any], dict[str, Path]]:
    if image is None:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST, "give a manifest file, or --image with --audio or --text"
        )
    if (audio is None) == (text is None):
        raise TalkstackError(ErrorCode.INVALID_REQUEST, "give exactly one of --audio or --text")
    for option, path in (("--image", image), ("--audio", audio)):
        if path is not None and not path.is_file():
            raise TalkstackError(
                ErrorCode.INPUT_NOT_FOUND, f"{option}: no file {str(path)!r} (in {Path.cwd()})", field=option
            )
    media = {f"image{image.suffix.lower()}": image}
    inputs: dict[str, Any] = {"image": next(iter(media))}
    if audio is not None:
        media[f"audio{audio.suffix.lower()}"] = audio
        inputs["audio"] = f"audio{audio.suffix.lower()}"
    else:
        inputs["text"] = text
    manifest: dict[str, Any] = {"task": "avatar", "inputs": inputs}
    if webhook:
        manifest["notify"] = {"webhook_url": webhook}
    return manifest, media


def _progress_note(record: JobRecord) -> str:
    running = [s.name for s in record.steps if s.status == "running"]
    return record.progress_message or (f"{running[-1]} running" if running else record.status)


def _print_outputs(record: JobRecord) -> None:
    if record.status == "completed" and record.result is not None:
        out.print(f"[bold green]completed[/] {record.job_id}", highlight=False)
        for output in record.result.outputs:
            out.print(f"  {output.kind:9} s3://{output.bucket}/{output.key}  ({output.bytes / 1e3:.0f} kB)")
        assert record.request is not None
        bucket = record.result.outputs[0].bucket
        out.print(f"  {'result':9} s3://{bucket}/{record.request.sibling_key(record.job_id, 'result')}")
    elif record.error is not None:
        raise TalkstackError(record.error.code, f"job {record.job_id} failed: {record.error.message}")


def _wait(store: Any, job_id: str, timeout: float) -> JobRecord:
    from talkstack.cli.drop import follow

    with progress_bar(job_id) as progress:
        return follow(
            store.get, job_id, on_update=lambda r: progress(r.progress, _progress_note(r)), timeout_s=timeout
        )


def read_manifest(manifest: Path) -> dict[str, Any]:
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TalkstackError(ErrorCode.INVALID_REQUEST, f"{manifest}: {exc}") from None
    if not isinstance(document, dict):
        raise TalkstackError(ErrorCode.INVALID_REQUEST, f"{manifest}: expected a JSON object")
    return document


def submit_cmd(
    manifest: ManifestArg = None,
    image: ImageOption = None,
    audio: AudioOption = None,
    text: TextOption = None,
    webhook: WebhookOption = None,
    consent_subject: ConsentSubjectOption = None,
    consent_by: ConsentByOption = None,
    name: Annotated[
        str | None, typer.Option(help="Folder name under inputs/ (default: a timestamp).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Download the outputs into this folder once completed."),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = True,
    timeout: TimeoutOption = 900.0,
    port: PortOption = DEFAULT_PORT,
    stack: StackOption = DEFAULT_STACK,
) -> None:
    """Upload media + manifest to the input prefix, follow the job and print its outputs.

    With -o DIR, download the outputs into DIR once the job has completed."""
    from talkstack.cli.drop import download_outputs, drop_job, local_media

    if output is not None and not wait:
        raise TalkstackError(ErrorCode.INVALID_REQUEST, "--output needs --wait (the default)")
    # Everything local is checked before the stack is touched: nothing is uploaded for a job
    # that cannot start.
    if manifest is not None:
        document = read_manifest(manifest)
        media = local_media(document, manifest.parent)
        if webhook:
            document.setdefault("notify", {})["webhook_url"] = webhook
    else:
        document, media = _manifest_from_options(image, audio, text, webhook)
    add_consent(document, consent_subject, consent_by)
    r = _resources(stack, port)
    store = _connect(r)
    from talkstack.pipeline import aws

    folder = name or time.strftime("job-%Y%m%d-%H%M%S")
    dropped = drop_job(aws.client("s3"), r.input_bucket, document, media, name=folder)
    out.print(
        f"submitted [bold]{dropped.job_id}[/] (s3://{dropped.bucket}/{dropped.manifest_key})", highlight=False
    )
    if wait:
        record = _wait(store, dropped.job_id, timeout)
        _print_outputs(record)
        if output is not None:
            _print_downloaded(download_outputs(aws.client("s3"), record, output))


def _print_downloaded(files: list[Path]) -> None:
    for path in files:
        out.print(f"wrote {path}  ({path.stat().st_size / 1e3:.0f} kB)", highlight=False)


def _record_or_not_found(store: Any, resources: LocalResources, job_id: str) -> JobRecord:
    record = store.get(job_id)
    if record is None:
        raise TalkstackError(ErrorCode.NOT_FOUND, f"no job {job_id!r} in {resources.jobs_table}")
    return record


def download_cmd(
    job_id: Annotated[str, typer.Argument(help="Job id (printed by submit; `talkstack status` shows it).")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Folder to write the outputs into (default: out/<job id>/)."),
    ] = None,
    port: PortOption = DEFAULT_PORT,
    stack: StackOption = DEFAULT_STACK,
) -> None:
    """Download a completed job's outputs from the local stack and print each file written."""
    from talkstack.cli.drop import download_outputs
    from talkstack.pipeline import aws

    r = _resources(stack, port)
    record = _record_or_not_found(_connect(r), r, job_id)
    _print_downloaded(download_outputs(aws.client("s3"), record, output or Path("out") / job_id))


def status_cmd(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the job record.")] = False,
    port: PortOption = DEFAULT_PORT,
    stack: StackOption = DEFAULT_STACK,
) -> None:
    """Where a job stands: status, progress, steps and their durations, result or error."""
    resources = _resources(stack, port)
    record = _record_or_not_found(_connect(resources), resources, job_id)
    if as_json:
        out.print_json(record.model_dump_json())
        return
    out.print(
        f"[bold]{record.job_id}[/] {record.task or '-'} / {record.model or '-'}: [bold]{record.status}[/] "
        f"{record.progress:.0%}",
        highlight=False,
    )
    for step in record.steps:
        duration = f"{step.duration_s:.2f} s" if step.duration_s is not None else "…"
        out.print(
            f"  {step.name:9} {step.status:10} {duration:>9}  attempts {step.attempts}", highlight=False
        )
    if record.error is not None:
        out.print(f"  [red]{record.error.code}[/]: {record.error.message}", highlight=False)
    if record.status == "completed":
        _print_outputs(record)
        assert record.result is not None  # a completed record has one
        for warning in record.result.warnings:
            out.print(f"  [yellow]warning[/]: {warning}", highlight=False)
        print_quality(record.result.quality)


def timeline(events: list[JobEvent], record: JobRecord | None) -> Table:
    table = Table("at (s)", "event", "status", "progress", "detail")
    if not events:
        return table
    t0 = min(e.occurred_at for e in events)
    for event in sorted(events, key=lambda e: e.occurred_at):
        detail = event.progress_message or ""
        if event.error is not None:
            detail = f"{event.error.code}: {event.error.message}"
        if event.result is not None:
            detail = f"s3://{event.result.bucket}/{event.result.key}"
        table.add_row(
            f"{(event.occurred_at - t0).total_seconds():6.2f}",
            event.type,
            event.status,
            f"{event.progress:.0%}",
            detail,
        )
    if record is not None and record.steps:
        steps = ", ".join(f"{s.name} {s.duration_s:.2f} s" for s in record.steps if s.duration_s is not None)
        table.caption = f"steps: {steps}; total {record.timings.get('total', 0):.2f} s"
    return table


def events_cmd(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    as_json: Annotated[bool, typer.Option("--json", help="One event per line, as published.")] = False,
    port: PortOption = DEFAULT_PORT,
    stack: StackOption = DEFAULT_STACK,
) -> None:
    """The job's event timeline (what went to SNS and its webhook), and webhook delivery attempts."""
    store = _connect(_resources(stack, port))
    events, record = store.events(job_id), store.get(job_id)
    if record is None and not events:
        raise TalkstackError(ErrorCode.NOT_FOUND, f"no job {job_id!r}")
    if as_json:
        for event in events:
            print(event.model_dump_json())
        return
    out.print(timeline(events, record))
    for report in store.deliveries(job_id):
        codes = [a["status_code"] or a["error"] for a in report["attempts"]]
        state = (
            "delivered" if report["delivered"] else f"NOT delivered ({report.get('refused') or 'gave up'})"
        )
        out.print(
            f"webhook {report['event_type']}: {state} after {len(codes)} attempt(s) {codes}", highlight=False
        )


# --- keys ----------------------------------------------------------------------------------------

keys_app = typer.Typer(help="REST API keys (stored hashed in the jobs table).", no_args_is_help=True)


def keys_create_cmd(
    tier: Annotated[
        str, typer.Option(help="free, pro or enterprise (requests/minute, jobs at once).")
    ] = "free",
    name: Annotated[str, typer.Option(help="A label for the key (default: its id).")] = "",
    table: Annotated[
        str | None,
        typer.Option(
            help="Jobs table of a deployed stack (uses your AWS credentials); default: the local stack."
        ),
    ] = None,
    usage_plan: Annotated[
        str | None,
        typer.Option(
            help="Deployed stacks: the tier's API Gateway usage plan id (stack output UsagePlan<Tier>); "
            "the key's usage key is registered in it, or API Gateway refuses the key."
        ),
    ] = None,
    port: PortOption = DEFAULT_PORT,
    stack: StackOption = DEFAULT_STACK,
) -> None:
    """Create an API key and print it (the only time it is shown)."""
    from talkstack.api.keys import TIER_LIMITS, KeyStore
    from talkstack.api.usage import register_usage_key
    from talkstack.pipeline import aws

    r = _resources(stack, port)
    if table is None:
        _connect(r)
    keys = KeyStore(table or r.jobs_table, aws.client("dynamodb"))
    new = keys.create(tier, name)
    if usage_plan is not None:
        try:
            register_usage_key(new.principal, usage_plan, aws.client("apigateway"))
        except Exception:
            keys.revoke(new.principal.key_id)  # a key API Gateway would refuse is not handed out
            raise
    limits = TIER_LIMITS[new.principal.tier]
    err.print(
        f"key {new.principal.key_id} ({new.principal.tier}: {limits.requests_per_minute} requests/minute, "
        f"{limits.concurrent_jobs} jobs at once); store it now, it is not shown again:",
        highlight=False,
        soft_wrap=True,
    )
    print(new.key)
    if table is None:
        err.print(
            f"try: curl -H 'Authorization: Bearer {new.key}' {r.api_url}/v1/models",
            highlight=False,
            soft_wrap=True,
        )


keys_app.command("create")(friendly_errors(keys_create_cmd))


TableOption = Annotated[
    str | None,
    typer.Option(help="Jobs table of a deployed stack (uses your AWS credentials); default: local."),
]
KeyIdArgument = Annotated[
    str, typer.Argument(help="The key's id: the 12 characters after tsk_ (keys list shows them).")
]


def _key_store(table: str | None, port: int, stack: str) -> Any:
    from talkstack.api.keys import KeyStore
    from talkstack.pipeline import aws

    r = _resources(stack, port)
    if table is None:
        _connect(r)
    return KeyStore(table or r.jobs_table, aws.client("dynamodb"))


def keys_list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per key.")] = False,
    table: TableOption = None,
    port: PortOption = DEFAULT_PORT,
    stack: StackOption = DEFAULT_STACK,
) -> None:
    """List API keys: id, name, tier, status (active, disabled, revoked), created. Never the secret."""
    from dataclasses import asdict

    from talkstack.cli.key_listing import list_keys

    keys = list_keys(_key_store(table, port, stack))
    if as_json:
        for key in keys:
            print(json.dumps(asdict(key)))
        return
    listing = Table("key id", "name", "tier", "status", "created (UTC)")
    for key in keys:
        colour = {"active": "green", "disabled": "yellow"}.get(key.status, "dim")
        created = key.created_at[:19].replace("T", " ")
        listing.add_row(key.key_id, key.name, key.tier, f"[{colour}]{key.status}[/]", created)
    out.print(listing)


def keys_disable_cmd(
    key_id: KeyIdArgument,
    table: TableOption = None,
    port: PortOption = DEFAULT_PORT,
    stack: StackOption = DEFAULT_STACK,
) -> None:
    """Disable an API key until `keys enable`: it gets the same 401 as an unknown key.

    Logged as key.disabled in the key's audit trail."""
    _key_store(table, port, stack).disable(key_id)
    out.print(f"key {key_id} disabled (undo: talkstack keys enable {key_id})", highlight=False)


def keys_enable_cmd(
    key_id: KeyIdArgument,
    table: TableOption = None,
    port: PortOption = DEFAULT_PORT,
    stack: StackOption = DEFAULT_STACK,
) -> None:
    """Enable a disabled API key again (logged as key.enabled). A revoked key stays revoked."""
    _key_store(table, port, stack).enable(key_id)
    out.print(f"key {key_id} enabled", highlight=False)


def keys_revoke_cmd(
    key_id: KeyIdArgument,
    table: TableOption = None,
    port: PortOption = DEFAULT_PORT,
    stack: StackOption = DEFAULT_STACK,
) -> None:
    """Revoke an API key for good: it authenticates no more and cannot be enabled again.

    Logged as key.revoked in the key's audit trail."""
    _key_store(table, port, stack).revoke(key_id)
    out.print(f"key {key_id} revoked", highlight=False)


for _name, _command in (
    ("list", keys_list_cmd),
    ("disable", keys_disable_cmd),
    ("enable", keys_enable_cmd),
    ("revoke", keys_revoke_cmd),
):
    keys_app.command(_name)(friendly_errors(_command))


# --- demo ----------------------------------------------------------------------------------------


def _demo_job(
    stack: Any,
    hooks: Any,
    store: Any,
    manifest: dict[str, Any],
    media: dict[str, Path],
    name: str,
    output: Path,
) -> JobRecord:
    from talkstack.cli.drop import drop_job

    r = stack.resources
    manifest = {**manifest, "notify": {"webhook_url": hooks.url}}
    dropped = drop_job(stack.s3, r.input_bucket, manifest, media, name=name)
    out.print(
        f"\n[bold]{name}[/]: dropped s3://{r.input_bucket}/{dropped.manifest_key} → job {dropped.job_id}",
        highlight=False,
    )
    record = _wait(store, dropped.job_id, 300)
    if record.status != "completed" or record.result is None:
        assert record.error is not None
        raise TalkstackError(record.error.code, f"demo job failed: {record.error.message}")
    output.parent.mkdir(parents=True, exist_ok=True)
    for item in record.result.outputs:
        target = output if item.kind in ("video", "audio") else output.with_suffix(".jpg")
        stack.s3.download_file(item.bucket, item.key, str(target))
    delivery = hooks.wait_for(record.job_id, "job.completed", timeout_s=30)
    out.print(timeline(store.events(record.job_id), record))
    verdict = "[green]verified[/]" if delivery.verified else "[red]NOT verified[/]"
    out.print(
        f"webhook job.completed received at {hooks.url}: signature {verdict} with standardwebhooks "
        f"(webhook-id {delivery.headers.get('webhook-id')})",
        highlight=False,
    )
    out.print(
        f"video: [bold]{output.resolve()}[/] ({record.result.duration_s:.2f} s, "
        f"{record.result.width}×{record.result.height})",
        highlight=False,
    )
    print_quality(record.result.quality)
    return record


def demo_cmd(
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="MP4 to write (the text job's video goes beside it as <name>-text.mp4)."
        ),
    ] = Path("out/demo.mp4"),
    port: Annotated[
        int,
        typer.Option(
            envvar="TALKSTACK_DEMO_PORT", help="Port of the demo's own local stack (not the one of up)."
        ),
    ] = DEMO_PORT,
) -> None:
    """The whole pipeline on the bundled sample: local stack → S3 drop → video in out/ + verified webhook."""
    import logging

    from talkstack.engines.registry import get_model
    from talkstack.local.receiver import WebhookReceiver
    from talkstack.local.stack import LocalStack
    from talkstack.pipeline.store import JobStore

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    r = LocalResources(stack="talkstack-demo", port=port)
    samples = Path(str(SAMPLES))
    started = time.perf_counter()
    with WebhookReceiver(LOCAL_WEBHOOK_SECRET) as hooks, LocalStack(r, workers=2) as stack:
        out.print(f"local stack up at {r.endpoint} in {time.perf_counter() - started:.1f} s", highlight=False)
        store = JobStore(r.jobs_table)
        manifest = {"task": "avatar", "inputs": {"image": "portrait.png", "audio": "speech.wav"}}
        media = {"portrait.png": samples / "portrait.png", "speech.wav": samples / "speech.wav"}
        _demo_job(stack, hooks, store, manifest, media, "demo", output)
        if get_model("lite-voice").available:
            text = (
                "Hello! I am a talking avatar, made from one photo and a line of text, on your own machine."
            )
            manifest = {"task": "avatar", "inputs": {"image": "portrait.png", "text": text}}
            _demo_job(
                stack,
                hooks,
                store,
                manifest,
                {"portrait.png": samples / "portrait.png"},
                "demo-text",
                output.with_name(output.stem + "-text.mp4"),
            )
        else:
            err.print("[yellow]skipped the text → voice → avatar job: espeak-ng is not installed[/]")
    out.print(f"\ndemo finished in {time.perf_counter() - started:.1f} s", highlight=False)


def register(app: typer.Typer) -> None:
    for name, fn in (
        ("up", up_cmd),
        ("submit", submit_cmd),
        ("download", download_cmd),
        ("status", status_cmd),
        ("events", events_cmd),
        ("demo", demo_cmd),
    ):
        app.command(name)(friendly_errors(fn))
    app.add_typer(keys_app, name="keys")


__all__ = ["register"]
