"""``authstate keys``: create, rotate, revoke, list and publish the shared signing keys.

Every command works on the store; running services follow within ``key_poll_interval``
seconds (sooner over the bus). Exit status 0 on success, 1 with a one-line message when
the command cannot be done (an unknown kid, the store down), 2 for a usage error."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.table import Table

from authstate import keystore, keywrap
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
from authstate.clock import SystemClock
from authstate.config import Settings, load_settings
from authstate.errors import ConfigurationError
from authstate.jose.algorithms import ALGORITHMS, DEFAULT_ALGORITHM
from authstate.jose.jwk import SigningKey
from authstate.state import AuthState
from authstate.stores import Store, open_store

T = TypeVar("T")

app = typer.Typer(help="Signing keys: generate, rotate, revoke, list, export the JWKS.",
                  no_args_is_help=True)

AlgOption = typer.Option(
    None, "--alg", help=f"Algorithm: {', '.join(ALGORITHMS)} (default: the configured one)."
)

KeyOutOption = typer.Option(
    None, "--out", help="Write a standalone private key to this file (mode 0600) instead of "
    "creating the store's key set."
)
JwksOutOption = typer.Option(None, "--out", help="Write to this file, not stdout.")


def _row(key: SigningKey, now: float) -> dict[str, Any]:
    upcoming = key.next_change(now)
    return {
        "kid": key.kid,
        "alg": key.alg,
        "state": key.state(now),
        "next_state": upcoming[0] if upcoming else None,
        "next_change_at": iso(upcoming[1]) if upcoming else "",
        "created_at": iso(key.created_at),
        "signs_from": iso(key.activation),
        "not_after": iso(key.not_after),
        "retire_at": iso(key.retire_at),
        "revoked_at": iso(key.revoked_at),
    }


def _check_alg(alg: str | None) -> None:
    if alg is not None and alg not in ALGORITHMS:
        raise fail(f"unknown algorithm {alg!r}; one of {', '.join(ALGORITHMS)}", EXIT_USAGE)


async def _with_store(store: str | None, action: Callable[[Settings, Store], Awaitable[T]]) -> T:
    """Open the raw store, not an AuthState, for the read-only ``list`` and
    ``export-jwks``: they read public halves only, so they work without the KEK (and
    without creating a key set on an empty store), as documented. Every command that
    writes goes through an AuthState flow."""
    settings = load_settings(env=os.environ, store=store)
    opened = await open_store(settings.store.url, clock=SystemClock(),
                              namespace=settings.store.namespace)
    try:
        return await action(settings, opened)
    finally:
        await opened.close()


@app.command("generate")
def generate(
    alg: str | None = AlgOption,
    out: Path | None = KeyOutOption,
    pem: bool = typer.Option(False, "--pem", help="With --out: PEM instead of JWK."),
    store: str | None = StoreOption,
    as_json: bool = JsonOption,
) -> None:
    """Create the store's first signing key (or a key file with --out)."""
    _check_alg(alg)
    if out is not None:
        key = SigningKey.generate(alg or DEFAULT_ALGORITHM,
                                  now=SystemClock().now())
        if pem and key.symmetric:
            raise fail("an HMAC secret has no PEM form; omit --pem", EXIT_USAGE)
        data = key.private_pem() if pem else (json.dumps(key.private_jwk(), indent=2) + "\n"
                                              ).encode()
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise fail(f"{out} exists; not overwriting a key file", EXIT_USAGE) from None
        except OSError as error:
            raise fail(f"cannot write {out}: {error.strerror}", EXIT_USAGE) from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        _print([key], as_json, f"wrote {key.alg} key {key.kid} to {out}")
        return

    # Opening the AuthState is the flow: its start creates the key set when the store has
    # none (sealed under the KEK, audited as ``key_generated``, the version bumped) and
    # loads it otherwise; --alg only chooses the first key's algorithm.
    async def action(state: AuthState) -> list[SigningKey]:
        return state.keys.all()

    keys = run(with_state(store, action, key_algorithm=alg))
    _print(keys, as_json, "signing keys")


