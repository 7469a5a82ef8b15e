"""`talkstack audit KEY_ID`: a key's audit trail as the operator sees it (the jobs table of the local
stack, or of a deployed stack with `--table` and your AWS credentials), and `talkstack api audit`:
the caller's own trail through the REST API (`GET /v1/audit`, with the key). Both print the same
table, or the entries as JSON Lines with `--json`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.table import Column, Table

from talkstack.cli.common import friendly_errors, out
from talkstack.cli.remote import KeyOption, UrlOption, _client, api_app
from talkstack.cli.stack import PortOption, StackOption, _connect, _resources
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.local.resources import DEFAULT_PORT, DEFAULT_STACK
from talkstack.settings.client import DEFAULT_API_URL

if TYPE_CHECKING:
    from talkstack.pipeline.audit import AuditEntry

Order = Literal["newest", "oldest"]
ActionOption = Annotated[
    str | None, typer.Option("--action", help="Only these actions (comma-separated, e.g. job.submitted).")
]
SinceOption = Annotated[datetime | None, typer.Option(help="From this time (ISO-8601; UTC unless it says).")]
UntilOption = Annotated[datetime | None, typer.Option(help="Before this time (ISO-8601).")]
OrderOption = Annotated[str, typer.Option("--order", help="newest or oldest first.")]
LimitOption = Annotated[int, typer.Option(min=1, max=100, help="Entries per page.")]
CursorOption = Annotated[str | None, typer.Option(help="Continue after a previous page.")]
JsonOption = Annotated[bool, typer.Option("--json", help="One entry per line, as stored.")]


def _order(value: str) -> Order:
    if value not in ("newest", "oldest"):
        raise TalkstackError(ErrorCode.INVALID_REQUEST, f"--order: newest or oldest, not {value!r}")
    return value  # type: ignore[return-value]


def _utc(moment: datetime | None) -> datetime | None:
    from datetime import UTC

    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


def print_entries(entries: list[AuditEntry], next_cursor: str | None, as_json: bool) -> None:
    if as_json:
        for entry in entries:
            print(entry.model_dump_json())
        return
    table = Table(
        Column("time (UTC)", no_wrap=True), "key", "action", "object", "source", "request", "details"
    )
    for e in entries:
        details = ", ".join(f"{k}={v}" for k, v in e.details.items())
        table.add_row(
            f"{e.time:%Y-%m-%d %H:%M:%S.%f}"[:-3],
            e.key_id,
            e.action,
            f"{e.object.type} {e.object.id}",
            e.source_ip,
            e.request_id or "",
            details,
        )
    out.print(table)
    if next_cursor:
        out.print(f"more: --cursor {next_cursor}", highlight=False, soft_wrap=True)


def audit_cmd(
    key_id: Annotated[str, typer.Argument(help="The API key's id (the part after tsk_).")],
    action: ActionOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    order: OrderOption = "newest",
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
    table: Annotated[
        str | None,
        typer.Option(help="Jobs table of a deployed stack (uses your AWS credentials); default: local."),
    ] = None,
    port: PortOption = DEFAULT_PORT,
    stack: StackOption = DEFAULT_STACK,
) -> None:
    """A key's audit trail (operator view, straight from the jobs table)."""
    from talkstack.pipeline import aws
    from talkstack.pipeline.audit import AUDIT_ACTIONS, AuditLog, decode_audit_cursor, encode_audit_cursor

    r = _resources(stack, port)
    if table is None:
        _connect(r)
    actions = frozenset(a.strip() for a in action.split(",") if a.strip()) if action else None
    unknown = (actions or frozenset()) - set(AUDIT_ACTIONS)
    if unknown:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST,
            f"--action: unknown {', '.join(sorted(unknown))} (one or more of {', '.join(AUDIT_ACTIONS)})",
        )
    log = AuditLog(table or r.jobs_table, aws.client("dynamodb"))
    entries, next_key = log.trail(
        key_id,
        actions=actions,
        start=_utc(since),
        end=_utc(until),
        limit=limit,
        newest_first=_order(order) == "newest",
        cursor=decode_audit_cursor(cursor, key_id),
    )
    print_entries(entries, encode_audit_cursor(next_key), as_json)


def api_audit_cmd(
    action: ActionOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    order: OrderOption = "newest",
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_API_URL,
    key: KeyOption = None,
) -> None:
    """This key's own audit trail, through the API (GET /v1/audit)."""
    with _client(url, key) as client:
        page = client.audit(action, _utc(since), _utc(until), _order(order), limit, cursor)
    print_entries(page.entries, page.next_cursor, as_json)


def register(app: typer.Typer) -> None:
    app.command("audit")(friendly_errors(audit_cmd))
    api_app.command("audit")(friendly_errors(api_audit_cmd))


__all__ = ["print_entries", "register"]
