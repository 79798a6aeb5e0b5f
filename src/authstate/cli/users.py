"""``authstate users``: the accounts the service authenticates, for operators.

Each command is one ``AuthState`` call (``add_user``, ``disable_user``, ``set_scopes`` ...):
this module only reads arguments and prints results. An unknown email is exit 1 with a
message, as is a refused change (the last enabled admin)."""

from __future__ import annotations

import json
import sys

import typer
from rich.markup import escape
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
from authstate.state import AuthState, UserDisabled, UserRevoked
from authstate.users import User

app = typer.Typer(help="Create, list, suspend and delete users.", no_args_is_help=True)

EmailArgument = typer.Argument(..., help="The user's email address.")


def _row(user: User) -> dict[str, object]:
    return {"id": user.id, "email": user.email, "is_admin": user.is_admin,
            "created_at": iso(user.created_at), "scopes": list(user.scopes),
            "disabled": user.disabled, "disabled_at": iso(user.disabled_at) or None,
            "disabled_reason": user.disabled_reason}


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
def list_(
    disabled: bool = typer.Option(False, "--disabled", help="Only the disabled users."),
    store: str | None = StoreOption,
    as_json: bool = JsonOption,
) -> None:
    """List users, oldest first; disabled ones are marked."""

    async def action(state: AuthState) -> list[User]:
        return await state.list_users(disabled=True if disabled else None)

    users = run(with_state(store, action))
    if as_json:
        console.print_json(json.dumps([_row(u) for u in users]))
        return
    table = Table(title=f"{len(users)} user(s)")
    for column in ("id", "email", "admin", "status", "reason", "scopes", "created_at"):
        table.add_column(column, no_wrap=column in ("id", "email", "status"))
    for user in users:
        table.add_row(user.id, escape(user.email), "yes" if user.is_admin else "",
                      "DISABLED" if user.disabled else "",
                      escape(user.disabled_reason or ""), " ".join(user.scopes),
                      iso(user.created_at))
    console.print(table)


@app.command("show")
def show(email: str = EmailArgument, store: str | None = StoreOption,
         as_json: bool = JsonOption) -> None:
    """Show one user: role, scopes, status and live sessions."""

    async def action(state: AuthState) -> tuple[User, int]:
        user = await state.find_user(email)
        return user, len(await state.sessions.for_user(user.id))

    user, sessions = run(with_state(store, action))
    row = {**_row(user), "sessions": sessions}
    if as_json:
        console.print_json(json.dumps(row))
        return
    for name, value in row.items():
        shown = " ".join(value) if isinstance(value, list) else value
        console.print(f"{name:16} {'' if shown is None else shown}", highlight=False)


@app.command("disable")
def disable(
    email: str = EmailArgument,
    reason: str | None = typer.Option(None, "--reason", help="Why (kept in the audit trail)."),
    store: str | None = StoreOption,
) -> None:
    """Suspend a user: login refused, every session and token ended at once."""

    async def action(state: AuthState) -> UserDisabled:
        user = await state.find_user(email)
        return await state.disable_user(user.id, reason=reason)

    done = run(with_state(store, action))
    console.print(
        f"disabled {done.user.email}: ended {done.revoked.sessions} session(s) and "
        f"{done.revoked.families} refresh family(ies); every access token is refused",
        highlight=False,
    )


@app.command("enable")
def enable(email: str = EmailArgument, store: str | None = StoreOption) -> None:
    """Let a disabled user log in again (nothing ended comes back)."""

    async def action(state: AuthState) -> User:
        return await state.enable_user((await state.find_user(email)).id)

    user = run(with_state(store, action))
    console.print(f"enabled {user.email}", highlight=False)


@app.command("delete")
def delete(
    email: str = EmailArgument,
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    store: str | None = StoreOption,
) -> None:
    """Delete a user and everything kept about them (the audit trail keeps the ID)."""
    if not yes:
        if not sys.stdin.isatty():
            raise fail("stdin is not a terminal: pass --yes to delete", EXIT_USAGE)
        if not typer.confirm(f"Delete {email} and all their sessions and tokens?"):
            raise typer.Exit(1)

    async def action(state: AuthState) -> UserRevoked:
        return await state.delete_user((await state.find_user(email)).id)

    revoked = run(with_state(store, action))
    console.print(f"deleted {email} (ended {revoked.sessions} session(s))", highlight=False)


@app.command("set-password")
def set_password(
    email: str = EmailArgument,
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of stdin."
    ),
    store: str | None = StoreOption,
) -> None:
    """Reset a user's password (admin reset): every session and token ends."""
    password = _read_password(password_stdin)

    async def action(state: AuthState) -> UserRevoked:
        return await state.reset_password((await state.find_user(email)).id, password)

    revoked = run(with_state(store, action))
    console.print(f"password of {email} reset; ended {revoked.sessions} session(s)",
                  highlight=False)


@app.command("set-scopes")
def set_scopes(
    email: str = EmailArgument,
    scopes: list[str] = typer.Argument(  # noqa: B008 - Typer's declaration style
        None, help="The scopes the user may be granted (replaces the set; none clears it)."
    ),
    store: str | None = StoreOption,
) -> None:
    """Replace the scopes a user may be granted; a removed one stops working at once."""

    async def action(state: AuthState) -> User:
        return await state.set_scopes((await state.find_user(email)).id, list(scopes or ()))

    user = run(with_state(store, action))
    console.print(f"scopes of {user.email}: {' '.join(user.scopes) or '(none)'}",
                  highlight=False)
