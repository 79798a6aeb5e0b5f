"""Opaque access tokens: random references, hashed at rest, revoked by deletion."""

from __future__ import annotations

import json

import pytest

from authstate.clock import FrozenClock
from authstate.errors import InvalidInput
from authstate.stores import Store
from authstate.tokens.opaque import KIND, OpaqueTokens, digest, looks_like


@pytest.fixture
def tokens(store: Store, clock: FrozenClock) -> OpaqueTokens:
    return OpaqueTokens(store, clock=clock, ttl=300)


async def test_issue_and_lookup(tokens: OpaqueTokens, store: Store, clock: FrozenClock) -> None:
    token, info = await tokens.issue("alice", sid="s1", scope=("read", "write"), client_id="app")
    assert looks_like(token) and token.startswith("at_")
    found = await tokens.lookup(token)
    assert found == info
    assert found.expires_at == clock.now() + 300
    assert found.claims() == {
        "sub": "alice", "iat": int(clock.now()), "exp": int(clock.now()) + 300,
        "jti": info.jti, "sid": "s1", "scope": "read write", "client_id": "app",
    }
    record = await store.get(KIND, digest(token))
    assert record is not None and record.user_id == "alice"
    assert token not in json.dumps([(r.key, r.value) for r in await store.scan(KIND)])


async def test_expiry(tokens: OpaqueTokens, clock: FrozenClock) -> None:
    token, _ = await tokens.issue("alice", ttl=10)
    clock.advance(9)
    assert await tokens.lookup(token) is not None
    clock.advance(1)
    assert await tokens.lookup(token) is None


async def test_revocation_is_immediate(tokens: OpaqueTokens) -> None:
    a, _ = await tokens.issue("alice", sid="s1")
    b, _ = await tokens.issue("alice", sid="s2")
    c, _ = await tokens.issue("alice", sid="s1")
    d, _ = await tokens.issue("bob")
    assert (await tokens.revoke(a)) is not None
    assert await tokens.lookup(a) is None
    assert await tokens.revoke(a) is None
    assert await tokens.revoke_session("alice", "s1") == 1
    assert await tokens.lookup(c) is None and await tokens.lookup(b) is not None
    assert await tokens.revoke_user("alice") == 1
    assert await tokens.lookup(b) is None and await tokens.lookup(d) is not None


@pytest.mark.parametrize("bad", [None, 1, "", "at_", "at_" + "A" * 42, "rt_" + "A" * 43, "at_" + "A" * 500, "at_" + "é" * 43])
async def test_malformed_tokens_are_unknown(tokens: OpaqueTokens, bad: object) -> None:
    assert await tokens.lookup(bad) is None
    assert await tokens.revoke(bad) is None


async def test_input_checks(tokens: OpaqueTokens) -> None:
    with pytest.raises(InvalidInput):
        await tokens.issue("")
    with pytest.raises(InvalidInput):
        await tokens.issue("alice", ttl=0)
