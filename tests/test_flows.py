"""The flows of the front door, called directly on ``AuthState`` over every store: what the
HTTP routes, the pages and the CLI translate to, so each rule is pinned once, here.

Login (throttle, password, session with a fresh CSRF token, audit), the password grant
sharing its check, logout, password change ending everything else, and revoke-user
doing its work once and counting both sessions and refresh families.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from authstate import csrf
from authstate import sessions as sessions_module
from authstate.audit import AuditEvent
from authstate.clock import FrozenClock
from authstate.errors import AuthenticationFailed, InvalidGrant, InvalidToken, Throttled
from authstate.state import AuthState
from authstate.stores import Store
from authstate.tokens import refresh as refresh_module
from tests.web.api import PASSWORD, api_settings

NEW_PASSWORD = "a brand new passphrase for gina"
IP, AGENT = "198.51.100.7", "flows-test/1.0"


class CountingStore:
    """The test's real store, counting each ``delete_by_user`` by record kind: how a test
    sees that a bulk revocation ran once, not twice (the rest passes straight through)."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.bulk_deletes: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def delete_by_user(self, kind: str, user_id: str, **kw: Any) -> Any:
        self.bulk_deletes[kind] += 1
        return await self._inner.delete_by_user(kind, user_id, **kw)


@pytest.fixture
async def state(store: Store, clock: FrozenClock) -> AsyncIterator[AuthState]:
    clock.set(15 * 60 * 2_000_000)  # the start of a throttle window: no window ends mid-test
    s = AuthState(api_settings(), store, clock=clock)
    await s.start()
    yield s
    await s.revocation.close()  # the store fixture closes the store


async def trail(state: AuthState) -> list[AuditEvent]:
    """Every audit event but the key set's (made at start), oldest first."""
    events = reversed((await state.audit.query(limit=1000)).events)
    return [e for e in events if not e.type.startswith("key_")]


def assert_no_secret(events: list[AuditEvent], *secrets: str) -> None:
    text = json.dumps([repr(e) for e in events])
    for secret in secrets:
        assert secret not in text


async def test_login_leaves_the_whole_audit_trail(state: AuthState) -> None:
    user = await state.add_user("gina@example.com", PASSWORD, via="test")
    old_id, old = await state.sessions.create(user.id)
    with pytest.raises(AuthenticationFailed):
        await state.login("gina@example.com", "not the password", ip=IP, user_agent=AGENT)

    result = await state.login("Gina@Example.com ", PASSWORD, ip=IP, user_agent=AGENT,
                               previous_session_id=old_id)

    assert result.user.id == user.id
    assert csrf.csrf_token_for(result.session) == result.csrf_token
    assert csrf.tokens_match(result.csrf_token, csrf.csrf_token_for(result.session))
    assert len(result.csrf_token) == 43
    identity = await state.authenticate_session(result.session_id)
    assert identity is not None and identity.user_id == user.id
    assert await state.authenticate_session(old_id) is None, "the old ID is revoked, not upgraded"

    events = await trail(state)
    assert [e.type for e in events] == [
        "user_created", "login_failed", "session_created",
        "session_revoked", "session_rotated", "login_succeeded",
    ]
    failed = events[1]
    assert failed.user_id == user.id and failed.ip == IP and failed.user_agent == AGENT
    assert failed.detail["reason"] == "bad_credentials" and failed.detail["via"] == "session"
    assert events[3].detail == {"reason": "login"} and events[3].session == old.handle
    rotated = events[4]
    assert rotated.detail == {"previous": old.handle, "reason": "login"}
    assert events[-1].session == result.session.handle and events[-1].actor == f"user:{user.id}"
    assert_no_secret(events, PASSWORD, "not the password", result.session_id, old_id,
                     result.csrf_token)


async def test_password_grant_shares_the_throttle_and_the_audit_with_login(
    state: AuthState,
) -> None:
    user = await state.add_user("gina@example.com", PASSWORD, via="test")
    limit = state.throttle.account_limit
    for n in range(limit - 1):
        with pytest.raises(AuthenticationFailed):
            await state.login("gina@example.com", f"wrong {n}", ip=IP, user_agent=AGENT)
    with pytest.raises(AuthenticationFailed):  # the last slot, taken by the other flow
        await state.password_grant("gina@example.com", "wrong grant", ip=IP, user_agent=AGENT)
    with pytest.raises(Throttled):
        await state.password_grant("gina@example.com", PASSWORD, ip=IP, user_agent=AGENT)
    with pytest.raises(Throttled):
        await state.login("gina@example.com", PASSWORD, ip=IP, user_agent=AGENT)

    events = await trail(state)
    failed = [e for e in events if e.type == "login_failed"]
    assert [e.detail["via"] for e in failed] == ["session"] * (limit - 1) + ["password_grant"]
    tripped = [e for e in events if e.type == "throttle_tripped"]
    assert len(tripped) == 1 and tripped[0].detail["scope"] == "account"
    assert tripped[0].user_id == user.id


