"""Every path the issue lists leaves its audit event, read back through ``GET /admin/audit``
and through ``authstate audit`` on the same store.

The scripted scenario (``tests/web/scenario.py``) drives the HTTP API; key rotation has no
HTTP endpoint and goes through ``authstate keys rotate``.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from authstate.cli import app
from authstate.clock import FrozenClock
from authstate.config import Settings
from authstate.sessions import fingerprint
from authstate.state import AuthState
from authstate.stores import open_store
from tests.web.api import running
from tests.web.scenario import Run, issued, run_scenario

# What the scenario must leave behind, by type: each path of the issue.
SCENARIO_TYPES = {
    "login_succeeded", "login_failed", "throttle_tripped",
    "session_created", "session_rotated", "session_revoked",
    "access_token_issued", "refresh_rotated", "refresh_reuse_detected",
    "token_revoked", "user_version_bumped", "password_changed", "key_generated",
}
# Who ended a session: the user, another of their sessions, an admin, a password change,
# reuse detection, and the rest.
REVOKE_REASONS = {"logout", "user", "revoke_others", "admin", "password_change",
                  "refresh_reuse", "token_revoked", "login"}


async def api_events(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    url: str | None = "/admin/audit"
    query: dict[str, Any] | None = {"limit": 100, **params}
    while url is not None:
        response = await client.get(url, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        events += body["events"]
        url, query = body["next"], None
    return events


def cli_events(store_url: str, *args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(
        app, ["audit", "--store", store_url, "--json", "--limit", "1000", *args]
    )
    assert result.exit_code == 0, result.output
    events: list[dict[str, Any]] = json.loads(result.output)["events"]
    return events


def check_trail(run: Run, events: list[dict[str, Any]], where: str) -> None:
    assert run.alice is not None and run.admin is not None
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["type"], []).append(event)
    missing = SCENARIO_TYPES - set(by_type)
    assert not missing, f"{where}: no event for {sorted(missing)}"

    reasons = {e["detail"].get("reason") for e in by_type["session_revoked"]}
    assert reasons >= REVOKE_REASONS, f"{where}: revocations without a reason: {REVOKE_REASONS - reasons}"
    by_admin = [e for e in by_type["session_revoked"] if e["detail"].get("reason") == "admin"]
    assert by_admin and all(e["user_id"] == run.alice.id for e in by_admin)
    assert {e["actor"] for e in by_admin} == {f"user:{run.admin.id}"}, "the admin is named"

    replayed = {fingerprint(s.value) for s in issued(run, "refresh_token")}
    reuse = by_type["refresh_reuse_detected"]
    assert len(reuse) == 1 and reuse[0]["token_fp"] in replayed
    assert reuse[0]["user_id"] == run.alice.id
    access_fps = {fingerprint(s.value) for s in issued(run, "access_token")}
    assert {e["token_fp"] for e in by_type["access_token_issued"]} <= access_fps
    assert len(by_type["access_token_issued"]) >= len(access_fps)
    assert len(by_type["refresh_rotated"]) >= 6

    for event in by_type["login_failed"] + by_type["login_succeeded"] + by_type["throttle_tripped"]:
        assert event["ip"] == "127.0.0.1" and event["user_agent"], event
    assert {e["detail"]["reason"] for e in by_type["login_failed"]} == {"bad_credentials"}
    assert {e["user_id"] for e in by_type["login_failed"]} == {run.alice.id}
    tripped = by_type["throttle_tripped"]
    assert len(tripped) == 1 and tripped[0]["detail"]["scope"] == "account"
    assert tripped[0]["user_id"] == run.alice.id
    assert all(e["session"] and len(e["session"]) == 16 for e in by_type["session_created"])
    bumped = by_type["user_version_bumped"]
    assert {e["detail"].get("reason") for e in bumped} >= {"admin", "password_change"}
    assert all(e["token_fp"] is None or len(e["token_fp"]) == 8 for e in events)


async def test_every_path_is_audited_and_readable_by_api_and_cli(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'authstate.db'}"
    clock = FrozenClock(time.time())
    async with running(clock=clock, store=store_url) as api:
        run = await run_scenario(api, clock)
        assert run.admin_client is not None
        check_trail(run, await api_events(run.admin_client), "GET /admin/audit")
        only_reuse = await api_events(run.admin_client, type="refresh_reuse_detected")
        assert [e["type"] for e in only_reuse] == ["refresh_reuse_detected"]
        assert run.alice is not None
        alice = await api_events(run.admin_client, user=run.alice.id, since="1h")
        assert alice and {e["user_id"] for e in alice} == {run.alice.id}

    events = await asyncio.to_thread(cli_events, store_url)
    check_trail(run, events, "authstate audit")
    assert run.alice is not None
    mine = await asyncio.to_thread(cli_events, store_url, "--user", run.alice.id, "--type", "password_changed")
    assert len(mine) == 1 and mine[0]["actor"] == f"user:{run.alice.id}"


def test_key_rotation_is_audited(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'authstate.db'}"
    generated = CliRunner().invoke(app, ["keys", "generate", "--store", store_url])
    assert generated.exit_code == 0, generated.output
    rotated = CliRunner().invoke(app, ["keys", "rotate", "--store", store_url])
    assert rotated.exit_code == 0, rotated.output
    events = cli_events(store_url)
    types = [e["type"] for e in events]
    assert types.count("key_generated") == 1, types
    assert "key_rotated" in types
    rotation = next(e for e in events if e["type"] == "key_rotated")
    assert rotation["detail"].get("kid"), "names the new signing key"


async def test_key_lifecycle_is_audited(clock: FrozenClock) -> None:
    state = AuthState(Settings.from_flat(store="memory://", dev=True),
                      await open_store("memory://", clock=clock), clock=clock)
    await state.start()
    try:
        first = state.keys.signer.kid
        await state.rotate_keys()
        clock.advance(state.settings.tokens.access_ttl + state.settings.tokens.leeway + 3600)
        await state.rotate_keys()
        events = (await state.audit.query()).events
        kinds = [(e.type, e.detail.get("kid")) for e in reversed(events)]
        assert kinds[0] == ("key_generated", first)
        assert [k for k, _ in kinds].count("key_rotated") == 2
        assert ("key_retired", first) in kinds
    finally:
        await state.close()
