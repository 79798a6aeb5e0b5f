"""Bytes each store spends per session and per user record, measured on the real engines.

    .venv/bin/python benchmarks/store_footprint.py [--count 10000] [--json]

Writes ``--count`` sessions (through ``SessionManager.create``, as a login does, with a
typical browser user agent, an IPv4 address and the CSRF token in the session's data) and
``--count`` user records (``Users.create``; the password hashing is set cheap, which
does not change the stored hash's length) into a fresh namespace of each store, then reads
what the engine says it holds:

- Redis: ``MEMORY USAGE key SAMPLES 0`` summed over the namespace's keys (the session
  hashes and the per-user session index), divided by the count;
- PostgreSQL: ``pg_total_relation_size`` of the namespace's ``records`` table (heap,
  TOAST and both indexes) after ``VACUUM ANALYZE``, per row, and the median
  ``pg_column_size`` of one row;
- SQLite: the database file's size (after a WAL checkpoint) per row.

These are the inputs of ``docs/scaling.md``'s memory model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from authstate import csrf
from authstate.clock import SystemClock
from authstate.passwords import PasswordHasher
from authstate.sessions import SessionManager
from authstate.stores import open_store
from authstate.users import Users

REDIS_URL = os.environ.get("AUTHSTATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("AUTHSTATE_BENCH_POSTGRES_URL",
                        "postgresql://postgres@127.0.0.1:5432/test")
AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/131.0.0.0 Safari/537.36")


async def fill(url: str, namespace: str, count: int, what: str) -> Any:
    store = await open_store(url, namespace=namespace)
    if what == "session":
        sessions = SessionManager(store)
        for i in range(count):
            await sessions.create(f"u_{i:016d}", ip="203.0.113.7", user_agent=AGENT,
                                  data={csrf.DATA_KEY: csrf.new_token()})
    else:
        users = Users(store, clock=SystemClock(),
                      hasher=PasswordHasher(time_cost=1, memory_kib=1024, parallelism=1))
        for i in range(count):
            await users.create(f"user{i}@example.com", "correct horse battery staple 42")
    return store


async def redis_bytes(url: str, count: int, what: str) -> dict[str, float]:
    import redis.asyncio as aioredis

    namespace = "fp_" + uuid.uuid4().hex[:10]
    store = await fill(url, namespace, count, what)
    raw = aioredis.Redis.from_url(url)
    try:
        total, keys = 0, 0
        async for key in raw.scan_iter(match=f"{namespace}:*", count=1000):
            total += int(await raw.memory_usage(key, samples=0) or 0)
            keys += 1
        return {"bytes_per_item": total / count, "keys": keys}
    finally:
        await store.drop_namespace()  # type: ignore[attr-defined]
        await store.close()
        await raw.aclose()


async def postgres_bytes(url: str, count: int, what: str) -> dict[str, float]:
    import psycopg

    namespace = "fp_" + uuid.uuid4().hex[:10]
    store = await fill(url, namespace, count, what)
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f'VACUUM ANALYZE "{namespace}".records')
            cur = await conn.execute(
                f"SELECT pg_total_relation_size('\"{namespace}\".records'), "
                f"pg_relation_size('\"{namespace}\".records')")
            total, heap = await cur.fetchone()  # type: ignore[misc]
            cur = await conn.execute(f'SELECT pg_column_size(r.*) FROM "{namespace}".records r')
            rows = [r[0] for r in await cur.fetchall()]
        return {"bytes_per_item": total / count, "heap_per_item": heap / count,
                "row_bytes_median": statistics.median(rows)}
    finally:
        await store.drop_namespace()  # type: ignore[attr-defined]
        await store.close()


async def sqlite_bytes(count: int, what: str) -> dict[str, float]:
    import sqlite3

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fp.db"
        empty = await open_store(f"sqlite:///{path}")
        await empty.close()
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        base = path.stat().st_size
        store = await fill(f"sqlite:///{path}", "authstate", count, what)
        await store.close()
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return {"bytes_per_item": (path.stat().st_size - base) / count}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for what in ("session", "user"):
        rows.append({"store": "redis", "item": what,
                     **await redis_bytes(REDIS_URL, args.count, what)})
        rows.append({"store": "postgresql", "item": what,
                     **await postgres_bytes(PG_URL, args.count, what)})
        rows.append({"store": "sqlite", "item": what, **await sqlite_bytes(args.count, what)})
    if args.json:
        print(json.dumps({"count": args.count, "rows": rows}, indent=2))
        return
    print(f"{args.count} items per store; bytes per item as the engine reports it")
    print(f"{'store':<12}{'item':<9}{'bytes/item':>11}  detail")
    for row in rows:
        detail = ", ".join(f"{k}={v:g}" for k, v in row.items()
                           if k not in ("store", "item", "bytes_per_item"))
        print(f"{row['store']:<12}{row['item']:<9}{row['bytes_per_item']:>11.0f}  {detail}")


if __name__ == "__main__":
    asyncio.run(main())
