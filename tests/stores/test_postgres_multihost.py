"""PostgreSQL multi-host URLs (``postgresql://h1,h2/db?target_session_attrs=read-write``)
for the store's pool and the bus's LISTEN connection.

What is tested, precisely:

1. Against the shared server: a URL whose first host is a loopback port with nothing
   listening (connection refused) and whose second is the live server opens the store
   (migration, pool, reads and writes) and the bus (LISTEN and NOTIFY deliver).
2. Against a primary and a streaming standby that the test creates (``initdb`` +
   ``pg_basebackup -R``, both on loopback ports): with the *standby listed first*,
   ``target_session_attrs=read-write`` makes the store and the bus skip it and use the
   primary. Then the primary is stopped (``-m immediate``) and the standby promoted
   (``pg_ctl promote``): the same store object (no restart) reads every session written
   before (after the standby had replayed them) and writes again, now on the promoted
   server, and the bus reports the loss, resubscribes there and delivers again.
3. A server that turns read-only under the pool (``default_transaction_read_only`` set
   and reloaded, as on a demoted primary) makes writes fail closed, and the pooled
   connections are dropped rather than reused, so with a read-write host in the URL the
   pool reconnects to it.

Not tested: a host that swallows packets (a firewall drop) rather than refusing; libpq's
``connect_timeout`` bounds each attempt there (authstate sets 2 s when the URL does not).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from authstate.bus import open_bus
from authstate.bus.postgres import PostgresBus
from authstate.clock import FrozenClock
from authstate.errors import BusUnavailable, StoreUnavailable
from authstate.sessions import digest
from authstate.stores import open_store
from authstate.stores.postgres import PostgresStore
from tests.conftest import REQUIRE_SERVICES, fresh_namespace, require_service
from tests.stores.postgres_clusters import Pair, pg_bin
from tests.support import free_port
from tests.test_bus import Listener

FAILOVER_TIMEOUT = 20.0
SESSIONS = 50


def _multihost(url: str, first: str) -> str:
    """``url`` with ``first`` (host:port) put before its own host."""
    scheme, rest = url.split("://", 1)
    user, _, hostpart = rest.rpartition("@")
    host, _, path = hostpart.partition("/")
    userinfo = f"{user}@" if user else ""
    sep = "&" if "?" in path else "?"
    return f"{scheme}://{userinfo}{first},{host}/{path}{sep}target_session_attrs=read-write"


async def _until_ok(what: Any, errors: tuple[type[Exception], ...] = (StoreUnavailable,)) -> Any:
    deadline = time.monotonic() + FAILOVER_TIMEOUT
    while True:
        try:
            return await what()
        except errors:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_dead_host_first_then_live_host(clock: FrozenClock) -> None:
    url = _multihost(require_service("postgres"), f"127.0.0.1:{free_port()}")
    ns = fresh_namespace()
    store = await open_store(url, clock=clock, namespace=ns)
    bus = open_bus(url, namespace=ns)
    listener = Listener()
    try:
        await store.put("session", "k", {"v": 1}, user_id="u")
        record = await store.get("session", "k")
        assert record is not None and record.value == {"v": 1}
        await bus.start(listener)
        assert listener.connected == 1
        await bus.publish({"t": "key", "kid": "k1"})
        await listener.until(lambda: listener.events)
        assert listener.events == [{"t": "key", "kid": "k1"}]
    finally:
        await bus.close()
        drop = getattr(store, "drop_namespace", None)
        if drop is not None:
            await drop()
        await store.close()


@pytest.fixture
def pair() -> Iterator[Pair]:
    bin_dir = pg_bin()
    if bin_dir is None or not (bin_dir / "pg_basebackup").exists():
        message = "initdb/pg_ctl/pg_basebackup not installed: cannot run a PostgreSQL pair"
        if REQUIRE_SERVICES:
            pytest.fail(f"AUTHSTATE_REQUIRE_SERVICES=1 but {message}")
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="authstate-pgpair-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    p = Pair(root, bin_dir)
    try:
        p.start()
        yield p
    finally:
        p.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
async def test_store_and_bus_follow_a_promoted_standby(pair: Pair, clock: FrozenClock) -> None:
    ns = "multihost"
    store = await PostgresStore.open(pair.url(), clock=clock, namespace=ns, acquire_timeout=0.5)
    bus = open_bus(pair.url(), namespace=ns)
    assert isinstance(bus, PostgresBus)
    listener = Listener()
    try:
        await bus.start(listener)
        assert listener.connected == 1
        keys = [digest(uuid.uuid4().hex) for _ in range(SESSIONS)]
        for i, key in enumerate(keys):
            await store.put("session", key, {"n": i}, expires_at=clock.now() + 3600, user_id="u")
        await pair.wait_replayed()  # written before: on the standby too

        pair.primary.stop()
        with pytest.raises(StoreUnavailable):  # no read-write host: fail closed
            await store.put("session", "during", {"x": 1})
        pair.promote()

        records = [await _until_ok(lambda k=k: store.get("session", k)) for k in keys]
        assert [r.value["n"] for r in records if r is not None] == list(range(SESSIONS))
        await _until_ok(lambda: store.put("session", "after", {"ok": 1}, user_id="u"))
        assert len(await store.list_by_user("session", "u")) == SESSIONS + 1

        await listener.until(lambda: listener.lost >= 1, timeout=FAILOVER_TIMEOUT)
        await listener.until(lambda: listener.connected >= 2, timeout=FAILOVER_TIMEOUT)
        await _until_ok(lambda: bus.publish({"t": "key", "kid": "after"}), (BusUnavailable,))
        await listener.until(lambda: {"t": "key", "kid": "after"} in listener.events)
    finally:
        await bus.close()
        await store.close()


@pytest.mark.slow
async def test_pool_leaves_a_primary_that_turned_read_only(pair: Pair, clock: FrozenClock) -> None:
    store = await PostgresStore.open(pair.url(), clock=clock, namespace="demoted", max_size=4)
    try:
        await store.put("session", "before", {"v": 1})
        await pair.wait_replayed()
        async with await psycopg.AsyncConnection.connect(pair.primary.url, autocommit=True) as p:
            await p.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            await p.execute("SELECT pg_reload_conf()")
        with pytest.raises(StoreUnavailable):  # the old primary refuses writes: fail closed
            for _ in range(20):
                await store.put("session", "during", {"v": 2})
                await asyncio.sleep(0.05)
        pair.promote()
        # pooled connections to the read-only server were dropped, not reused: the writes
        # reach the promoted server without a restart
        await _until_ok(lambda: store.put("session", "after", {"v": 3}))
        async with await psycopg.AsyncConnection.connect(pair.standby.url, autocommit=True) as s:
            cur = await s.execute(
                "SELECT count(*) FROM demoted.records WHERE key IN ('before', 'after')"
            )
            assert (await cur.fetchone() or [0])[0] == 2
    finally:
        await store.close()
