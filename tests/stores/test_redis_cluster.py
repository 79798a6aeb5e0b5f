"""What only the Redis Cluster deployment adds: its URL, its key layout spread over the
shards, and surviving a primary killed mid-traffic with no session lost and no restart.

The conformance suite (``test_conformance.py``) and the bus tests (``tests/test_bus.py``)
run against the session's shared cluster; the failover test starts a cluster of its own
(3 primaries, 3 replicas, ``cluster-node-timeout`` 1 s) because it kills a node.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis.exceptions import ResponseError

from authstate.bus.redis_cluster import RedisClusterBus
from authstate.clock import FrozenClock
from authstate.errors import InvalidStoreURL, StoreUnavailable
from authstate.sessions import digest
from authstate.stores import open_store
from authstate.stores.base import Record
from authstate.stores.redis_cluster import RedisClusterStore
from authstate.stores.redis_urls import parse
from tests.conftest import fresh_namespace, require_redis_server, require_service
from tests.stores.cluster import FAILOVER_TIMEOUT, RedisClusterNodes, started
from tests.support import free_port
from tests.test_bus import Listener

SESSIONS = 300


def test_cluster_and_sentinel_urls_parse() -> None:
    url = parse("redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2,[::1]:7002/")
    assert url.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert (url.password, url.tls, url.service) == ("s3cret", False, None)
    url = parse("rediss+sentinel://u:pw@s1:26380,s2/mymaster/3")
    assert url.hosts == (("s1", 26380), ("s2", 26379))
    assert (url.username, url.password, url.tls, url.service, url.db) == (
        "u", "pw", True, "mymaster", 3
    )


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://:s3cret@h1:7000/5",  # a cluster has only db 0
        "redis+cluster://:s3cret@h1:notaport/",
        "redis+cluster://:s3cret@h1:7000/?ssl=true",
        "redis+sentinel://:s3cret@h1:26379/",  # no service
        "redis+sentinel://:s3cret@h1:26379/svc/db",
        "redis+sentinel://:s3cret@h1:26379/svc/1/2",
    ],
)
async def test_bad_cluster_and_sentinel_urls_are_refused_without_the_password(url: str) -> None:
    with pytest.raises(InvalidStoreURL) as caught:
        await open_store(url)
    assert "s3cret" not in str(caught.value)


async def test_unreachable_or_wrong_servers_are_store_unavailable() -> None:
    for url in (
        f"redis+cluster://:s3cret@127.0.0.1:{free_port()}/",  # nothing listening
        "redis+cluster://:s3cret@" + require_service("redis").split("//", 1)[1].split("/")[0] + "/",
        f"redis+sentinel://127.0.0.1:{free_port()}/svc/0",
    ):
        started_at = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            await open_store(url)
        assert time.monotonic() - started_at < 3
        assert "s3cret" not in str(caught.value)


async def test_records_spread_over_every_shard(redis_cluster: RedisClusterNodes) -> None:
    """The layout shards: a namespace's records are not pinned to one slot or node."""
    store = await open_store(redis_cluster.url, namespace=fresh_namespace())
    assert isinstance(store, RedisClusterStore)
    try:
        for i in range(60):
            await store.put("session", f"k{i}", {"i": i}, user_id=f"u{i % 7}")
        client = store._cluster
        nodes = {
            client.get_node_from_key(f"{store._prefix('session')}k{i}").name  # type: ignore[union-attr]
            for i in range(60)
        }
        assert len(nodes) == 3
        # a user's indexes of every kind share the user's slot (hash tag per user)
        slots = {client.keyslot(store._index_key(kind, "u1")) for kind in ("session", "refresh")}
        assert len(slots) == 1
        assert [r.key for r in await store.list_by_user("session", "u1")] == sorted(
            f"k{i}" for i in range(60) if i % 7 == 1
        )
    finally:
        await store.drop_namespace()
        await store.close()


def _node_of(store: RedisClusterStore, key: str) -> str:
    node = store._cluster.get_node_from_key(store._prefix("session") + key)
    assert node is not None
    return node.name


