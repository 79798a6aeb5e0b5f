"""The revocation buses over real Redis pub/sub and PostgreSQL LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from authstate.bus import Bus, bus_for, open_bus
from authstate.bus.memory import MemoryBus
from authstate.bus.postgres import PostgresBus
from authstate.bus.redis import RedisBus
from authstate.bus.redis_cluster import RedisClusterBus
from authstate.config import Settings
from authstate.errors import BusUnavailable, ConfigurationError, StoreUnavailable
from authstate.stores.redis_cluster import cluster_client
from tests.conftest import require_service
from tests.support import RedisServer

WAIT = 5.0


class Listener:
    def __init__(self, fail_first: int = 0) -> None:
        self.connected = 0
        self.lost = 0
        self.events: list[dict[str, Any]] = []
        self.fail_first = fail_first
        self.changed = asyncio.Event()

    async def bus_connected(self) -> None:
        if self.fail_first > 0:
            self.fail_first -= 1
            raise StoreUnavailable("resync failed")
        self.connected += 1
        self.changed.set()

    def bus_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.changed.set()

    def bus_lost(self, error: BaseException) -> None:
        self.lost += 1
        self.changed.set()

    async def until(self, condition: Any, timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


def namespace() -> str:
    return "b" + uuid.uuid4().hex[:12]


# redis-cluster-classic: the cluster bus's fallback for redis-py < 8.0 (no sharded pub/sub
# in its asyncio client), run on every redis-py so it stays tested
@pytest.fixture(params=["redis", "postgres", "redis-cluster", "redis-cluster-classic"])
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param.startswith("redis-cluster"):
        url = request.getfixturevalue("redis_cluster").url
    else:
        url = require_service(request.param)
    opened: list[Bus] = []

    def make(ns: str) -> Bus:
        bus: Bus
        if request.param == "redis-cluster-classic":
            bus = RedisClusterBus(url, channel=f"{ns}:revocation", sharded=False)
        else:
            bus = open_bus(url, namespace=ns)
        opened.append(bus)
        return bus

    yield make
    for bus in opened:
        await bus.close()


async def test_publish_reaches_every_listener_of_the_namespace(make_bus: Any) -> None:
    ns = namespace()
    a, b, other = make_bus(ns), make_bus(ns), make_bus(namespace())
    la, lb, lo = Listener(), Listener(), Listener()
    for bus, listener in ((a, la), (b, lb), (other, lo)):
        await bus.start(listener)
        assert listener.connected == 1
    await a.publish({"t": "jti", "jti": "x1", "until": 1.5})
    await b.publish({"t": "sid", "sid": "s1", "until": 2.0})
    for listener in (la, lb):
        await listener.until(lambda x=listener: len(x.events) == 2)
        assert listener.events == [
            {"t": "jti", "jti": "x1", "until": 1.5}, {"t": "sid", "sid": "s1", "until": 2.0}
        ]
    await asyncio.sleep(0.1)
    assert lo.events == []


async def test_foreign_payloads_are_ignored(make_bus: Any) -> None:
    ns = namespace()
    bus = make_bus(ns)
    listener = Listener()
    await bus.start(listener)
    if isinstance(bus, RedisClusterBus):
        cluster = cluster_client(bus._url)
        for payload in (b"\xff not json", b"[1, 2]"):
            if bus._sharded:
                await cluster.spublish(f"{ns}:revocation", payload)
            else:  # redis-py < 8.0: classic pub/sub, which any node broadcasts
                await cluster.execute_command(
                    "PUBLISH", f"{ns}:revocation", payload, target_nodes=RedisCluster.RANDOM
                )
        await cluster.aclose()
    elif isinstance(bus, RedisBus):
        client = Redis.from_url(require_service("redis"))
        await client.publish(f"{ns}:revocation", b"\xff not json")
        await client.publish(f"{ns}:revocation", b"[1, 2]")
        await client.aclose()
    else:
        async with await psycopg.AsyncConnection.connect(require_service("postgres"), autocommit=True) as conn:
            await conn.execute("SELECT pg_notify(%s, %s)", (f"authstate_revocation_{ns}", "nope"))
    await bus.publish({"t": "key", "kid": "k1"})
    await listener.until(lambda: listener.events)
    assert listener.events == [{"t": "key", "kid": "k1"}]


async def test_failed_resync_is_retried(make_bus: Any) -> None:
    bus = make_bus(namespace())
    listener = Listener(fail_first=2)
    await bus.start(listener)
    assert listener.lost >= 1
    await listener.until(lambda: listener.connected == 1)
    assert listener.lost == 2
    await bus.publish({"t": "key", "kid": "k"})
    await listener.until(lambda: listener.events)


async def test_redis_bus_survives_a_server_restart(redis_server: RedisServer) -> None:
    server = redis_server
    bus = RedisBus(server.url, channel="restart:revocation")
    listener = Listener()
    try:
        await bus.start(listener)
        assert listener.connected == 1
        server.stop()
        await listener.until(lambda: listener.lost >= 1)
        with pytest.raises(BusUnavailable):
            await bus.publish({"t": "key", "kid": "k0"})
        server.start()
        await listener.until(lambda: listener.connected == 2)
        await bus.publish({"t": "key", "kid": "k1"})
        await listener.until(lambda: listener.events)
        assert listener.events == [{"t": "key", "kid": "k1"}]
    finally:
        await bus.close()


async def test_postgres_bus_survives_a_terminated_backend() -> None:
    url = require_service("postgres")
    ns = namespace()
    bus = open_bus(url, namespace=ns)
    assert isinstance(bus, PostgresBus)
    listener = Listener()
    try:
        await bus.start(listener)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
            cur = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (f"authstate-bus-{ns}-listen",),
            )
            assert [row[0] for row in await cur.fetchall()] == [True]
        await listener.until(lambda: listener.lost >= 1)
        await listener.until(lambda: listener.connected == 2)
        await bus.publish({"t": "key", "kid": "k2"})
        await listener.until(lambda: listener.events)
        assert listener.events == [{"t": "key", "kid": "k2"}]
    finally:
        await bus.close()


async def test_memory_bus_interrupt_and_restore() -> None:
    bus = MemoryBus()
    listener = Listener()
    await bus.start(listener)
    bus.interrupt()
    assert listener.lost == 1
    with pytest.raises(BusUnavailable):
        await bus.publish({"t": "key", "kid": "k"})
    await bus.restore()
    assert listener.connected == 2
    await bus.publish({"t": "key", "kid": "k"})
    assert listener.events == [{"t": "key", "kid": "k"}]


def test_bus_follows_the_store() -> None:
    def kind(store_url: str, scheme: str, **kw: Any) -> str | None:
        bus = bus_for(Settings.from_flat(store=store_url, **kw), scheme)
        return None if bus is None else bus.name

    assert kind("memory://", "memory") == "memory"
    assert kind("redis://127.0.0.1:6379/0", "redis") == "redis"
    assert kind("postgresql://u@h/db", "postgresql") == "postgres"
    assert kind("sqlite:///x.db", "sqlite") is None
    assert kind("sqlite:///x.db", "postgresql") is None
    assert kind("sqlite:///x.db", "sqlite", bus="redis://127.0.0.1:6379/0") == "redis"
    assert kind("redis://127.0.0.1:6379/0", "redis", push_revocation=False) is None
    assert kind("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/", "redis") == "redis-cluster"
    assert kind("redis+sentinel://127.0.0.1:26379/mymaster/0", "redis") == "redis"
    with pytest.raises(ConfigurationError):
        open_bus("kafka://x", namespace="n")


async def test_a_listener_that_swallows_a_cancel_still_stops() -> None:
    """Python 3.11's ``asyncio.timeout`` can take a cancel that lands as the client's
    own read timeout fires for that timeout, and swallow it (a hung test teardown showed
    it). Here the delivery loop swallows cancels outright, as the worst case: closing the
    bus must still end it (the loop sees the closing flag; the cancel is repeated)."""
    import contextlib

    from authstate.bus.base import Deliver, Resubscribing

    swallowed = 0

    class Stubborn(Resubscribing):
        _failures = (ConnectionError,)

        async def _subscribe(self, stack: contextlib.AsyncExitStack, listener: Any) -> Deliver:
            async def deliver() -> None:
                nonlocal swallowed
                while not self._closing:
                    try:
                        await asyncio.sleep(0.05)
                    except asyncio.CancelledError:
                        swallowed += 1  # as asyncio.timeout mistaking it for its own

            return deliver

    bus = Stubborn("test bus")
    await bus._listen(Listener(), name="stubborn")
    await asyncio.wait_for(bus._stop_listening(), WAIT)
    assert swallowed >= 1 and bus._task is None
