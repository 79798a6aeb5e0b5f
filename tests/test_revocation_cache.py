"""The verified-token cache only ever holds tokens that passed the revocation check, so a
cache hit can skip it: revoked tokens stay rejected on every repeat, however they were
revoked and whenever they were first seen."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from authstate import AuthState, Settings
from authstate.clock import FrozenClock
from authstate.errors import TokenRevoked


@pytest.fixture
async def state(clock: FrozenClock) -> AsyncIterator[AuthState]:
    st = await AuthState.open(Settings.from_flat(store="memory://"), clock=clock)
    assert st.revocation.local, "memory store runs with the in-process bus: push mode"
    try:
        yield st
    finally:
        await st.close()


async def _token(state: AuthState, user: str = "alice") -> tuple[str, str]:
    session_id, session = await state.sessions.create(user)
    token, _ = await state.issue_for_session(session)
    return session_id, token


async def test_repeat_hits_skip_the_check_but_revocation_evicts(state: AuthState) -> None:
    _, token = await _token(state)
    await state.authenticate_bearer(token)
    assert state.tokens.cache is not None
    hits = state.tokens.cache.hits
    await state.authenticate_bearer(token)
    assert state.tokens.cache.hits == hits + 1
    await state.revoke_token(token)
    for _ in range(3):
        with pytest.raises(TokenRevoked):
            await state.authenticate_bearer(token)


async def test_token_first_seen_after_a_version_bump_is_never_cached(state: AuthState) -> None:
    _, token = await _token(state)
    await state.revoke_user("alice")
    for _ in range(3):
        with pytest.raises(TokenRevoked):
            await state.authenticate_bearer(token)


async def test_token_first_seen_after_its_session_ended_stays_rejected(state: AuthState) -> None:
    session_id, token = await _token(state)
    await state.sessions.revoke(session_id, reason="logout")
    for _ in range(3):
        with pytest.raises(TokenRevoked):
            await state.authenticate_bearer(token)


async def test_outside_push_mode_every_request_checks_the_store(state: AuthState) -> None:
    _, token = await _token(state)
    state.revocation.bus_lost(ConnectionError("test: the bus went away"))
    assert not state.revocation.local
    await state.authenticate_bearer(token)
    claims = state.tokens.verify(token)
    await state.revocation.revoke_jti(claims["jti"], float(claims["exp"]))
    with pytest.raises(TokenRevoked):
        await state.authenticate_bearer(token)


async def test_entries_cached_outside_push_mode_are_forgotten_on_return(
    state: AuthState,
) -> None:
    _, token = await _token(state)
    state.revocation.bus_lost(ConnectionError("test: the bus went away"))
    await state.revoke_user("alice")
    with pytest.raises(TokenRevoked):
        await state.authenticate_bearer(token)
    assert state.tokens.cache is not None and len(state.tokens.cache) == 1, (
        "verified and cached before the store check rejected it"
    )
    await state.revocation.bus_connected()
    assert state.revocation.local
    for _ in range(2):
        with pytest.raises(TokenRevoked):
            await state.authenticate_bearer(token)


async def test_resync_forgets_every_cached_verification(state: AuthState) -> None:
    _, token = await _token(state)
    await state.authenticate_bearer(token)
    assert state.tokens.cache is not None
    hits = state.tokens.cache.hits
    await state.revocation.resync()
    await state.authenticate_bearer(token)
    assert state.tokens.cache.hits == hits, "the first verify after a resync is a miss"


async def test_the_wiring_is_explicit_at_construction(clock: FrozenClock) -> None:
    """Without AuthState: the revocation copy is given the cache it evicts from, and the
    access tokens the copy they check against; nothing is attached afterwards."""
    from authstate.bus.memory import MemoryBus
    from authstate.keystore import KeySet
    from authstate.revocation import Revocations
    from authstate.stores import open_store
    from authstate.tokens.access import AccessTokens, VerifiedTokenCache

    store = await open_store("memory://", clock=clock)
    cache = VerifiedTokenCache()
    revocation = Revocations(store, clock=clock, lifetime=630, leeway=30, bus=MemoryBus(),
                             cache=cache)
    tokens = AccessTokens(KeySet.generate("EdDSA", now=clock.now()), issuer="https://as.example",
                          audience="api", clock=clock, cache=cache, revocation=revocation)
    try:
        await revocation.start()
        assert revocation.local and tokens.cache is cache
        token, claims = tokens.issue("alice", sid="s1")
        tokens.verify(token)
        assert len(cache) == 1
        await revocation.revoke_sid("s1")  # the event evicts the cached verification
        assert len(cache) == 0
        for _ in range(2):  # checked before caching: refused, and never cached
            with pytest.raises(TokenRevoked):
                tokens.verify(token)
        assert len(cache) == 0
    finally:
        await revocation.close()
        await store.close()
