"""A store outage during refresh fails closed and loses nothing (throwaway redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from authstate.clock import FrozenClock
from authstate.errors import StoreUnavailable
from authstate.stores import Store, open_store
from authstate.tokens.refresh import KIND, Grant, RefreshTokens
from tests.support import RedisServer

pytestmark = pytest.mark.usefixtures("redis_server")


@pytest.fixture
async def outage_store(redis_server: RedisServer, clock: FrozenClock) -> AsyncIterator[Store]:
    s = await open_store(redis_server.url, clock=clock, namespace="refresh")
    try:
        yield s
    finally:
        await s.close()


def refresher(store: Store, clock: FrozenClock, on_mint: list[object]) -> RefreshTokens:
    async def mint(grant: Grant) -> tuple[str, float]:
        for action in on_mint:
            action()  # type: ignore[operator]
        return "access", clock.now() + 600

    return RefreshTokens(store, mint=mint, clock=clock, ttl=1000, family_ttl=2000, grace=10)


async def test_outage_before_rotation_changes_nothing(
    redis_server: RedisServer, outage_store: Store, clock: FrozenClock
) -> None:
    refresh = refresher(outage_store, clock, [])
    pair = await refresh.start_family("alice", "sid-1")
    redis_server.pause()
    try:
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(refresh.rotate(pair.refresh_token), 10)
    finally:
        redis_server.resume()
    successor = await refresh.rotate(pair.refresh_token)
    assert successor.refresh_token != pair.refresh_token
    live = [r for r in await outage_store.scan(KIND) if "spent_at" not in r.value]
    assert len(live) == 1


async def test_outage_during_the_commit_is_recoverable(
    redis_server: RedisServer, outage_store: Store, clock: FrozenClock
) -> None:
    """The server stalls just before the spend: the client sees an error, and whether or
    not the rotation committed, presenting the old token again yields one successor."""
    actions: list[object] = []
    refresh = refresher(outage_store, clock, actions)
    pair = await refresh.start_family("alice", "sid-1")
    actions.append(redis_server.pause)
    try:
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(refresh.rotate(pair.refresh_token), 10)
    finally:
        actions.clear()
        redis_server.resume()
    first = await refresh.rotate(pair.refresh_token)
    again = await refresh.rotate(pair.refresh_token)
    assert again == first
    live = [r for r in await outage_store.scan(KIND) if "spent_at" not in r.value]
    assert len(live) == 1
    assert await refresh.rotate(first.refresh_token)
