"""``authstate users show|disable|enable|delete|set-password|set-scopes|list`` against a
real SQLite store file: each is one ``AuthState`` call; an unknown email or a bad scope
name is exit 1 with a one-line message, never a traceback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from authstate.cli import app
from authstate.config import Settings
from authstate.state import AuthState
from tests.web.api import FAST_PASSWORDS, PASSWORD

runner = CliRunner()
EMAIL = "alice@example.com"


def on_state(url: str, action: Any) -> Any:
    async def go() -> Any:
        async with await AuthState.open(Settings.from_flat(store=url, **FAST_PASSWORDS)) as state:
            return await action(state)

    return asyncio.run(go())


@pytest.fixture
def url(tmp_path: Path) -> str:
    store = f"sqlite:///{tmp_path / 'a.db'}"

    async def seed(state: AuthState) -> None:
        await state.add_user("root@example.com", PASSWORD, admin=True, via="test")
        await state.add_user(EMAIL, PASSWORD, via="test")

    on_state(store, seed)
    return store


def cli(url: str, *args: str, stdin: str | None = None) -> Any:
    return runner.invoke(app, ["users", *args, "--store", url], input=stdin)


def test_show_set_scopes_and_list(url: str) -> None:
    r = cli(url, "set-scopes", EMAIL, "orders:read", "profile")
    assert r.exit_code == 0, r.output
    assert "orders:read profile" in r.output
    shown = json.loads(cli(url, "show", EMAIL, "--json").stdout)
    assert shown["scopes"] == ["orders:read", "profile"] and shown["disabled"] is False
    assert "password" not in json.dumps(shown)
    table = cli(url, "show", EMAIL)
    assert table.exit_code == 0 and "orders:read" in table.output
    assert cli(url, "set-scopes", EMAIL).exit_code == 0
    assert json.loads(cli(url, "show", EMAIL, "--json").stdout)["scopes"] == []


def test_disable_enable_and_list_marks_disabled(url: str) -> None:
    async def login(state: AuthState) -> str:
        return (await state.login(EMAIL, PASSWORD, ip=None, user_agent=None)).session_id

    session_id = on_state(url, login)
    r = cli(url, "disable", EMAIL, "--reason", "abuse [report] 7")
    assert r.exit_code == 0, r.output
    assert "ended 1 session(s)" in r.output

    async def check(state: AuthState) -> object:
        return await state.authenticate_session(session_id)

    assert on_state(url, check) is None
    rows = json.loads(cli(url, "list", "--json").stdout)
    assert {r["email"]: r["disabled"] for r in rows} == {"root@example.com": False, EMAIL: True}
    only = json.loads(cli(url, "list", "--disabled", "--json").stdout)
    assert [r["email"] for r in only] == [EMAIL]
    assert only[0]["disabled_reason"] == "abuse [report] 7"
    table = cli(url, "list", "--disabled")
    assert "DISABLED" in table.output and EMAIL in table.output
    assert "root@example.com" not in table.output

    assert cli(url, "enable", EMAIL).exit_code == 0
    assert json.loads(cli(url, "list", "--disabled", "--json").stdout) == []
    assert on_state(url, check) is None, "enabling resurrects nothing"


def test_set_password_and_delete(url: str) -> None:
    r = cli(url, "set-password", EMAIL, "--password-stdin",
            stdin="a brand new passphrase for alice\n")
    assert r.exit_code == 0, r.output

    async def login(state: AuthState) -> str:
        return (await state.login(EMAIL, "a brand new passphrase for alice", ip=None,
                                  user_agent=None)).user.id

    user_id = on_state(url, login)
    refused = cli(url, "delete", EMAIL)  # CliRunner's stdin is not a terminal
    assert refused.exit_code == 2 and "--yes" in refused.output
    r = cli(url, "delete", EMAIL, "--yes")
    assert r.exit_code == 0, r.output
    gone = cli(url, "show", EMAIL)
    assert gone.exit_code == 1 and "no user with this email address" in gone.output

    async def trail(state: AuthState) -> list[Any]:
        return list((await state.audit.query(user_id=user_id, limit=100)).events)

    events = on_state(url, trail)
    assert {"password_reset", "user_deleted"} <= {e.type for e in events}
    assert all(e.actor == "cli" for e in events if e.type in ("password_reset", "user_deleted"))


def test_errors_are_one_line_and_exit_1(url: str) -> None:
    for args in (["show", "nobody@example.com"], ["disable", "nobody@example.com"],
                 ["enable", "nobody@example.com"], ["delete", "nobody@example.com", "--yes"],
                 ["set-scopes", "nobody@example.com", "a"], ["show", "not an email"]):
        r = cli(url, *args)
        assert r.exit_code == 1, (args, r.output)
        assert "no user with this email address" in r.output
        assert "Traceback" not in r.output
    bad = cli(url, "set-scopes", EMAIL, "orders read")
    assert bad.exit_code == 1 and "scope name" in bad.output
    last = cli(url, "disable", "root@example.com")
    assert last.exit_code == 1 and "last enabled admin" in last.output
    last = cli(url, "delete", "root@example.com", "--yes")
    assert last.exit_code == 1 and "last enabled admin" in last.output
