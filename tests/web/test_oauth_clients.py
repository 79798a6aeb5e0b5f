"""OAuth clients: `authstate clients add|list|remove|rotate-secret` on a real store file,
redirect URI rules, records from before these fields, and users' allowed scopes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from authstate.cli import app
from authstate.clients import Clients, check_redirect_uri
from authstate.clock import FrozenClock
from authstate.errors import InvalidInput, InvalidScope, NotFound
from authstate.stores import Store
from tests.web.api import running

runner = CliRunner()


def test_clients_cli_add_list_rotate_remove(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    added = runner.invoke(app, [
        "clients", "add", "shop", "--redirect-uri", "https://shop.example/cb",
        "--redirect-uri", "http://127.0.0.1:8765/cb", "--scope", "orders:read",
        "--first-party", "--backchannel-logout-uri", "https://shop.example/logout",
        "--store", url, "--json"])
    assert added.exit_code == 0, added.output
    shop = json.loads(added.stdout)
    assert shop["grant_types"] == ["authorization_code", "refresh_token"]
    assert shop["first_party"] is True and shop["public"] is False
    assert shop["scopes"] == ["orders:read"] and len(shop["client_secret"]) >= 43
    spa = json.loads(runner.invoke(app, [
        "clients", "add", "spa", "--public", "--redirect-uri", "https://spa.example/",
        "--store", url, "--json"]).stdout)
    assert spa["client_secret"] is None and spa["public"] is True

    listed = runner.invoke(app, ["clients", "list", "--store", url, "--json"])
    rows = json.loads(listed.stdout)
    assert [r["name"] for r in rows] == ["shop", "spa"]
    assert shop["client_secret"] not in listed.output
    assert "shop" in runner.invoke(app, ["clients", "list", "--store", url]).output  # the table

    rotated = runner.invoke(app, ["clients", "rotate-secret", shop["client_id"], "--store", url, "--json"])
    assert rotated.exit_code == 0
    assert json.loads(rotated.stdout)["client_secret"] != shop["client_secret"]
    public_rotate = runner.invoke(app, ["clients", "rotate-secret", spa["client_id"], "--store", url])
    assert public_rotate.exit_code == 1 and "no secret" in public_rotate.output

    bad = runner.invoke(app, ["clients", "add", "evil", "--redirect-uri", "https://*.example/cb", "--store", url])
    assert bad.exit_code == 1 and "wildcards" in bad.output
    removed = runner.invoke(app, ["clients", "remove", shop["client_id"], "--store", url])
    assert removed.exit_code == 0
    again = runner.invoke(app, ["clients", "remove", shop["client_id"], "--store", url])
    assert again.exit_code == 1 and "no such client" in again.output


@pytest.mark.parametrize("uri", [
    "http://app.example/cb",  # plain http off loopback
    "https://app.example/cb#frag", "https://*.example/cb", "https://app.example/c b",
    "javascript:alert(1)", "https://user@app.example/cb", "/relative", "",
    "com.example.app:/cb",
])
def test_redirect_uris_refused(uri: str) -> None:
    with pytest.raises(InvalidInput):
        check_redirect_uri(uri)


@pytest.mark.parametrize("uri", [
    "https://app.example/cb", "https://app.example/cb?tenant=1", "http://127.0.0.1:9000/cb",
    "http://[::1]/cb", "http://localhost:3000/",
])
def test_redirect_uris_accepted(uri: str) -> None:
    assert check_redirect_uri(uri) == uri


async def test_a_record_from_before_still_introspects(store: Store, clock: FrozenClock) -> None:
    clients = Clients(store, clock=clock)
    old_style = {"name": "gateway", "created_at": clock.now(),
                 "secret_sha256": __import__("hashlib").sha256(b"s3cret").hexdigest()}
    await store.put("client", "c_AAAAAAAAAAAAAAAA", old_style)
    client = await clients.authenticate("c_AAAAAAAAAAAAAAAA", "s3cret")
    assert client is not None and not client.public and client.grant_types == ()
    assert client.redirect_uris == () and client.scopes == ()


async def test_public_clients_never_authenticate_with_a_secret(store: Store, clock: FrozenClock) -> None:
    clients = Clients(store, clock=clock)
    spa, secret = await clients.create("spa", public=True, redirect_uris=("https://spa.example/",))
    assert secret is None
    assert await clients.authenticate(spa.id, "") is None
    with pytest.raises(InvalidInput):
        await clients.create("x", grant_types=("authorization_code",))  # needs a redirect URI
    with pytest.raises(InvalidInput):
        await clients.create("x", redirect_uris=("https://a.example/",), grant_types=("implicit",))
    with pytest.raises(InvalidScope):
        await clients.create("x", scopes=("bad scope!",))


async def test_user_scopes_are_validated_and_kept_sorted() -> None:
    async with running() as api:
        user = await api.add_user("bob@example.com")
        assert user.scopes == ()
        updated = await api.state.users.set_scopes(user.id, ["orders:write", "orders:read", "orders:read"])
        assert updated.scopes == ("orders:read", "orders:write")
        record = await api.state.store.get("user", user.id)
        assert record is not None and record.value["scopes"] == ["orders:read", "orders:write"]
        with pytest.raises(InvalidScope):
            await api.state.users.set_scopes(user.id, ["white space"])
        with pytest.raises(NotFound):
            await api.state.users.set_scopes("u_AAAAAAAAAAAAAAAA", ["a"])
