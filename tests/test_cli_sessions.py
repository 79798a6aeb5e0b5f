"""`authstate sessions list|revoke` against a real store file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from authstate.cli import app
from authstate.config import Settings
from authstate.state import AuthState

runner = CliRunner()


def _seed(url: str) -> list[str]:
    async def go() -> list[str]:
        async with await AuthState.open(Settings.from_flat(store=url)) as state:
            ids = []
            for agent in ("phone", "laptop"):
                sid, _ = await state.sessions.create("alice", user_agent=agent, ip="198.51.100.7")
                ids.append(sid)
            await state.sessions.create("bob")
            return ids

    return asyncio.run(go())


def test_list_and_revoke_by_prefix(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    ids = _seed(url)
    listed = runner.invoke(app, ["sessions", "list", "--user", "alice", "--store", url, "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert sorted(r["user_agent"] for r in rows) == ["laptop", "phone"]
    assert all(sid not in listed.output for sid in ids), "never print a session ID"
    table = runner.invoke(app, ["sessions", "list", "--user", "alice", "--store", url])
    assert table.exit_code == 0 and "laptop" in table.output

    handle = rows[0]["handle"]
    revoked = runner.invoke(app, ["sessions", "revoke", handle[:8], "--store", url, "--json"])
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(revoked.stdout) == {"revoked": [handle]}
    after = json.loads(
        runner.invoke(app, ["sessions", "list", "--user", "alice", "--store", url, "--json"]).stdout
    )
    assert [r["handle"] for r in after] == [rows[1]["handle"]]


def test_revoke_all_of_a_user(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    _seed(url)
    result = runner.invoke(app, ["sessions", "revoke", "--user", "alice", "--store", url])
    assert result.exit_code == 0 and "revoked 2 session(s)" in result.output
    bob = runner.invoke(app, ["sessions", "list", "--user", "bob", "--store", url, "--json"])
    assert len(json.loads(bob.stdout)) == 1


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    both = runner.invoke(app, ["sessions", "revoke", "abcd", "--user", "x", "--store", url])
    assert both.exit_code == 2 and "exactly one" in both.output
    bad = runner.invoke(app, ["sessions", "revoke", "zz'; drop", "--store", url])
    assert bad.exit_code == 1 and "hex" in bad.output and "Traceback" not in bad.output
    scheme = runner.invoke(app, ["sessions", "list", "--user", "x", "--store", "bogus://"])
    assert scheme.exit_code == 1 and "accepted" in scheme.output


def test_unreachable_store_is_a_clear_error() -> None:
    result = runner.invoke(
        app, ["sessions", "list", "--user", "x", "--store", "redis://:pw-secret@127.0.0.1:1/0"]
    )
    assert result.exit_code == 1
    assert "127.0.0.1:1" in result.output and "pw-secret" not in result.output
    assert "Traceback" not in result.output