async def test_reads_of_one_turn_are_answered_per_node_across_slots(
    redis_cluster: RedisClusterNodes, clock: FrozenClock
) -> None:
    """Reads issued in one event-loop turn travel as one batch per node (one connection
    each) and each reader gets its own key's answer: live, absent, expired by the
    store's clock, and a wrong type (that key's error only)."""
    store = await open_store(redis_cluster.url, clock=clock, namespace=fresh_namespace())
    assert isinstance(store, RedisClusterStore)
    try:
        keys = [f"k{i}" for i in range(90)]
        for i, key in enumerate(keys):
            await store.put("session", key, {"i": i}, expires_at=clock.now() + 60,
                            user_id=f"u{i % 5}")
        await store.put("session", "old", {"i": -1}, expires_at=clock.now() + 5)
        await store._cluster.set(store._prefix("session") + "wrong", "not a hash")
        assert len({_node_of(store, k) for k in keys}) == 3
        clock.advance(10)  # "old" has expired by the store's clock, not yet in Redis
        fresh = await open_store(redis_cluster.url, clock=clock, namespace=store._ns)
        assert isinstance(fresh, RedisClusterStore)
        try:
            asked = [*keys, "absent1", "old", "wrong", "absent2"]
            answers = await asyncio.gather(
                *(fresh.get("session", k) for k in asked), return_exceptions=True
            )
            # ping at open used one connection per primary; 94 concurrent reads added none
            assert [len(n._connections) for n in fresh._cluster.get_primaries()] == [1, 1, 1]
        finally:
            await fresh.close()
        *found, absent1, old, wrong, absent2 = answers
        assert [r.value["i"] for r in found if isinstance(r, Record)] == list(range(90))
        assert [r.key for r in found if isinstance(r, Record)] == keys
        assert (absent1, old, absent2) == (None, None, None)
        assert isinstance(wrong, ResponseError) and "WRONGTYPE" in str(wrong)
    finally:
        await store.drop_namespace()
        await store.close()


async def test_a_stale_slot_map_is_followed_and_healed(redis_cluster: RedisClusterNodes) -> None:
    """A batch sent by a slot map gone stale (as after a resharding) gets MOVED for the
    moved slots: those reads are answered through the client's redirect, and the map is
    corrected for the next batch."""
    store = await open_store(redis_cluster.url, namespace=fresh_namespace())
    assert isinstance(store, RedisClusterStore)
    try:
        keys = [f"k{i}" for i in range(30)]
        for i, key in enumerate(keys):
            await store.put("session", key, {"i": i})
        slots = store._cluster.nodes_manager.slots_cache
        moved = store._cluster.keyslot(store._prefix("session") + keys[0])
        owner = slots[moved]
        elsewhere = next(n for n in store._cluster.get_primaries() if n.name != owner[0].name)
        slots[moved] = [elsewhere]  # the map now sends keys[0]'s slot to a wrong node
        records = await asyncio.gather(*(store.get("session", k) for k in keys))
        assert [r.value["i"] for r in records if r is not None] == list(range(30))
        assert slots[moved][0].name == owner[0].name
    finally:
        await store.drop_namespace()
        await store.close()


@pytest.fixture
def own_cluster() -> Iterator[RedisClusterNodes]:
    """A cluster of this test alone, since it kills one of its primaries."""
    require_redis_server()
    with started(RedisClusterNodes(primaries=3, replicas=1)) as cluster:
        yield cluster


