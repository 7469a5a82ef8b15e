"""`talkstack moderation list|release|delete`: an operator's review of held jobs (outputs the output
scan flagged, kept unpublished in the work bucket under `held/<job_id>/`).

Against the local stack by default. Against a deployed stack with `--deployed`: your AWS credentials
(profile, SSO, …) and the stack's names in the pipeline's own variables (TALKSTACK_JOBS_TABLE,
TALKSTACK_WORK_BUCKET, TALKSTACK_OUTPUT_BUCKET, TALKSTACK_NOTIFY_FUNCTION and the other required
ones, as the Lambdas have them; docs/settings.md). The work is talkstack.pipeline.held_review's.
"""

from __future__ import annotations

import getpass
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from talkstack.cli.common import friendly_errors, out
from talkstack.cli.stack import PortOption, StackOption, _connect, _resources
from talkstack.local.resources import DEFAULT_PORT, DEFAULT_STACK
from talkstack.settings import environ

if TYPE_CHECKING:
    from talkstack.contract.record import JobRecord
    from talkstack.pipeline.config import PipelineConfig

moderation_app = typer.Typer(help="Review held jobs: outputs the output scan flagged.", no_args_is_help=True)

DeployedOption = Annotated[
    bool,
    typer.Option(
        "--deployed",
        help="A deployed stack: your AWS credentials, its names in the TALKSTACK_* pipeline variables.",
    ),
]
OperatorOption = Annotated[
    str | None, typer.Option("--operator", help="Who decides (the audit entry names them); default: you.")
]
JobIdArgument = Annotated[str, typer.Argument(help="The held job's id (moderation list shows them).")]


def _config(deployed: bool, port: int, stack: str) -> PipelineConfig:
    from talkstack.pipeline.config import PipelineConfig, get_config

    if deployed:
        return get_config()
    resources = _resources(stack, port)
    _connect(resources)
    env = resources.pipeline_env()
    # As the stack's Lambdas have them: a release signs content credentials with the stack's own
    # signer (TALKSTACK_C2PA_SECRET), as finalize does.
    environ.export(env)
    return PipelineConfig.model_validate(
        {name.removeprefix("TALKSTACK_").lower(): value for name, value in env.items()}
    )


def _parts(config: PipelineConfig) -> tuple[Any, Any, Any, Any]:
    """(jobs store, S3 client, audit log, announce) for `config`'s stack."""
    from talkstack.contract.state import NotifyRequest
    from talkstack.pipeline import aws
    from talkstack.pipeline.audit import AuditLog
    from talkstack.pipeline.store import JobStore

    ddb = aws.client("dynamodb")
    store = JobStore(config.jobs_table, ddb, retention_days=config.record_retention_days)
    audit = AuditLog(config.jobs_table, ddb, config.audit_retention_days)

    def announce(event: Any) -> None:
        # The notify Lambda publishes to SNS and delivers the webhooks, as for any job event.
        aws.client("lambda").invoke(
            FunctionName=config.notify_function,
            InvocationType="Event",
            Payload=NotifyRequest.of(event).model_dump_json().encode(),
        )

    return store, aws.client("s3"), audit, announce


def _summary(record: JobRecord) -> dict[str, Any]:
    scan = record.result.scan if record.result else None
    return {
        "job_id": record.job_id,
        "key_id": record.source.api_key_id if record.source else None,
        "created_at": record.created_at.isoformat(),
        "status": scan.status if scan else None,
        "model": scan.model if scan else None,
        "categories": scan.categories if scan else [],
        "reasons": scan.reasons if scan else [],
    }


def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per held job.")] = False,
    deployed: DeployedOption = False,
    port: PortOption = DEFAULT_PORT,
    stack: StackOption = DEFAULT_STACK,
) -> None:
    """List held jobs: job id, key id, created, the scan's model and reasons (oldest first)."""
    from talkstack.cli.held_listing import list_held
    from talkstack.pipeline import aws

    config = _config(deployed, port, stack)
    held = [_summary(r) for r in list_held(aws.client("dynamodb"), config.jobs_table)]
    if as_json:
        for row in held:
            print(json.dumps(row))
        return
    table = Table("job", "key", "created (UTC)", "scan", "model", "reasons")
    for row in held:
        table.add_row(
            row["job_id"],
            row["key_id"] or "-",
            row["created_at"][:19],
            row["status"] or "-",
            row["model"] or "-",
            "; ".join(row["reasons"]),
        )
    out.print(table if held else "no held jobs")


def release_cmd(
    job_id: JobIdArgument,
    operator: OperatorOption = None,
    deployed: DeployedOption = False,
    port: PortOption = DEFAULT_PORT,
    stack: StackOption = DEFAULT_STACK,
) -> None:
    """Publish a held job's outputs: the job completes (job.completed, webhook) and the audit trail
    records moderation.released with the operator."""
    from talkstack.pipeline.held_review import release_job

    config = _config(deployed, port, stack)
    store, s3, audit, announce = _parts(config)
    record = release_job(job_id, operator or getpass.getuser(), config, store, s3, audit, announce)
    primary = record.result.primary if record.result else None
    where = f" to s3://{primary.bucket}/{primary.key}" if primary else ""
    out.print(f"job {job_id} released: published{where}", highlight=False)


def delete_cmd(
    job_id: JobIdArgument,
    operator: OperatorOption = None,
    deployed: DeployedOption = False,
    port: PortOption = DEFAULT_PORT,
    stack: StackOption = DEFAULT_STACK,
) -> None:
    """Delete a held job's outputs: the job fails with CONTENT_REFUSED (job.failed, webhook) and the
    audit trail records moderation.deleted with the operator."""
    from talkstack.pipeline.held_review import delete_job

    config = _config(deployed, port, stack)
    store, s3, audit, announce = _parts(config)
    record = delete_job(job_id, operator or getpass.getuser(), config, store, s3, audit, announce)
    category = record.error.details.get("category") if record.error else None
    out.print(f"job {job_id} deleted: its outputs are gone, the job failed ({category})", highlight=False)


for _name, _command in (("list", list_cmd), ("release", release_cmd), ("delete", delete_cmd)):
    moderation_app.command(_name)(friendly_errors(_command))


def register(app: typer.Typer) -> None:
    app.add_typer(moderation_app, name="moderation")


__all__ = ["register"]
