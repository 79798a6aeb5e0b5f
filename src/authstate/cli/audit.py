"""``authstate audit``: read the audit trail, newest first, for operators."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from authstate.audit import EVENT_TYPES, PAGE_MAX, AuditPage, parse_since
from authstate.cli.runner import EXIT_USAGE, JsonOption, StoreOption, console, fail, run, with_state
from authstate.errors import InvalidInput
from authstate.state import AuthState

COLUMNS = ("id", "time", "type", "actor", "user_id", "session", "ip", "token_fp", "detail")


def _print(page: AuditPage, as_json: bool) -> None:
    if as_json:
        console.print_json(
            json.dumps(
                {"events": [e.to_json() for e in page.events], "next_before": page.next_before}
            )
        )
        return
    table = Table(title=f"{len(page.events)} audit event(s), newest first")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for event in page.events:
        row = event.to_json()
        row["detail"] = json.dumps(event.detail, separators=(",", ":")) if event.detail else ""
        table.add_row(*(str(row[c] or "") for c in COLUMNS))
    console.print(table)
    if page.next_before is not None:
        console.print(f"more: add --before {page.next_before}", highlight=False)


def audit_command(
    user: str | None = typer.Option(None, "--user", help="Only events about this user ID."),
    type_: str | None = typer.Option(
        None, "--type", help="Only this event type: " + ", ".join(sorted(EVENT_TYPES)) + "."
    ),
    since: str | None = typer.Option(
        None, "--since", help="Only newer events: an age (30m, 24h, 7d), ISO 8601 time or epoch."
    ),
    limit: int = typer.Option(50, "--limit", min=1, max=PAGE_MAX, help="Events per page."),
    before: str | None = typer.Option(
        None, "--before", help="Continue from a previous page (the id it printed)."
    ),
    store: str | None = StoreOption,
    as_json: bool = JsonOption,
) -> None:
    """Show audit events (logins, sessions, tokens, revocations, keys), newest first."""

    async def action(state: AuthState) -> AuditPage:
        try:
            since_ts = parse_since(since, state.clock.now()) if since is not None else None
            return await state.audit.query(
                user_id=user, type=type_, since=since_ts, before=before, limit=limit
            )
        except InvalidInput as error:
            raise fail(error.message, EXIT_USAGE) from None

    _print(run(with_state(store, action)), as_json)
