"""SessionManager.lookup on every backend beside its raw driver floor, in one interleaved run.

    .venv/bin/python benchmarks/session_lookup.py [--rounds 200] [--block 50]

For each backend the "authstate" row is ``SessionManager.lookup(session_id)``: validate
the ID, hash it, one store read, build the ``Session``, check its expiry (the touch is
throttled to once per hour here, so no write is measured). The floors are the same
single-key read done with the driver alone, as an application would write it:

- memory: ``dict.get`` of the stored value;
- sqlite: ``SELECT value … WHERE kind = ? AND key = ?`` on its own connection, then
  ``json.loads`` (the stored value is JSON text, so using it means decoding it);
- redis: a pooled ``HGETALL`` of a hash laid out as the Redis store lays out a session
  (one JSON-encoded field per top-level field), and a ``GET`` + ``json.loads`` of the
  same value as one JSON string;
- postgres: a prepared ``SELECT value … WHERE kind = %s AND key = %s`` (psycopg decodes
  the jsonb) on a connection taken from a psycopg_pool with ``getconn``/``putconn``, and
  the same on one dedicated connection without a pool.

Each variant runs ``block`` timed calls per round, the variants in a new random order
every round, so that the noise of a shared 2-core machine falls on all of them alike.
Reported: median and p99 in µs, and the ratio of authstate's median to each floor's;
"(store.get alone)" is the store read without SessionManager, to show where time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from authstate.clock import SystemClock
from authstate.sessions import SessionManager, digest
from authstate.stores import Store, open_store

POSTGRES_URL = os.environ.get("AUTHSTATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("AUTHSTATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TARGET = 1.3
# The floor each target is judged against: the cheapest read that yields a usable value.
FLOORS = {
    "memory": "dict.get",
    "sqlite": "SELECT+loads",
    "redis": "HGETALL",
    "postgres": "pool+prepared SELECT",
}

Call = Callable[[], Awaitable[object]]


async def make_session(store: Store) -> tuple[SessionManager, str, dict[str, object]]:
    sessions = SessionManager(store, clock=SystemClock(), touch_interval=3600)
    sid, _ = await sessions.create(
        "user-1234",
        ip="203.0.113.9",
        user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0",
        data={"role": "reader", "theme": "dark"},
    )
    record = await store.get("session", digest(sid))
    assert record is not None
    return sessions, sid, record.value


async def setup(tmp: Path) -> tuple[dict[str, list[tuple[str, Call]]], list[str], list[Callable[[], Awaitable[None]]]]:
    variants: dict[str, list[tuple[str, Call]]] = {}
    notes: list[str] = []
    cleanups: list[Callable[[], Awaitable[None]]] = []

    # memory
    store = await open_store("memory://")
    sessions, sid, value = await make_session(store)
    table = {digest(sid): value}
    key = digest(sid)

    async def dict_get(table: dict[str, dict[str, object]] = table, key: str = key) -> object:
        return table.get(key)

    variants["memory"] = [
        ("authstate", lambda s=sessions, i=sid: s.lookup(i)),
        ("dict.get", dict_get),
        ("(store.get alone)", lambda st=store, k=key: st.get("session", k)),
    ]

    # sqlite
    path = tmp / "bench.db"
    store = await open_store(f"sqlite:///{path}")
    cleanups.append(store.close)
    sessions, sid, _ = await make_session(store)
    raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    cleanups.append(lambda raw=raw: asyncio.sleep(0, raw.close()))
    select = "SELECT value FROM records WHERE kind = ? AND key = ?"
    key = digest(sid)

    async def sqlite_read(key: str = key) -> object:
        return raw.execute(select, ("session", key)).fetchone()

    async def sqlite_read_decode(key: str = key) -> object:
        return json.loads(raw.execute(select, ("session", key)).fetchone()[0])

    async def sqlite_to_thread(key: str = key) -> object:
        return await asyncio.to_thread(lambda: raw.execute(select, ("session", key)).fetchone())

    variants["sqlite"] = [
        ("authstate", lambda s=sessions, i=sid: s.lookup(i)),
        ("SELECT", sqlite_read),
        ("SELECT+loads", sqlite_read_decode),
        ("SELECT in to_thread", sqlite_to_thread),
        ("(store.get alone)", lambda st=store, k=key: st.get("session", k)),
    ]

    # redis
    try:
        from redis.asyncio import Redis

        store = await open_store(REDIS_URL, namespace="bench" + uuid.uuid4().hex[:8])
    except Exception as error:  # any failure only means "no redis row"
        notes.append(f"redis skipped: {type(error).__name__}: {error}")
    else:
        namespace_store = store
        sessions, sid, value = await make_session(store)
        client = Redis.from_url(REDIS_URL)
        hash_key = f"bench-raw:{uuid.uuid4().hex}"
        string_key = hash_key + ":s"
        await client.hset(hash_key, mapping={json.dumps(k): json.dumps(v) for k, v in value.items()})
        await client.set(string_key, json.dumps(value, separators=(",", ":")))

        async def redis_hgetall() -> object:
            return await client.hgetall(hash_key)

        async def redis_get_loads() -> object:
            return json.loads(await client.get(string_key))

        async def redis_cleanup() -> None:
            await client.delete(hash_key, string_key)
            await client.aclose()
            drop = getattr(namespace_store, "drop_namespace", None)
            if drop is not None:
                await drop()
            await namespace_store.close()

        cleanups.append(redis_cleanup)
        variants["redis"] = [
            ("authstate", lambda s=sessions, i=sid: s.lookup(i)),
            ("HGETALL", redis_hgetall),
            ("GET+loads", redis_get_loads),
            ("(store.get alone)", lambda st=store, k=digest(sid): st.get("session", k)),
        ]

    # postgres
    try:
        import psycopg
        from psycopg_pool import AsyncConnectionPool

        namespace = "bench" + uuid.uuid4().hex[:8]
        store = await open_store(POSTGRES_URL, namespace=namespace)
    except Exception as error:  # any failure only means "no postgres row"
        notes.append(f"postgres skipped: {type(error).__name__}: {error}")
    else:
        pg_store = store
        sessions, sid, _ = await make_session(store)
        pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[object, ...]]] = AsyncConnectionPool(
            POSTGRES_URL, kwargs={"autocommit": True}, min_size=1, max_size=10, open=False
        )
        await pool.open(wait=True)
        single = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
        query = f'SELECT value FROM "{namespace}".records WHERE kind = %s AND key = %s'
        key = digest(sid)

        async def pg_pooled(key: str = key) -> object:
            conn = await pool.getconn()  # cheaper than pool.connection() in autocommit
            try:
                cur = await conn.execute(query, ("session", key), prepare=True)
                return await cur.fetchone()
            finally:
                await pool.putconn(conn)

        async def pg_single(key: str = key) -> object:
            cur = await single.execute(query, ("session", key), prepare=True)
            return await cur.fetchone()

        async def pg_cleanup() -> None:
            await pool.close()
            await single.close()
            await pg_store.drop_namespace()  # type: ignore[attr-defined]
            await pg_store.close()

        cleanups.append(pg_cleanup)
        variants["postgres"] = [
            ("authstate", lambda s=sessions, i=sid: s.lookup(i)),
            ("pool+prepared SELECT", pg_pooled),
            ("1 conn prepared SELECT", pg_single),
            ("(store.get alone)", lambda st=store, k=key: st.get("session", k)),
        ]
    return variants, notes, cleanups


async def run(rounds: int, block: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        variants, notes, cleanups = await setup(Path(tmp))
        try:
            samples: dict[tuple[str, str], list[int]] = {
                (backend, name): [] for backend, vs in variants.items() for name, _ in vs
            }
            order = [(backend, name, call) for backend, vs in variants.items() for name, call in vs]
            for _, _, call in order:  # warm up: statement caches, prepared statements, pools
                for _ in range(20):
                    assert await call() is not None
            gc.collect()
            gc.disable()
            try:
                for _ in range(rounds):
                    random.shuffle(order)
                    for backend, name, call in order:
                        bucket = samples[(backend, name)]
                        for _ in range(block):
                            t0 = time.perf_counter_ns()
                            await call()
                            bucket.append(time.perf_counter_ns() - t0)
                    gc.collect()
            finally:
                gc.enable()
        finally:
            for cleanup in cleanups:
                await cleanup()

    def stats(values: list[int]) -> tuple[float, float]:
        ordered = sorted(values)
        return statistics.median(ordered) / 1000, ordered[int(len(ordered) * 0.99)] / 1000

    print(f"session lookup, {rounds} rounds x {block} calls per variant, interleaved "
          f"(Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version})")
    print(f"{'backend':9} {'variant':24} {'median µs':>10} {'p99 µs':>9} {'authstate/this':>15}")
    missed = []
    for backend, vs in variants.items():
        ours, _ = stats(samples[(backend, "authstate")])
        for name, _ in vs:
            median, p99 = stats(samples[(backend, name)])
            ratio = "" if name == "authstate" else f"{ours / median:.2f}x"
            print(f"{backend:9} {name:24} {median:10.1f} {p99:9.1f} {ratio:>15}")
        floor_name = FLOORS[backend]
        floor, _ = stats(samples[(backend, floor_name)])
        if ours / floor > TARGET:
            missed.append(f"{backend} ({ours / floor:.2f}x {floor_name})")
    for note in notes:
        print(note)
    print(f"target <= {TARGET}x: " + (f"missed on {', '.join(missed)}" if missed else "met"))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--block", type=int, default=50)
    args = parser.parse_args()
    return asyncio.run(run(args.rounds, args.block))


if __name__ == "__main__":
    sys.exit(main())
