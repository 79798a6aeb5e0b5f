"""Refresh-token rotation, the grace window, reuse detection and lifetimes, on every store."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from authstate.audit import AuditLog
from authstate.clock import FrozenClock
from authstate.errors import InvalidGrant, RefreshReused
from authstate.stores import Store
from authstate.tokens.refresh import FAMILY, KIND, Grant, RefreshTokens, TokenPair, digest
from tests.conftest import CLUSTER_BACKENDS, cluster_or_backend_store

# the flows also run on a Redis Cluster (its multi-key operations are several steps)
store = pytest.fixture(params=CLUSTER_BACKENDS)(cluster_or_backend_store)

TTL, FAMILY_TTL, GRACE = 1000, 2500, 10


class Minter:
    """Issues numbered stand-in access tokens, so a test can count what was minted."""

    def __init__(self, clock: FrozenClock) -> None:
        self.clock = clock
        self.numbers = itertools.count(1)
        self.grants: list[Grant] = []

    async def __call__(self, grant: Grant) -> tuple[str, float]:
        self.grants.append(grant)
        return f"access-{next(self.numbers)}", self.clock.now() + 600


@pytest.fixture
def reused() -> list[Grant]:
    return []


@pytest.fixture
def refresh(store: Store, clock: FrozenClock, reused: list[Grant]) -> RefreshTokens:
    async def on_reuse(grant: Grant) -> None:
        reused.append(grant)

    return RefreshTokens(
        store, mint=Minter(clock), clock=clock, ttl=TTL, family_ttl=FAMILY_TTL, grace=GRACE,
        audit=AuditLog(store, clock), on_reuse=on_reuse,
    )


async def test_rotation_spends_and_succeeds(refresh: RefreshTokens, store: Store, clock: FrozenClock) -> None:
    first = await refresh.start_family("alice", "sid-1", ("read", "write"), client_id="app")
    assert first.refresh_token.startswith("rt_") and len(first.refresh_token) == 46
    assert first.scope == ("read", "write")
    assert first.refresh_expires_at == clock.now() + TTL
    clock.advance(5)
    second = await refresh.rotate(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert second.refresh_expires_at == clock.now() + TTL
    spent = await store.get(KIND, digest(first.refresh_token))
    assert spent is not None and spent.value["spent_at"] == clock.now()
    third = await refresh.rotate(second.refresh_token)
    assert third.refresh_token not in (first.refresh_token, second.refresh_token)
    grants = refresh.mint.grants  # type: ignore[attr-defined]
    assert {g.family for g in grants} == {grants[0].family}
    assert grants[-1] == Grant("alice", "sid-1", grants[0].family, ("read", "write"), "app")
    body = third.response(clock.now())
    assert body == {
        "access_token": third.access_token, "token_type": "Bearer", "expires_in": 600,
        "refresh_token": third.refresh_token, "scope": "read write",
    }


async def test_only_digests_and_ciphertext_rest_in_the_store(refresh: RefreshTokens, store: Store) -> None:
    first = await refresh.start_family("alice", "sid-1")
    second = await refresh.rotate(first.refresh_token)
    dumped = json.dumps([(r.key, r.value) for r in await store.scan(KIND)])
    for secret in (first.refresh_token, second.refresh_token, second.access_token):
        assert secret not in dumped
        assert secret[3:] not in dumped
    spent = await store.get(KIND, digest(first.refresh_token))
    assert spent is not None and isinstance(spent.value["successor"], str)


async def test_grace_window_returns_the_same_pair(refresh: RefreshTokens, store: Store, clock: FrozenClock) -> None:
    first = await refresh.start_family("alice", "sid-1")
    second = await refresh.rotate(first.refresh_token)
    clock.advance(GRACE)
    again = await refresh.rotate(first.refresh_token)
    assert again == second
    live = [r for r in await store.scan(KIND) if "spent_at" not in r.value]
    assert [r.key for r in live] == [digest(second.refresh_token)]


async def test_reuse_after_grace_revokes_the_family(
    refresh: RefreshTokens, store: Store, clock: FrozenClock, reused: list[Grant]
) -> None:
    first = await refresh.start_family("alice", "sid-1")
    second = await refresh.rotate(first.refresh_token)
    third = await refresh.rotate(second.refresh_token)
    other = await refresh.start_family("alice", "sid-2")
    clock.advance(GRACE + 0.5)
    with pytest.raises(RefreshReused) as info:
        await refresh.rotate(first.refresh_token)
    assert info.value.code == "refresh_reused"
    assert [g.sid for g in reused] == ["sid-1"]
    for token in (third.refresh_token, second.refresh_token, first.refresh_token):
        with pytest.raises(InvalidGrant) as again:
            await refresh.rotate(token)
        assert type(again.value) is InvalidGrant
    assert await refresh.rotate(other.refresh_token)
    events = await store.query_events(type="refresh_reuse_detected")
    assert len(events) == 1 and events[0].event["user_id"] == "alice"
    assert first.refresh_token not in json.dumps(events[0].event)


async def test_reuse_of_the_newest_spent_token_also_detected(refresh: RefreshTokens, clock: FrozenClock) -> None:
    first = await refresh.start_family("alice", "sid-1")
    second = await refresh.rotate(first.refresh_token)
    await refresh.rotate(second.refresh_token)
    clock.advance(GRACE + 1)
    with pytest.raises(RefreshReused):
        await refresh.rotate(second.refresh_token)


async def test_refresh_ttl_is_enforced(refresh: RefreshTokens, clock: FrozenClock) -> None:
    first = await refresh.start_family("alice", "sid-1")
    clock.advance(TTL - 1)
    second = await refresh.rotate(first.refresh_token)
    clock.advance(TTL + 1)
    with pytest.raises(InvalidGrant):
        await refresh.rotate(second.refresh_token)


async def test_family_lifetime_is_absolute(refresh: RefreshTokens, clock: FrozenClock) -> None:
    pair = await refresh.start_family("alice", "sid-1")
    start = clock.now()
    while clock.now() + 900 < start + FAMILY_TTL:
        clock.advance(900)
        pair = await refresh.rotate(pair.refresh_token)
    assert pair.refresh_expires_at == start + FAMILY_TTL
    clock.set(start + FAMILY_TTL + 1)
    with pytest.raises(InvalidGrant):
        await refresh.rotate(pair.refresh_token)


@pytest.mark.parametrize(
    "bad",
    [None, 42, b"rt_" + b"A" * 43, "", "rt_", "rt_" + "A" * 42, "rt_" + "A" * 44, "rt_" + "A" * 9000,
     "rt_" + "Ä" * 43, "rt_" + "A" * 42 + "=", "at_" + "A" * 43, "eyJhbGciOiJub25lIn0.e30.",
     "rt_" + "B" * 43, "rt_" + "A" * 42 + "\n", "rt_../../../etc/passwd" + "A" * 21],
)
async def test_malformed_and_foreign_tokens_are_invalid_grant(refresh: RefreshTokens, bad: object) -> None:
    with pytest.raises(InvalidGrant) as info:
        await refresh.rotate(bad)
    assert type(info.value) is InvalidGrant
    assert await refresh.inspect(bad) is None
    assert await refresh.revoke(bad) is None


async def test_concurrent_refreshes_yield_one_successor(refresh: RefreshTokens, store: Store) -> None:
    first = await refresh.start_family("alice", "sid-1")
    results = await asyncio.gather(*(refresh.rotate(first.refresh_token) for _ in range(25)))
    assert all(isinstance(r, TokenPair) for r in results)
    assert len({r.refresh_token for r in results}) == 1
    assert len({r.access_token for r in results}) == 1
    records = await store.scan(KIND)
    assert len(records) == 2
    live = [r for r in records if "spent_at" not in r.value]
    assert [r.key for r in live] == [digest(results[0].refresh_token)]
    assert await refresh.rotate(results[0].refresh_token)


async def test_revoke_session_and_user(refresh: RefreshTokens, store: Store) -> None:
    a1 = await refresh.start_family("alice", "sid-1")
    a2 = await refresh.start_family("alice", "sid-2")
    b1 = await refresh.start_family("bob", "sid-3")
    assert await refresh.revoke_session("alice", "sid-1") == 1
    with pytest.raises(InvalidGrant):
        await refresh.rotate(a1.refresh_token)
    a2 = await refresh.rotate(a2.refresh_token)
    assert await refresh.revoke_user("alice") == 1
    with pytest.raises(InvalidGrant):
        await refresh.rotate(a2.refresh_token)
    assert await refresh.rotate(b1.refresh_token)
    assert [r.value["sid"] for r in await store.scan(FAMILY)] == ["sid-3"]


async def test_rfc7009_revoke_and_inspect(refresh: RefreshTokens, clock: FrozenClock) -> None:
    first = await refresh.start_family("alice", "sid-1", ("read",))
    info = await refresh.inspect(first.refresh_token)
    assert info is not None
    assert (info.grant.user_id, info.grant.sid, info.grant.scope) == ("alice", "sid-1", ("read",))
    assert info.expires_at == clock.now() + TTL
    second = await refresh.rotate(first.refresh_token)
    assert await refresh.inspect(first.refresh_token) is None
    grant = await refresh.revoke(second.refresh_token)
    assert grant is not None and grant.sid == "sid-1"
    assert await refresh.inspect(second.refresh_token) is None
    assert await refresh.revoke(second.refresh_token) is None
    with pytest.raises(InvalidGrant):
        await refresh.rotate(second.refresh_token)


async def test_grace_replay_refused_once_the_family_is_revoked(refresh: RefreshTokens) -> None:
    first = await refresh.start_family("alice", "sid-1")
    await refresh.rotate(first.refresh_token)
    await refresh.revoke_session("alice", "sid-1")
    with pytest.raises(InvalidGrant) as info:
        await refresh.rotate(first.refresh_token)
    assert type(info.value) is InvalidGrant


async def test_tampered_successor_is_not_opened(refresh: RefreshTokens, store: Store) -> None:
    first = await refresh.start_family("alice", "sid-1")
    await refresh.rotate(first.refresh_token)
    key = digest(first.refresh_token)
    record = await store.get(KIND, key)
    assert record is not None
    blob = record.value["successor"]
    flipped = blob[:20] + ("A" if blob[20] != "A" else "B") + blob[21:]
    await store.patch(KIND, key, {"successor": flipped})
    with pytest.raises(InvalidGrant) as info:
        await refresh.rotate(first.refresh_token)
    assert type(info.value) is InvalidGrant


REUSE_WINDOW = 100


@pytest.fixture
def windowed(store: Store, clock: FrozenClock, reused: list[Grant]) -> RefreshTokens:
    async def on_reuse(grant: Grant) -> None:
        reused.append(grant)

    return RefreshTokens(
        store, mint=Minter(clock), clock=clock, ttl=TTL, family_ttl=FAMILY_TTL, grace=GRACE,
        reuse_window=REUSE_WINDOW, on_reuse=on_reuse,
    )


async def test_a_spent_token_is_kept_only_for_the_reuse_window(
    windowed: RefreshTokens, store: Store, clock: FrozenClock, reused: list[Grant]
) -> None:
    """Issue 10 §4: spent records used to stay the whole refresh TTL."""
    first = await windowed.start_family("alice", "sid-1")
    second = await windowed.rotate(first.refresh_token)
    spent = await store.get(KIND, digest(first.refresh_token))
    assert spent is not None and spent.expires_at == clock.now() + REUSE_WINDOW
    clock.advance(REUSE_WINDOW - 1)
    with pytest.raises(RefreshReused):  # inside the window: theft, the family ends
        await windowed.rotate(first.refresh_token)
    assert [g.family for g in reused] == [Grant.from_value(spent.value).family]
    with pytest.raises(InvalidGrant):
        await windowed.rotate(second.refresh_token)


async def test_after_the_reuse_window_a_spent_token_is_just_unknown(
    windowed: RefreshTokens, store: Store, clock: FrozenClock, reused: list[Grant]
) -> None:
    first = await windowed.start_family("alice", "sid-1")
    second = await windowed.rotate(first.refresh_token)
    clock.advance(REUSE_WINDOW + 1)
    assert await store.get(KIND, digest(first.refresh_token)) is None
    with pytest.raises(InvalidGrant) as refused:
        await windowed.rotate(first.refresh_token)
    assert not isinstance(refused.value, RefreshReused)
    assert reused == []  # what the window gives up: the family is not revoked
    third = await windowed.rotate(second.refresh_token)
    assert third.refresh_token not in (first.refresh_token, second.refresh_token)


def test_reuse_window_may_not_be_shorter_than_grace(store: Store, clock: FrozenClock) -> None:
    with pytest.raises(ValueError, match="reuse_window"):
        RefreshTokens(store, mint=Minter(clock), clock=clock, grace=10, reuse_window=5)