async def test_password_grant_issues_a_bound_pair_and_audits_it(state: AuthState) -> None:
    user = await state.add_user("gina@example.com", PASSWORD, via="test")
    pair = await state.password_grant("gina@example.com", PASSWORD, ip=IP, user_agent=AGENT)
    identity = await state.authenticate_bearer(pair.access_token)
    assert identity.user_id == user.id and identity.sid is not None
    (session,) = await state.sessions.for_user(user.id)
    assert session.sid == identity.sid and csrf.csrf_token_for(session) is None
    rotated = await state.refresh_tokens(pair.refresh_token)
    assert (await state.authenticate_bearer(rotated.access_token)).sid == session.sid

    events = {e.type: e for e in await trail(state)}
    for kind in ("session_created", "login_succeeded"):
        assert events[kind].detail == {"via": "password_grant"}, kind
        assert events[kind].session == session.handle and events[kind].ip == IP
    assert_no_secret(list(events.values()), PASSWORD, pair.access_token, pair.refresh_token)


async def test_logout_by_bearer_ends_the_token_and_its_session(state: AuthState) -> None:
    await state.add_user("gina@example.com", PASSWORD, via="test")
    pair = await state.password_grant("gina@example.com", PASSWORD, ip=IP, user_agent=AGENT)
    identity = await state.authenticate_bearer(pair.access_token)
    await state.logout(token=pair.access_token, identity=identity)
    with pytest.raises(InvalidToken):
        await state.authenticate_bearer(pair.access_token)
    with pytest.raises(InvalidGrant):
        await state.refresh_tokens(pair.refresh_token)
    assert await state.sessions.for_user(identity.user_id) == []

    result = await state.login("gina@example.com", PASSWORD, ip=IP, user_agent=AGENT)
    await state.logout(session_id=result.session_id)
    assert await state.authenticate_session(result.session_id) is None
    reasons = [e.detail["reason"] for e in await trail(state) if e.type == "session_revoked"]
    assert reasons == ["logout", "logout"]


async def test_change_password_ends_every_other_session_family_and_token(
    state: AuthState,
) -> None:
    user = await state.add_user("gina@example.com", PASSWORD, via="test")
    here = await state.login("gina@example.com", PASSWORD, ip=IP, user_agent=AGENT)
    there = await state.login("gina@example.com", PASSWORD, ip=IP, user_agent=AGENT)
    here_pair = await state.login_tokens(user.id, here.session)
    there_pair = await state.login_tokens(user.id, there.session)
    here_jwt, _ = await state.issue_for_session(here.session)
    opaque, _ = await state.opaque.issue(user.id, sid=here.session.sid)

    with pytest.raises(AuthenticationFailed):
        await state.change_password(user.id, "not the password", NEW_PASSWORD,
                                    session_id=here.session_id)
    assert await state.authenticate_session(there.session_id) is not None, "nothing changed"

    changed = await state.change_password(user.id, PASSWORD, NEW_PASSWORD,
                                          session_id=here.session_id, ip=IP, user_agent=AGENT)

    assert changed.session_id is not None and changed.session is not None
    assert changed.session_id != here.session_id
    assert changed.session.handle != here.session.handle
    kept = await state.authenticate_session(changed.session_id)
    assert kept is not None and kept.sid == here.session.sid, "the same session, a new ID"
    assert csrf.csrf_token_for(changed.session) == here.csrf_token
    for ended in (here.session_id, there.session_id):
        assert await state.authenticate_session(ended) is None
    for pair in (here_pair, there_pair):
        with pytest.raises(InvalidGrant):
            await state.refresh_tokens(pair.refresh_token)
    for bearer in (here_jwt, here_pair.access_token, there_pair.access_token, opaque):
        with pytest.raises(InvalidToken):
            await state.authenticate_bearer(bearer)
    with pytest.raises(AuthenticationFailed):
        await state.login("gina@example.com", PASSWORD, ip=IP, user_agent=AGENT)
    assert (await state.login("gina@example.com", NEW_PASSWORD, ip=IP, user_agent=AGENT)).user

    events = await trail(state)
    kinds = [e.type for e in events]
    assert kinds.count("password_changed") == 1
    rotated = [e for e in events if e.type == "session_rotated"]
    assert [e.detail for e in rotated] == [{"reason": "password_change"}]
    assert rotated[0].session == changed.session.handle
    revoked = [e for e in events if e.type == "session_revoked"]
    assert [(e.session, e.detail["reason"]) for e in revoked] == [
        (there.session.handle, "password_change")
    ]
    assert_no_secret(events, PASSWORD, NEW_PASSWORD, changed.session_id, here.session_id)


