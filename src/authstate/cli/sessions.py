"""``authstate sessions``: the device inventory and revocation, for operators."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from authstate.cli.runner import JsonOption, StoreOption, console, fail, iso, run, with_state
from authstate.sessions import Session
from authstate.state import AuthState

COLUMNS = ("handle", "user_id", "created_at", "last_seen", "expires_at", "ip", "user_agent")

app = typer.Typer(help="List and revoke server-side sessions.", no_args_is_help=True)


def _row(s: Session) -> dict[str, object]:
    return {
        "handle": s.handle,
        "user_id": s.user_id,
        "created_at": iso(s.created_at),
        "last_seen": iso(s.last_seen),
        "expires_at": iso(s.expires_at),
        "ip": s.ip,
        "user_agent": s.user_agent,
    }


def _print(sessions: list[Session], as_json: bool, title: str) -> None:
    rows = [_row(s) for s in sessions]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c] or "") for c in COLUMNS))
    console.print(table)


@app.command("list")
def list_(
    user: str = typer.Option(..., "--user", help="The user ID whose sessions to list."),
    store: str | None = StoreOption,
    as_json: bool = JsonOption,
) -> None:
    """List a user's active sessions (their devices)."""

    async def action(state: AuthState) -> list[Session]:
        return await state.sessions.for_user(user)

    _print(run(with_state(store, action)), as_json, f"sessions of {user}")


@app.command()
def revoke(
    handle_prefix: str | None = typer.Argument(
        None, metavar="SESSION_ID_PREFIX", help="A session handle (or its first 4+ hex characters)."
    ),
    user: str | None = typer.Option(None, "--user", help="Revoke every session of this user."),
    store: str | None = StoreOption,
    as_json: bool = JsonOption,
) -> None:
    """Revoke sessions by handle prefix, or all of a user's sessions with --user."""
    if (handle_prefix is None) == (user is None):
        raise fail("give exactly one of SESSION_ID_PREFIX or --user", 2)

    async def action(state: AuthState) -> list[Session]:
        if user is not None:
            return await state.end_sessions(user, reason="admin")
        assert handle_prefix is not None
        return await state.end_sessions_by_prefix(handle_prefix.lower(), reason="admin")

    ended = run(with_state(store, action))
    if as_json:
        console.print_json(json.dumps({"revoked": [s.handle for s in ended]}))
    else:
        console.print(f"revoked {len(ended)} session(s)")
