"""The hybrid through the front door: session → token exchange, ending sessions and users,
reuse detection ending the session, opaque tokens and key announcements, on every store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from authstate.bus.memory import MemoryBus
from authstate.clock import FrozenClock
from authstate.config import Settings
from authstate.errors import (
    InvalidGrant,
    InvalidToken,
    RefreshReused,
    SessionNotFound,
    TokenRevoked,
)
from authstate.state import AuthState
from authstate.stores import Store


def settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {"store": "memory://", "access_token_ttl": 600, "leeway": 0,
                            "session_idle_timeout": 1800, "session_absolute_timeout": 7200}
    return Settings.from_flat(**{**base, **kw})


@pytest.fixture
async def state(store: Store, clock: FrozenClock) -> AsyncIterator[AuthState]:
    s = AuthState(settings(), store, clock=clock)
    await s.start()
    yield s
    await s.revocation.close()


async def test_push_on_memory_store_reads_on_others(state: AuthState, store: Store) -> None:
    assert state.revocation.mode == ("push" if store.url_scheme == "memory" else "store")


async def test_session_token_is_bound_and_capped(state: AuthState, clock: FrozenClock) -> None:
    _, session = await state.sessions.create("alice")
    token, claims = await state.issue_for_session(session, scope=("read",))
    assert claims["sid"] == session.sid and claims["sub"] == "alice" and claims["ver"] == 0
    assert claims["exp"] == int(clock.now()) + 600
    identity = await state.authenticate_bearer(token)
    assert (identity.user_id, identity.method, identity.sid, identity.scope) == (
        "alice", "jwt", session.sid, ("read",)
    )
    clock.advance(1790)
    _, late = await state.issue_for_session(session)
    assert late["exp"] == int(session.expires_at)
    clock.advance(11)
    with pytest.raises(SessionNotFound):
        await state.issue_for_session(session)


async def test_ending_the_session_revokes_its_tokens(state: AuthState, store: Store) -> None:
    session_id, session = await state.sessions.create("alice")
    _, other = await state.sessions.create("alice")
    token, _ = await state.issue_for_session(session)
    other_token, _ = await state.issue_for_session(other)
    pair = await state.login_tokens("alice", session)
    opaque, _ = await state.opaque.issue("alice", sid=session.sid)
    assert (await state.authenticate_bearer(pair.access_token)).sid == session.sid
    await state.sessions.revoke(session_id)
    for bearer in (token, pair.access_token, opaque):
        with pytest.raises(InvalidToken):
            await state.authenticate_bearer(bearer)
    with pytest.raises(InvalidGrant):
        await state.refresh_tokens(pair.refresh_token)
    assert (await state.authenticate_bearer(other_token)).sid == other.sid
    events = await store.query_events(type="session_revoked")
    assert len(events) == 1


async def test_revoke_user_bumps_the_version(store: Store, clock: FrozenClock) -> None:
    state = AuthState(settings(revocation_session_bound=False), store, clock=clock)
    await state.start()
    _, session = await state.sessions.create("alice")
    token, _ = await state.issue_for_session(session)
    pair = await state.login_tokens("alice", session)
    opaque, _ = await state.opaque.issue("alice")
    _, bob = await state.sessions.create("bob")
    bob_token, _ = await state.issue_for_session(bob)
    revoked = await state.revoke_user("alice", reason="compromised")
    assert (revoked.sessions, revoked.families) == (1, 1)
    for bearer in (token, pair.access_token):
        with pytest.raises(TokenRevoked):
            await state.authenticate_bearer(bearer)
    with pytest.raises(InvalidToken):
        await state.authenticate_bearer(opaque)
    with pytest.raises(InvalidGrant):
        await state.refresh_tokens(pair.refresh_token)
    assert await state.sessions.for_user("alice") == []
    assert (await state.authenticate_bearer(bob_token)).user_id == "bob"
    _, again = await state.sessions.create("alice")
    fresh, claims = await state.issue_for_session(again)
    assert claims["ver"] == 1
    assert (await state.authenticate_bearer(fresh)).user_id == "alice"
    events = await store.query_events(type="user_version_bumped")
    assert events[0].event["detail"] == {"reason": "compromised", "ver": 1}
    await state.revocation.close()


async def test_refresh_reuse_ends_the_session(state: AuthState, store: Store, clock: FrozenClock) -> None:
    session_id, session = await state.sessions.create("alice")
    first = await state.login_tokens("alice", session)
    second = await state.refresh_tokens(first.refresh_token)
    assert await state.refresh_tokens(first.refresh_token) == second
    clock.advance(11)
    with pytest.raises(RefreshReused):
        await state.refresh_tokens(first.refresh_token)
    assert await state.sessions.lookup(session_id) is None
    with pytest.raises(TokenRevoked):
        await state.authenticate_bearer(second.access_token)
    reasons = [e.event["detail"]["reason"] for e in await store.query_events(type="session_revoked")]
    assert reasons == ["refresh_reuse"]


async def test_refresh_keeps_the_version_and_scope(state: AuthState) -> None:
    _, session = await state.sessions.create("alice")
    pair = await state.login_tokens("alice", session, scope=("read", "write"), client_id="cli")
    await state.revocation.bump_version("alice")
    with pytest.raises(TokenRevoked):
        await state.authenticate_bearer(pair.access_token)
    pair = await state.refresh_tokens(pair.refresh_token)
    identity = await state.authenticate_bearer(pair.access_token)
    assert identity.claims["ver"] == 1 and identity.claims["client_id"] == "cli"
    assert identity.scope == ("read", "write")


async def test_opaque_tokens(state: AuthState, store: Store, clock: FrozenClock) -> None:
    token, info = await state.opaque.issue("alice", scope=("read",), ttl=60)
    assert token.startswith("at_") and len(token) == 46
    identity = await state.authenticate_bearer(token)
    assert (identity.method, identity.user_id, identity.scope) == ("opaque", "alice", ("read",))
    assert identity.claims["jti"] == info.jti
    assert all(token not in r.key and token not in str(r.value) for r in await store.scan("opaque"))
    clock.advance(61)
    with pytest.raises(InvalidToken):
        await state.authenticate_bearer(token)
    token, _ = await state.opaque.issue("alice")
    await state.revoke_token(token)
    with pytest.raises(InvalidToken):
        await state.authenticate_bearer(token)
    for bad in (None, 7, "at_short", "at_" + "A" * 43):
        with pytest.raises(InvalidToken):
            await state.authenticate_bearer(bad)


async def test_key_rotation_is_announced(clock: FrozenClock) -> None:
    from authstate.stores import open_store

    store = await open_store("memory://", clock=clock)
    bus = MemoryBus()
    a = AuthState(settings(), store, clock=clock, bus=bus)
    b = AuthState(settings(), store, clock=clock, bus=bus)
    await a.start()
    await b.start()
    result = await a.rotate_keys()
    async with asyncio.timeout(2):
        while result.signer.kid not in b.keys:
            await asyncio.sleep(0.01)
    token, _ = a.tokens.issue("alice", sid="s")
    assert (await b.authenticate_bearer(token)).user_id == "alice"
    await a.revocation.close()
    await b.revocation.close()
