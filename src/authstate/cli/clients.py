"""``authstate clients``: clients of the introspection and revocation endpoints."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from authstate.cli.runner import (
    JsonOption,
    StoreOption,
    console,
    err_console,
    iso,
    run,
    with_state,
)
from authstate.clients import Client
from authstate.state import AuthState

app = typer.Typer(help="Create and list introspection/revocation clients.", no_args_is_help=True)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="A name to recognise the client by."),
    store: str | None = StoreOption,
    as_json: bool = JsonOption,
) -> None:
    """Create a client and print its ID and secret. The secret is shown only this once."""

    async def action(state: AuthState) -> tuple[Client, str]:
        return await state.add_client(name)

    client, secret = run(with_state(store, action))
    if as_json:
        console.print_json(json.dumps(
            {"client_id": client.id, "client_secret": secret, "name": client.name}
        ))
        return
    console.print(f"client_id:     {client.id}", highlight=False)
    console.print(f"client_secret: {secret}", highlight=False, soft_wrap=True)
    err_console.print("The secret is shown only now; only its hash is stored.", highlight=False)


@app.command("list")
def list_(store: str | None = StoreOption, as_json: bool = JsonOption) -> None:
    """List clients (never their secrets)."""

    async def action(state: AuthState) -> list[Client]:
        return await state.clients.list()

    clients = run(with_state(store, action))
    rows = [
        {"client_id": c.id, "name": c.name,
         "created_at": iso(c.created_at)}
        for c in clients
    ]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"{len(rows)} client(s)")
    for column in ("client_id", "name", "created_at"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["client_id"], row["name"], row["created_at"])
    console.print(table)
