"""``authstate audit``: the trail read back from the command line, against a real store."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from authstate.audit import AuditLog
from authstate.cli import app
from authstate.clock import FrozenClock
from authstate.config import Settings
from authstate.sessions import fingerprint
from authstate.state import AuthState
from authstate.stores import open_store

DAY = 86400
TOKEN = secrets.token_urlsafe(32)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'authstate.db'}"

    async def record() -> None:
        await (await AuthState.open(Settings.from_flat(store=url))).close()  # the first key: key_generated
        store = await open_store(url)
        old = AuditLog(store, FrozenClock(time.time() - 3 * DAY))
        await old.record("login_failed", user_id="u_alice", ip="198.51.100.4",
                         detail={"reason": "bad_password"})
        now = AuditLog(store, FrozenClock(time.time()))
        await now.record("login_succeeded", actor="user:u_alice", user_id="u_alice",
                         session="0123456789abcdef", ip="198.51.100.4", user_agent="curl/8")
        await now.record("access_token_issued", user_id="u_alice", token=TOKEN)
        await now.record("session_revoked", actor="admin:u_root", user_id="u_bob",
                         session="fedcba9876543210", detail={"reason": "admin"})
        await store.close()

    asyncio.run(record())
    return url


def audit(*args: str) -> Any:
    result = CliRunner().invoke(app, ["audit", *args])
    assert result.exit_code == 0, result.output
    return result


def events(*args: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(audit(*args, "--json").output)
    return body


def test_lists_newest_first_as_json(store_url: str) -> None:
    body = events("--store", store_url)
    assert [e["type"] for e in body["events"]] == [
        "session_revoked", "access_token_issued", "login_succeeded", "login_failed",
        "key_generated",
    ]
    assert body["next_before"] is None
    issued = body["events"][1]
    assert issued["token_fp"] == fingerprint(TOKEN)
    assert issued["time"].endswith("+00:00") and issued["id"]
    revoked = body["events"][0]
    assert (revoked["actor"], revoked["user_id"], revoked["detail"]) == (
        "admin:u_root", "u_bob", {"reason": "admin"}
    )


def test_filters(store_url: str) -> None:
    alice = events("--store", store_url, "--user", "u_alice")
    assert {e["user_id"] for e in alice["events"]} == {"u_alice"} and len(alice["events"]) == 3
    failed = events("--store", store_url, "--type", "login_failed")
    assert [e["detail"] for e in failed["events"]] == [{"reason": "bad_password"}]
    recent = events("--store", store_url, "--since", "1d")
    assert "login_failed" not in {e["type"] for e in recent["events"]}
    assert len(recent["events"]) == 4
    both = events("--store", store_url, "--user", "u_alice", "--type", "login_succeeded", "--since", "2h")
    assert [e["session"] for e in both["events"]] == ["0123456789abcdef"]


def test_pages(store_url: str) -> None:
    first = events("--store", store_url, "--limit", "3")
    assert len(first["events"]) == 3 and first["next_before"] == first["events"][-1]["id"]
    rest = events("--store", store_url, "--limit", "3", "--before", first["next_before"])
    assert [e["type"] for e in rest["events"]] == ["login_failed", "key_generated"]
    assert rest["next_before"] is None


def test_table_output(store_url: str) -> None:
    result = CliRunner().invoke(app, ["audit", "--store", store_url, "--limit", "2"],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "session_revoked" in result.output and "access_token_issued" in result.output
    assert "login_failed" not in result.output
    assert "more: add --before" in result.output
    assert TOKEN not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--type", "nope"], "unknown event type"),
        (["--since", "yesterday"], "since must be"),
        (["--before", "not-a-cursor"], "before must be"),
    ],
)
def test_bad_input_is_a_usage_error(store_url: str, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["audit", "--store", store_url, *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
