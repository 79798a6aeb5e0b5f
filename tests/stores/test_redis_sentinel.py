"""The Redis store and bus behind Redis Sentinel (``redis+sentinel://``), on a primary, a
replica and three sentinels that the test starts on loopback and whose primary it kills.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from authstate.bus import open_bus
from authstate.bus.redis import RedisBus
from authstate.clock import FrozenClock
from authstate.errors import BusUnavailable, StoreUnavailable
from authstate.sessions import digest
from authstate.stores import open_store
from authstate.stores.redis import RedisStore
from tests.conftest import fresh_namespace
from tests.stores.cluster import FAILOVER_TIMEOUT, RedisSentinelSet
from tests.test_bus import Listener

SESSIONS = 100


async def _until_ok(what: Any, errors: tuple[type[Exception], ...] = (StoreUnavailable,)) -> Any:
    """Retry ``what()`` while it fails with ``errors``, for a bounded time."""
    deadline = time.monotonic() + FAILOVER_TIMEOUT
    while True:
        try:
            return await what()
        except errors:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_store_and_bus_follow_a_sentinel_failover(
    redis_sentinel: RedisSentinelSet, clock: FrozenClock
) -> None:
    topology = redis_sentinel
    ns = fresh_namespace()
    store = await open_store(topology.url(db=2), clock=clock, namespace=ns)
    assert isinstance(store, RedisStore)
    bus = open_bus(topology.url(db=2), namespace=ns)
    assert isinstance(bus, RedisBus)
    listener = Listener()
    try:
        await bus.start(listener)
        assert listener.connected == 1
        expires = clock.now() + 3600
        keys = [digest(uuid.uuid4().hex) for _ in range(SESSIONS)]
        for i, key in enumerate(keys):
            await store.put("session", key, {"n": i}, expires_at=expires, user_id=f"u{i % 5}")
        assert topology.master_port() == topology.primary
        topology.wait_replicated()  # written before: acknowledged by the replica

        topology.kill(topology.primary)
        with pytest.raises(StoreUnavailable):  # fails closed while there is no primary
            for _ in range(50):
                await store.put("session", "during", {"x": 1})
                await asyncio.sleep(0.05)
        await asyncio.to_thread(topology.wait_promoted, topology.replica)

        # the same store object, no restart: reads, writes and scripts on the new primary
        records = [await _until_ok(lambda k=k: store.get("session", k)) for k in keys]
        assert [r.value["n"] for r in records if r is not None] == list(range(SESSIONS))
        await _until_ok(lambda: store.put("session", "after", {"ok": 1}, user_id="u1"))
        assert len(await store.list_by_user("session", "u1")) == SESSIONS // 5 + 1
        assert len(await store.delete_by_user("session", "u2")) == SESSIONS // 5

        # the bus resubscribed on the promoted replica and carries events again
        await listener.until(lambda: listener.lost >= 1, timeout=FAILOVER_TIMEOUT)
        await listener.until(lambda: listener.connected >= 2, timeout=FAILOVER_TIMEOUT)
        await _until_ok(lambda: bus.publish({"t": "key", "kid": "after"}), (BusUnavailable,))
        await listener.until(lambda: {"t": "key", "kid": "after"} in listener.events)
    finally:
        await bus.close()
        await store.close()
