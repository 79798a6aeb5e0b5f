"""``authstate users``: create and list the accounts the service authenticates."""

from __future__ import annotations

import json
import sys

import typer
from rich.table import Table

from authstate.cli.runner import (
    EXIT_USAGE,
    JsonOption,
    StoreOption,
    console,
    fail,
    iso,
    run,
    with_state,
)
from authstate.state import AuthState
from authstate.users import User

app = typer.Typer(help="Create and list users.", no_args_is_help=True)


def _row(user: User) -> dict[str, object]:
    return {"id": user.id, "email": user.email, "is_admin": user.is_admin,
            "created_at": iso(user.created_at)}


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
        if not password:
            raise fail("no password on stdin", EXIT_USAGE)
        return password
    if not sys.stdin.isatty():
        raise fail("stdin is not a terminal: pass the password with --password-stdin",
                   EXIT_USAGE)
    prompted: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return prompted


@app.command("add")
def add(
    email: str = typer.Argument(..., help="The user's email address (their login)."),
    admin: bool = typer.Option(False, "--admin", help="May call the /admin endpoints."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of stdin."
    ),
    store: str | None = StoreOption,
    as_json: bool = JsonOption,
) -> None:
    """Create a user; the password comes from a prompt, or stdin with --password-stdin."""
    password = _read_password(password_stdin)

    async def action(state: AuthState) -> User:
        return await state.add_user(email, password, admin=admin, via="cli")

    user = run(with_state(store, action))
    if as_json:
        console.print_json(json.dumps(_row(user)))
    else:
        role = "admin" if user.is_admin else "user"
        console.print(f"created {role} {user.email} with id {user.id}", highlight=False)


@app.command("list")
def list_(store: str | None = StoreOption, as_json: bool = JsonOption) -> None:
    """List users, oldest first."""

    async def action(state: AuthState) -> list[User]:
        return await state.users.list()

    rows = [_row(u) for u in run(with_state(store, action))]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"{len(rows)} user(s)")
    for column in ("id", "email", "is_admin", "created_at"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row["id"]), str(row["email"]), "yes" if row["is_admin"] else "",
                      str(row["created_at"]))
    console.print(table)