async def _until_ok(what: Any, timeout: float = FAILOVER_TIMEOUT) -> Any:
    """Retry ``what()`` while the store answers StoreUnavailable, up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await what()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_primary_killed_mid_traffic_loses_no_session(
    own_cluster: RedisClusterNodes, clock: FrozenClock
) -> None:
    cluster = own_cluster
    ns = fresh_namespace()
    store = await open_store(cluster.url, clock=clock, namespace=ns)
    assert isinstance(store, RedisClusterStore)
    bus = RedisClusterBus(cluster.url, channel=f"{ns}:revocation")
    listener = Listener()
    try:
        await bus.start(listener)
        expires = clock.now() + 3600
        keys = [digest(uuid.uuid4().hex) for _ in range(SESSIONS)]
        for i, key in enumerate(keys):
            await store.put(
                "session", key, {"user_id": f"u{i % 10}", "n": i},
                expires_at=expires, user_id=f"u{i % 10}",
            )
        # written before: acknowledged by every replica (Redis replicates asynchronously,
        # so a write acknowledged only by a primary that then dies can be lost)
        for port in cluster.primary_ports():
            cluster.wait_replicated(port)

        # the victim serves the revocation channel's slot, and so some of the sessions
        channel_node = store._cluster.get_node_from_key(f"{ns}:revocation")
        assert channel_node is not None
        victim = int(channel_node.port)
        on_victim = [
            k for k in keys
            if store._cluster.get_node_from_key(store._prefix("session") + k).port == victim  # type: ignore[union-attr]
        ]
        assert on_victim

        refused = other_errors = reads = 0
        killed_at = 0.0
        absent: list[tuple[str, float | None]] = []  # (key prefix, seconds since the kill)
        stop = asyncio.Event()

        async def traffic() -> None:
            nonlocal refused, other_errors, reads
            i = 0
            while not stop.is_set():
                key = keys[i % len(keys)]
                i += 1
                try:
                    record = await store.get("session", key)
                    if record is None:  # a session must never read as absent
                        since = time.monotonic() - killed_at if killed_at else None
                        absent.append((key[:8], since))
                    reads += 1
                    await store.put("session", f"new{i}", {"i": i}, user_id="traffic")
                except StoreUnavailable:
                    refused += 1  # fail closed while the slot has no primary
                    await asyncio.sleep(0.02)
                except Exception:
                    other_errors += 1
                    raise

        runner = asyncio.create_task(traffic())
        await asyncio.sleep(0.3)
        before = reads
        killed_at = time.monotonic()
        cluster.kill(victim)
        started_at = time.monotonic()
        await asyncio.to_thread(cluster.wait_failover, victim)
        # the same store object, no restart: every session written before is read after
        records = [await _until_ok(lambda k=k: store.get("session", k)) for k in keys]
        recovered_in = time.monotonic() - started_at
        stop.set()
        await runner
        assert not absent, f"sessions read as absent during the failover: {absent}"
        assert all(r is not None for r in records), "a session was lost in the failover"
        assert [r.value["n"] for r in records if r is not None] == list(range(SESSIONS))
        assert other_errors == 0
        assert reads > before  # traffic went on around the kill
        assert recovered_in < FAILOVER_TIMEOUT + 5
        # writes and index operations work again on the promoted replica
        await _until_ok(lambda: store.put("session", "after", {"ok": 1}, user_id="u1"))
        assert len(await store.list_by_user("session", "u1")) == SESSIONS // 10 + 1
        # the bus followed its channel to the promoted replica: it was lost, came back
        # (after resynchronising) and carries events again
        await listener.until(lambda: listener.lost >= 1, timeout=FAILOVER_TIMEOUT)
        await listener.until(lambda: listener.connected >= 2, timeout=FAILOVER_TIMEOUT)
        await _publish_until_ok(bus)
        await listener.until(lambda: {"t": "key", "kid": "after"} in listener.events)
    finally:
        await bus.close()
        await store.close()


async def _publish_until_ok(bus: RedisClusterBus) -> None:
    from authstate.errors import BusUnavailable

    deadline = time.monotonic() + FAILOVER_TIMEOUT
    while True:
        try:
            await bus.publish({"t": "key", "kid": "after"})
            return
        except BusUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_a_batch_racing_a_primary_kill_fails_closed_per_node_then_recovers(
    own_cluster: RedisClusterNodes,
) -> None:
    """Reads of one turn sent after a primary died and before its replica is promoted
    (the replica is paused meanwhile, so no timing decides it): the dead node's readers
    get ``StoreUnavailable``, never "absent"; the other nodes' readers in the same turn
    get their records. Once the replica runs again and takes over, the same store object
    answers every read again, with no restart."""
    cluster = own_cluster
    store = await open_store(cluster.url, namespace=fresh_namespace())
    assert isinstance(store, RedisClusterStore)
    try:
        keys = [f"k{i}" for i in range(60)]
        for i, key in enumerate(keys):
            await store.put("session", key, {"i": i}, user_id=f"u{i % 5}")
        for port in cluster.primary_ports():
            cluster.wait_replicated(port)
        victim = int(store._cluster.get_node_from_key(  # type: ignore[union-attr]
            store._prefix("session") + keys[0]).port)
        on_victim = {k for k in keys if _node_of(store, k).endswith(f":{victim}")}
        assert on_victim and len(on_victim) < len(keys)

        (replica,) = cluster.replicas_of(victim)
        cluster.pause(replica)
        cluster.kill(victim)
        answers = await asyncio.gather(
            *(store.get("session", k) for k in keys), return_exceptions=True
        )
        for key, answer in zip(keys, answers, strict=True):
            if key in on_victim:
                assert isinstance(answer, StoreUnavailable), (key, answer)
                assert cluster.password not in str(answer)
            else:
                assert isinstance(answer, Record) and answer.key == key, (key, answer)

        cluster.resume(replica)
        await asyncio.to_thread(cluster.wait_failover, victim)

        async def every_read() -> list[Record | None]:
            return await asyncio.gather(*(store.get("session", k) for k in keys))

        records = await _until_ok(every_read)
        assert [r.value["i"] for r in records if r is not None] == list(range(len(keys)))
        again = await every_read()  # and the batch path routes by the healed map
        assert [r.key for r in again if r is not None] == keys
    finally:
        await store.close()

