"""The operator's deletion commands, straight against the stack (the local one, or a deployed one
with its `TALKSTACK_*` variables and your AWS credentials, `--deployed`):

  talkstack data erase --key KEY_ID   everything of one API key (a GDPR erasure request), the key last
  talkstack jobs delete JOB_ID        one job (any job: an API job, an S3 drop, a direct start)

Both run talkstack.pipeline.deletion without a deadline and print its receipt (`--json`: as JSON).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from talkstack.cli.common import friendly_errors
from talkstack.cli.remote import print_receipt
from talkstack.cli.stack import PortOption, StackOption, _connect, _resources
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.local.resources import DEFAULT_PORT, DEFAULT_STACK
from talkstack.settings import environ

if TYPE_CHECKING:
    from talkstack.pipeline.deletion import Deleter

data_app = typer.Typer(help="Erase a key's data (GDPR requests).", no_args_is_help=True)
jobs_app = typer.Typer(help="Operator actions on jobs.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the receipt as JSON.")]
DeployedOption = Annotated[
    bool,
    typer.Option(
        "--deployed",
        help="A deployed stack: take its TALKSTACK_* variables (buckets, table, state machine) from "
        "the environment, with your AWS credentials. Default: the local stack.",
    ),
]


def _deleter(deployed: bool, stack: str, port: int) -> Deleter:
    from talkstack.pipeline import aws
    from talkstack.pipeline.audit import AuditLog
    from talkstack.pipeline.backends import Backends
    from talkstack.pipeline.config import get_config
    from talkstack.pipeline.deletion import Deleter
    from talkstack.pipeline.services import services

    if not deployed:
        r = _resources(stack, port)
        _connect(r)
        environ.export(r.pipeline_env())
        get_config.cache_clear()
        services.cache_clear()
    svc = services()
    config = svc.config
    return Deleter(
        config,
        svc.store,
        svc.s3,
        svc.sfn,
        Backends(config, lambda: aws.client("secretsmanager")),
        AuditLog(config.jobs_table, svc.store.ddb, config.audit_retention_days),
    )


def erase_cmd(
    key_id: Annotated[str, typer.Option("--key", help="The API key's id (the part after tsk_).")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone.")] = False,
    as_json: JsonOption = False,
    deployed: DeployedOption = False,
    port: PortOption = DEFAULT_PORT,
    stack: StackOption = DEFAULT_STACK,
) -> None:
    """Erase everything of an API key: its jobs (inputs, outputs, work files, records), uploads,
    webhook endpoints and secrets, rate and idempotency records, then the key. The audit trail stays.
    Safe to run again: it goes on where an earlier run stopped."""
    from talkstack.pipeline.audit import CLI_SOURCE, Actor

    if not yes:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST, f"erasing deletes every job of {key_id} and the key: add --yes"
        )
    receipt = _deleter(deployed, stack, port).erase_key(key_id, Actor(key_id, CLI_SOURCE))
    print_receipt(receipt, as_json)
    if not receipt.complete:
        raise TalkstackError(
            ErrorCode.CONFLICT, "some jobs were still finishing (see `kept`); run the command again"
        )


def delete_cmd(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    as_json: JsonOption = False,
    deployed: DeployedOption = False,
    port: PortOption = DEFAULT_PORT,
    stack: StackOption = DEFAULT_STACK,
) -> None:
    """Delete one job and everything it left (a running one is cancelled first); the audit trail
    keeps a `job.deleted` entry."""
    from talkstack.pipeline.audit import CLI_SOURCE, Actor
    from talkstack.pipeline.held_review import owner_of

    deleter = _deleter(deployed, stack, port)
    record = deleter.store.get(job_id)
    if record is None:
        raise TalkstackError(ErrorCode.NOT_FOUND, f"no job {job_id!r}")
    receipt = deleter.delete_job(record, Actor(owner_of(record, deleter.config), CLI_SOURCE))
    print_receipt(receipt, as_json)


def register(app: typer.Typer) -> None:
    data_app.command("erase")(friendly_errors(erase_cmd))
    jobs_app.command("delete")(friendly_errors(delete_cmd))
    app.add_typer(data_app, name="data")
    app.add_typer(jobs_app, name="jobs")
