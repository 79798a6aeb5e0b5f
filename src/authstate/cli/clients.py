"""``authstate clients``: register, list, remove OAuth clients and rotate their secrets.

Each command translates its flags to one ``AuthState`` call (``add_client``,
``remove_client``, ``rotate_client_secret``); a secret is printed once, never stored.
"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from authstate.cli.runner import (
    JsonOption,
    StoreOption,
    console,
    err_console,
    fail,
    iso,
    run,
    with_state,
)
from authstate.clients import Client
from authstate.state import AuthState

app = typer.Typer(help="Register and manage OAuth clients.", no_args_is_help=True)

RedirectOption = typer.Option(
    None, "--redirect-uri", help="A redirect URI, matched exactly (https, or http on "
    "loopback); repeat for several.")
PublicOption = typer.Option(
    False, "--public", help="A public client (SPA, mobile app): no secret, PKCE only.")
ScopeOption = typer.Option(
    None, "--scope", help="A scope the client may ask for; repeat for several "
    "(openid, profile, email are always allowed).")
GrantOption = typer.Option(
    None, "--grant-type", help="authorization_code, refresh_token or password; repeat. "
    "Default: authorization_code and refresh_token with a redirect URI, else none "
    "(a resource server that only introspects).")
BackchannelOption = typer.Option(
    None, "--backchannel-logout-uri", help="Where to send OpenID back-channel logout.")
PostLogoutOption = typer.Option(
    None, "--post-logout-redirect-uri",
    help="Where OpenID RP-initiated logout may send the user back (exact match; repeat).")
FirstPartyOption = typer.Option(
    False, "--first-party", help="Your own app: its users are not asked to consent.")


def _print_secret(client: Client, secret: str | None, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps({**client.public_view(), "client_secret": secret}))
        return
    console.print(f"client_id:     {client.id}", highlight=False)
    if secret is None:
        console.print("public client: no secret; it must use PKCE", highlight=False)
        return
    console.print(f"client_secret: {secret}", highlight=False, soft_wrap=True)
    err_console.print("The secret is shown only now; only its hash is stored.", highlight=False)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="A name to recognise the client by."),
    redirect_uri: list[str] | None = RedirectOption,
    public: bool = PublicOption,
    scope: list[str] | None = ScopeOption,
    grant_type: list[str] | None = GrantOption,
    backchannel_logout_uri: str | None = BackchannelOption,
    post_logout_redirect_uri: list[str] | None = PostLogoutOption,
    first_party: bool = FirstPartyOption,
    store: str | None = StoreOption,
    as_json: bool = JsonOption,
) -> None:
    """Register a client and print its ID and secret. The secret is shown only this once."""

    async def action(state: AuthState) -> tuple[Client, str | None]:
        return await state.add_client(
            name, redirect_uris=tuple(redirect_uri or ()), public=public, scopes=tuple(scope or ()),
            grant_types=tuple(grant_type or ()) or None, first_party=first_party,
            backchannel_logout_uri=backchannel_logout_uri,
            post_logout_redirect_uris=tuple(post_logout_redirect_uri or ()),
        )

    client, secret = run(with_state(store, action))
    _print_secret(client, secret, as_json)


@app.command("list")
def list_(store: str | None = StoreOption, as_json: bool = JsonOption) -> None:
    """List clients (never their secrets)."""

    async def action(state: AuthState) -> list[Client]:
        return await state.clients.list()

    clients = run(with_state(store, action))
    if as_json:
        console.print_json(json.dumps(
            [{**c.public_view(), "created_at": iso(c.created_at)} for c in clients]
        ))
        return
    table = Table(title=f"{len(clients)} client(s)")
    for column in ("client_id", "name", "type", "grant types", "scopes", "redirect URIs",
                   "created_at"):
        table.add_column(column)
    for c in clients:
        kind = ("public" if c.public else "confidential") + (", first-party" if c.first_party
                                                             else "")
        table.add_row(c.id, c.name, kind, " ".join(c.grant_types), " ".join(c.scopes),
                      "\n".join(c.redirect_uris), iso(c.created_at))
    console.print(table)


@app.command("remove")
def remove(
    client_id: str = typer.Argument(..., help="The client's ID (c_…)."),
    store: str | None = StoreOption,
) -> None:
    """Remove a client: it can no longer authenticate, start a login or refresh."""

    async def action(state: AuthState) -> Client | None:
        return await state.remove_client(client_id)

    if run(with_state(store, action)) is None:
        raise fail("no such client")
    console.print(f"removed {client_id}", highlight=False)


@app.command("rotate-secret")
def rotate_secret(
    client_id: str = typer.Argument(..., help="The client's ID (c_…)."),
    store: str | None = StoreOption,
    as_json: bool = JsonOption,
) -> None:
    """Give a confidential client a new secret (printed once); the old one stops at once."""

    async def action(state: AuthState) -> tuple[Client, str]:
        return await state.rotate_client_secret(client_id)

    client, secret = run(with_state(store, action))
    _print_secret(client, secret, as_json)