async def test_change_password_by_a_bearer_caller_ends_every_session(state: AuthState) -> None:
    user = await state.add_user("gina@example.com", PASSWORD, via="test")
    first = await state.login("gina@example.com", PASSWORD, ip=IP, user_agent=AGENT)
    changed = await state.change_password(user.id, PASSWORD, NEW_PASSWORD)
    assert changed.session_id is None and changed.session is None
    assert await state.authenticate_session(first.session_id) is None


async def test_revoke_user_runs_once_and_counts_sessions_and_families(
    store: Store, clock: FrozenClock
) -> None:
    counting = CountingStore(store)
    state = AuthState(api_settings(), cast(Store, counting), clock=clock)
    await state.start()
    try:
        _, one = await state.sessions.create("alice")
        _, two = await state.sessions.create("alice")
        families = [await state.login_tokens("alice", s) for s in (one, two, one)]
        _, bob = await state.sessions.create("bob")
        bob_pair = await state.login_tokens("bob", bob)
        counting.bulk_deletes.clear()

        revoked = await state.revoke_user("alice", reason="admin")

        assert (revoked.sessions, revoked.families) == (2, 3)
        assert counting.bulk_deletes[refresh_module.FAMILY] == 1, "families revoked once"
        assert counting.bulk_deletes[sessions_module.KIND] == 1, "sessions ended once"
        for pair in families:
            with pytest.raises(InvalidGrant):
                await state.refresh_tokens(pair.refresh_token)
        assert (await state.refresh_tokens(bob_pair.refresh_token)).access_token
        events = await trail(state)
        bumped = [e for e in events if e.type == "user_version_bumped"]
        assert len(bumped) == 1 and bumped[0].detail["reason"] == "admin"
        ended = [e for e in events if e.type == "session_revoked"]
        assert sorted(e.session or "" for e in ended) == sorted([one.handle, two.handle])

        again = await state.revoke_user("alice", reason="admin")
        assert (again.sessions, again.families) == (0, 0)
    finally:
        await state.revocation.close()


async def test_end_sessions_keeps_the_callers_own(state: AuthState) -> None:
    _, one = await state.sessions.create("alice")
    two_id, two = await state.sessions.create("alice")
    _, three = await state.sessions.create("alice")
    by_cookie = await state.end_sessions("alice", reason="revoke_others", keep_session_id=two_id)
    assert {s.handle for s in by_cookie} == {one.handle, three.handle}
    _, four = await state.sessions.create("alice")
    by_bearer = await state.end_sessions("alice", reason="revoke_others", keep_sid=two.sid)
    assert [s.handle for s in by_bearer] == [four.handle]
    assert [s.handle for s in await state.sessions.for_user("alice")] == [two.handle]
    assert await state.end_session("alice", "not-a-handle") is None
    assert await state.end_session("bob", two.handle) is None, "another user's session"
    assert (await state.end_session("alice", two.handle)) is not None


async def test_add_user_and_add_client_are_audited(state: AuthState) -> None:
    user = await state.add_user("root@example.com", PASSWORD, admin=True, via="cli")
    client, secret = await state.add_client("reporting")
    assert await state.clients.authenticate(client.id, secret) is not None
    events = {e.type: e for e in await trail(state)}
    assert events["user_created"].user_id == user.id
    assert events["user_created"].detail == {"admin": True, "via": "cli"}
    assert events["client_created"].detail == {"client_id": client.id, "name": "reporting"}
    assert_no_secret(list(events.values()), PASSWORD, secret)


def test_the_front_door_imports_no_web_layer() -> None:
    """The flows live in the core: importing it loads neither ``authstate.web`` nor
    FastAPI (run in a fresh interpreter, so no other test's imports count)."""
    code = (
        "import sys, authstate.state, authstate.csrf; "
        "bad = sorted(m for m in sys.modules if m.startswith(('authstate.web', 'fastapi'))); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
