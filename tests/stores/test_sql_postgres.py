"""What the PostgreSQL store promises beyond the shared contract: a versioned schema per
namespace, indexed statements, and faults that fail fast and heal by themselves.

The outage test runs its own throwaway cluster (initdb in a temp dir, on a free port, as
the ``postgres`` user when we are root) and never touches the shared server's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from authstate.clock import FrozenClock
from authstate.errors import InvalidInput, InvalidStoreURL, StoreUnavailable
from authstate.sessions import SessionManager
from authstate.stores import open_store
from authstate.stores import postgres as pg_store
from authstate.stores.postgres import SCHEMA_VERSION, PostgresStore
from tests.conftest import fresh_namespace, require_service
from tests.stores.postgres_clusters import Cluster, pg_bin
from tests.support import free_port


@pytest.fixture
def pg_url() -> str:
    return require_service("postgres")


@pytest.fixture
async def pg(pg_url: str, clock: FrozenClock) -> AsyncIterator[PostgresStore]:
    store = await PostgresStore.open(pg_url, clock=clock, namespace=fresh_namespace())
    try:
        yield store
    finally:
        await store.drop_namespace()
        await store.close()


async def admin(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query, params)  # type: ignore[arg-type]
        return await cur.fetchall() if cur.description else []


async def test_schema_per_namespace_versioned_and_dropped(pg_url: str, clock: FrozenClock) -> None:
    a, b = fresh_namespace(), fresh_namespace()
    store_a = await open_store(pg_url, clock=clock, namespace=a)
    store_b = await open_store(pg_url, clock=clock, namespace=b)
    try:
        await store_a.put("session", "k", {"who": "a"})
        assert await store_b.get("session", "k") is None
        rows = await admin(pg_url, f'SELECT version FROM "{a}".schema_version')
        assert rows == [(SCHEMA_VERSION,)]
        tables = await admin(
            pg_url, "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (a,)
        )
        assert [t[0] for t in tables] == ["audit", "records", "schema_version"]
        again = await open_store(pg_url, clock=clock, namespace=a)
        record = await again.get("session", "k")
        assert record is not None and record.value == {"who": "a"}
        await again.close()
        assert await admin(pg_url, f'SELECT version FROM "{a}".schema_version') == [
            (SCHEMA_VERSION,)
        ]
    finally:
        for store in (store_a, store_b):
            await store.drop_namespace()  # type: ignore[attr-defined]
            await store.close()
    left = await admin(pg_url, "SELECT nspname FROM pg_namespace WHERE nspname IN (%s, %s)", (a, b))
    assert left == []


async def test_concurrent_opens_migrate_once(pg_url: str) -> None:
    namespace = fresh_namespace()
    stores = await asyncio.gather(
        *(open_store(pg_url, namespace=namespace) for _ in range(4))
    )
    try:
        assert await admin(pg_url, f'SELECT version FROM "{namespace}".schema_version') == [
            (SCHEMA_VERSION,)
        ]
    finally:
        await stores[0].drop_namespace()  # type: ignore[attr-defined]
        for store in stores:
            await store.close()


async def test_an_appended_migration_runs_once(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = fresh_namespace()
    first = await PostgresStore.open(pg_url, namespace=namespace)
    await first.close()
    step = ("CREATE TABLE {schema}.extra (id integer PRIMARY KEY)",)
    monkeypatch.setattr(pg_store, "MIGRATIONS", (*pg_store.MIGRATIONS, step))
    monkeypatch.setattr(pg_store, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    try:
        for _ in range(2):
            store = await PostgresStore.open(pg_url, namespace=namespace)
            await store.close()
        versions = await admin(pg_url, f'SELECT version FROM "{namespace}".schema_version ORDER BY 1')
        assert versions == [(SCHEMA_VERSION,), (SCHEMA_VERSION + 1,)]
        assert await admin(pg_url, f'SELECT count(*) FROM "{namespace}".extra') == [(0,)]
    finally:
        await admin(pg_url, f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')


async def test_a_newer_schema_is_refused(pg: PostgresStore, pg_url: str) -> None:
    await admin(pg_url, f'INSERT INTO "{pg.namespace}".schema_version (version) VALUES (99)')
    with pytest.raises(StoreUnavailable, match="upgrade authstate"):
        await PostgresStore.open(pg_url, namespace=pg.namespace)


async def test_unreachable_server_fails_fast_without_the_password() -> None:
    url = f"postgresql://authstate:hunter2secret@127.0.0.1:{free_port()}/test"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        await open_store(url, namespace=fresh_namespace())
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "hunter2secret" not in message
    assert "postgresql://authstate:***@127.0.0.1" in message and "connecting" in message
    assert "Traceback" not in message


async def test_missing_database_is_unavailable_with_the_reason(pg_url: str) -> None:
    url = pg_url.rsplit("/", 1)[0] + "/no_such_database_here"
    with pytest.raises(StoreUnavailable, match="no_such_database_here"):
        await open_store(url, namespace=fresh_namespace())


async def test_malformed_url_is_invalid_and_redacted() -> None:
    with pytest.raises(InvalidStoreURL) as info:
        await open_store("postgresql://user:hunter2secret@host/db?bogus=1")
    assert "hunter2secret" not in str(info.value)
    assert info.value.__cause__ is None


async def test_connections_carry_timeouts_and_a_name(pg: PostgresStore) -> None:
    async with pg._pool.connection() as conn:
        cur = await conn.execute("SHOW statement_timeout")
        assert await cur.fetchone() == ("5s",)
        cur = await conn.execute("SELECT current_setting('application_name')")
        assert await cur.fetchone() == (f"authstate/{pg.namespace}",)


async def test_statements_use_the_indexes(pg: PostgresStore) -> None:
    sql = pg._sql

    async def plan(statement: str, params: tuple[Any, ...]) -> str:
        async with pg._pool.connection() as conn, conn.transaction(force_rollback=True):
            await conn.execute("SET LOCAL enable_seqscan = off")
            cur = await conn.execute("EXPLAIN " + statement, params)  # type: ignore[operator]
            return "\n".join(row[0] for row in await cur.fetchall())

    assert "Index Scan using records_pkey" in await plan(sql.get, ("session", "k", 0.0))
    assert "records_user" in await plan(sql.list_by_user, ("session", "u", 0.0))
    scan = await plan(sql.scan, ("session", "ab", "ac", 0.0, 10))
    assert "records_pkey" in scan and "key >=" in scan and "key <" in scan
    query, params = sql.query_events(user_id="u", type=None, since=None, before_id=None, limit=5)
    assert "audit_user" in await plan(query, tuple(params))


async def test_collation_is_bytewise_for_prefix_scans(pg: PostgresStore) -> None:
    """A linguistic collation would order 'a-b' and 'aB' differently from code points
    and break the key-range form of a prefix scan."""
    keys = ["a-b", "aB", "ab", "a\u00e9", "a\uffff", "b"]
    for key in keys:
        await pg.put("session", key, {})
    assert [r.key for r in await pg.scan("session", prefix="a")] == sorted(keys[:-1])
    assert [r.key for r in await pg.scan("session", prefix="a\uffff")] == ["a\uffff"]


async def test_killed_connections_heal_without_failing_reads(pg: PostgresStore, pg_url: str) -> None:
    """A server restart leaves dead connections in the pool: a read retries once on a
    fresh one, and the pool replaces the rest by itself."""
    await pg.put("session", "k", {"v": 1})
    killed = await admin(
        pg_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (f"authstate/{pg.namespace}",),
    )
    assert killed and all(row[0] for row in killed)
    record = await pg.get("session", "k")
    assert record is not None and record.value == {"v": 1}
    await pg.put("session", "k2", {"v": 2})
    assert (await pg.get("session", "k2")) is not None


# -- an outage of a server of our own ------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    bin_dir = pg_bin()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists():
        pytest.skip("initdb/pg_ctl not installed: cannot run a throwaway PostgreSQL")
    root = Path(tempfile.mkdtemp(prefix="authstate-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    c = Cluster(root, bin_dir, free_port())
    try:
        c.init()
        c.start()
    except (subprocess.SubprocessError, OSError) as error:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"cannot start a throwaway PostgreSQL: {error}")
    try:
        yield c
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            c.stop()  # already stopped when the test failed during the outage
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
async def test_outage_fails_fast_and_the_pool_recovers(
    cluster: Cluster, clock: FrozenClock
) -> None:
    acquire = 0.5  # shorter than the default only to keep the test quick
    store = await PostgresStore.open(
        cluster.url, clock=clock, namespace="outage", acquire_timeout=acquire
    )
    sessions = SessionManager(store, clock=clock)
    try:
        sid, _ = await sessions.create("alice")
        assert await sessions.lookup(sid) is not None

        cluster.stop()
        for call in (
            lambda: store.get("session", "x"),
            lambda: store.put("session", "y", {}),
            lambda: store.incr("throttle", "t"),
        ):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as info:
                await call()
            assert time.monotonic() - started < acquire + 1.5
            assert str(cluster.port) in str(info.value) or "connection" in str(info.value)
        with pytest.raises(StoreUnavailable):  # store down: fail closed, and no logout
            await sessions.lookup(sid)

        cluster.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                await store.ping()
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the pool did not recover by itself"
                await asyncio.sleep(0.2)
        found = await sessions.lookup(sid)
        assert found is not None and found.user_id == "alice", "data survived the restart"
        await store.put("session", "after", {"ok": True})
        assert await store.get("session", "after") is not None
    finally:
        await store.close()


async def test_url_options_are_kept_and_faults_at_open_are_unavailable(pg_url: str) -> None:
    """The URL's own ``options`` survive beside authstate's timeouts, and a server that
    refuses the schema (here: read-only) is a clear StoreUnavailable at start-up."""
    url = pg_url + "?options=-c%20default_transaction_read_only%3Don"
    with pytest.raises(StoreUnavailable) as info:
        await open_store(url, namespace=fresh_namespace())
    assert "preparing the schema failed" in str(info.value)
    assert "read-only transaction" in str(info.value)


async def test_a_read_only_server_is_unavailable_for_writes(pg: PostgresStore) -> None:
    """After a failover a pooled connection may land on a standby: writes fail closed as
    StoreUnavailable while reads go on."""
    await pg.put("session", "k", {"v": 1})
    conn = await pg._pool.getconn()
    try:
        await conn.execute("SET default_transaction_read_only = on")
    finally:
        await pg._pool.putconn(conn)
    with pytest.raises(StoreUnavailable, match="read-only"):
        await pg.put("session", "k2", {})
    assert (await pg.get("session", "k")) is not None
    conn = await pg._pool.getconn()
    try:
        await conn.execute("RESET default_transaction_read_only")
    finally:
        await pg._pool.putconn(conn)


async def test_a_read_only_server_keeps_sessions_in(
    pg: PostgresStore, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A session whose last-seen write fails (a standby) is still served from the read:
    the idle expiry slides at the next touch that can write, and nobody is logged out."""
    caplog.set_level(logging.WARNING, logger="authstate.sessions")
    sessions = SessionManager(pg, clock=clock, touch_interval=60)
    sid, created = await sessions.create("alice")
    clock.advance(120)
    conn = await pg._pool.getconn()
    try:
        await conn.execute("SET default_transaction_read_only = on")
    finally:
        await pg._pool.putconn(conn)
    found = await sessions.lookup(sid)
    assert found is not None and found.user_id == "alice"
    assert found.last_seen == created.last_seen, "the write failed, the read still counts"
    assert [r.getMessage() for r in caplog.records if "last-seen" in r.getMessage()]
    conn = await pg._pool.getconn()
    try:
        await conn.execute("RESET default_transaction_read_only")
    finally:
        await pg._pool.putconn(conn)
    touched = await sessions.lookup(sid)
    assert touched is not None and touched.last_seen == clock.now()


@pytest.mark.parametrize("value", [{"s": "a\x00b"}, {"a\x00": 1}, {"n": float("nan")}])
async def test_values_postgres_cannot_hold_are_invalid_input(
    pg: PostgresStore, value: dict[str, Any]
) -> None:
    with pytest.raises(InvalidInput) as info:
        await pg.put("session", "k", value)
    assert "a\x00b" not in str(info.value) and info.value.__cause__ is None
    assert await pg.get("session", "k") is None