@app.command("rotate")
def rotate(
    alg: str | None = AlgOption,
    now: bool = typer.Option(
        False, "--now", help="Emergency: the new key signs at once instead of after "
        "the pre-publication period (verifiers with a cached JWKS refuse its tokens "
        "until they refetch)."
    ),
    store: str | None = StoreOption,
    as_json: bool = JsonOption,
) -> None:
    """Publish a new key; it signs after AUTHSTATE_KEY_PREPUBLISH seconds (--now: at
    once), and the old signer then verifies until its tokens have expired."""
    _check_alg(alg)

    async def action(state: AuthState) -> list[SigningKey]:
        await state.rotate_keys(algorithm=alg, now=now)
        return state.keys.all()

    _print(run(with_state(store, action)), as_json, "signing keys after rotation")


@app.command("revoke")
def revoke(
    kid: str = typer.Argument(
        ..., help="The kid of the compromised key (one starting with '-' goes after '--')."
    ),
    store: str | None = StoreOption,
    as_json: bool = JsonOption,
) -> None:
    """Revoke a key at once: every token it signed is refused everywhere. Revoking the
    signer makes a replacement sign at once (a published key, else a new one)."""

    async def action(state: AuthState) -> tuple[list[SigningKey], str]:
        result = await state.revoke_key(kid)
        note = f"revoked {kid}"
        if result.replacement is not None:
            note += f"; {result.replacement.kid} signs from now"
        return state.keys.all(), note

    keys, note = run(with_state(store, action))
    _print(keys, as_json, note)


@app.command("generate-kek")
def generate_kek() -> None:
    """Print a new key-encryption key for AUTHSTATE_KEY_ENCRYPTION_KEY (keep it secret)."""
    typer.echo(keywrap.generate_kek())


@app.command("rewrap")
def rewrap(store: str | None = StoreOption) -> None:
    """Re-seal every stored private key under the first KEK of
    AUTHSTATE_KEY_ENCRYPTION_KEY (plain keys are sealed, keys under an older KEK listed
    after it are re-sealed). Rotate a KEK: set NEW,OLD everywhere, rewrap, drop OLD."""

    async def action(state: AuthState) -> int:
        if state.keys.wrap is None:
            raise ConfigurationError("set AUTHSTATE_KEY_ENCRYPTION_KEY (or _FILE) to the "
                                     "key-encryption key(s) first")
        return await state.rewrap_keys()

    count = run(with_state(store, action))
    console.print(f"re-sealed {count} private key(s) under the current key-encryption key")


@app.command("list")
def list_(store: str | None = StoreOption, as_json: bool = JsonOption) -> None:
    """List the keys with their state (published, signing, verify_only, retired,
    revoked) and when it next changes."""

    async def action(settings: Settings, opened: Store) -> list[SigningKey]:
        keyset = await keystore.load(
            opened, max_token_ttl=settings.tokens.access_ttl, leeway=settings.tokens.leeway,
            public_only=True,
        )
        return keyset.all()

    _print(run(_with_store(store, action)), as_json, "signing keys")


@app.command("export-jwks")
def export_jwks(
    store: str | None = StoreOption,
    out: Path | None = JwksOutOption,
) -> None:
    """Print the public JWK Set (no private member ever) for other services."""

    async def action(settings: Settings, opened: Store) -> dict[str, Any]:
        return (await keystore.load(opened, public_only=True)).public_jwks()

    document = json.dumps(run(_with_store(store, action)), indent=2) + "\n"
    if out is None:
        typer.echo(document, nl=False)
        return
    try:
        out.write_text(document)
    except OSError as error:
        raise fail(f"cannot write {out}: {error.strerror}", EXIT_USAGE) from None


def _print(keys: list[SigningKey], as_json: bool, title: str) -> None:
    now = SystemClock().now()
    rows = [_row(k, now) for k in keys]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=title)
    for column in ("kid", "alg", "state", "next change", "created_at"):
        table.add_column(column)
    for row in rows:
        upcoming = f"{row['next_state']} at {row['next_change_at']}" if row["next_state"] \
            else ""
        table.add_row(row["kid"], row["alg"], row["state"], upcoming, row["created_at"])
    console.print(table)
