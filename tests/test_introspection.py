"""RFC 7662 introspection and RFC 7009 revocation semantics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from authstate.clock import FrozenClock
from authstate.config import Settings
from authstate.errors import InvalidGrant, InvalidToken
from authstate.jose.jwk import SigningKey
from authstate.keystore import KeySet
from authstate.state import AuthState
from authstate.stores import Store
from authstate.tokens.access import AccessTokens

INACTIVE = {"active": False}


@pytest.fixture
async def state(store: Store, clock: FrozenClock) -> AsyncIterator[AuthState]:
    s = AuthState(Settings.from_flat(store="memory://", leeway=0, issuer="https://as.example"), store, clock=clock)
    await s.start()
    yield s
    await s.revocation.close()


async def test_valid_tokens_show_their_claims(state: AuthState, clock: FrozenClock) -> None:
    _, session = await state.sessions.create("alice")
    jwt, claims = await state.issue_for_session(session, scope=("read",))
    body = await state.introspect(jwt, "access_token")
    assert body == {**claims, "active": True, "token_type": "Bearer"}
    assert body["scope"] == "read" and body["sid"] == session.sid

    pair = await state.login_tokens("alice", session, scope=("read",), client_id="app")
    body = await state.introspect(pair.refresh_token, "refresh_token")
    assert body == {
        # issue 12: no token_type, which RFC 7662 §2.2 reserves for the access token type
        "active": True, "iss": "https://as.example",
        "sub": "alice", "sid": session.sid, "iat": int(clock.now()),
        "exp": int(pair.refresh_expires_at), "scope": "read", "client_id": "app",
    }

    opaque, info = await state.opaque.issue("alice", scope=("read",), sid=session.sid)
    body = await state.introspect(opaque, "refresh_token")  # a wrong hint is ignored
    assert body == {"active": True, "token_type": "Bearer", "iss": "https://as.example",
                    "aud": "authstate", **info.claims()}


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token", "bogus", 7])
async def test_anything_not_valid_is_just_inactive(state: AuthState, clock: FrozenClock, hint: Any) -> None:
    _, session = await state.sessions.create("alice")
    expired, _ = await state.issue_for_session(session)
    pair = await state.login_tokens("alice", session)
    spent = pair.refresh_token
    await state.refresh_tokens(spent)
    revoked, _ = await state.issue_for_session(session)
    await state.revoke_token(revoked)
    foreign_keys = KeySet([SigningKey.generate("EdDSA", now=clock.now())])
    foreign = AccessTokens(foreign_keys, issuer="https://as.example", audience="authstate",
                           clock=clock).issue("alice")[0]
    opaque, _ = await state.opaque.issue("alice", ttl=5)
    clock.advance(601)
    for token in (None, 42, "", "garbage", "a.b.c", "rt_" + "A" * 43, "at_" + "A" * 43,
                  expired, spent, revoked, foreign, opaque, "x" * 100_000, ["list"]):
        assert await state.introspect(token, hint) == INACTIVE


async def test_revocation_of_unknown_tokens_succeeds(state: AuthState, store: Store) -> None:
    for token in (None, "", "junk", "a.b.c", "rt_" + "A" * 43, "at_" + "A" * 43, "x" * 10_000):
        await state.revoke_token(token, "access_token")
    assert await store.query_events(type="token_revoked") == []


async def test_revoking_an_access_token(state: AuthState, store: Store) -> None:
    _, session = await state.sessions.create("alice")
    token, claims = await state.issue_for_session(session)
    other, _ = await state.issue_for_session(session)
    await state.revoke_token(token, "refresh_token")
    assert await state.introspect(token) == INACTIVE
    with pytest.raises(InvalidToken):
        await state.authenticate_bearer(token)
    assert (await state.introspect(other))["active"] is True
    event = (await store.query_events(type="token_revoked"))[0].event
    assert event["detail"] == {"type": "access_token"} and token not in str(event)


async def test_revoking_a_refresh_token_ends_its_grant(state: AuthState) -> None:
    session_id, session = await state.sessions.create("alice")
    pair = await state.login_tokens("alice", session)
    await state.revoke_token(pair.refresh_token)
    assert await state.introspect(pair.refresh_token) == INACTIVE
    assert await state.introspect(pair.access_token) == INACTIVE
    with pytest.raises(InvalidGrant):
        await state.refresh_tokens(pair.refresh_token)
    assert await state.sessions.lookup(session_id) is None
