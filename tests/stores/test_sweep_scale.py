"""A sweep's cost follows what expired, not what is alive: 100,000 live sessions, 1,000 dead.

Each backend shows it with its own evidence rather than a stopwatch: the memory store's
expiry heap gives up exactly the expired entries; SQLite's plan searches the expires_at
index and its virtual machine executes fewer instructions for the whole sweep than there
are live rows (a scan would need at least one per row); PostgreSQL's executed plan reads
the expires_at index and touches only the rows it deletes, with no sequential scan.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from authstate.clock import FrozenClock
from authstate.stores import Store
from authstate.stores.memory import MemoryStore
from tests.conftest import backend_store

LIVE = 100_000
DEAD = 1_000
BATCH = 400
TTL_LIVE = 86_400.0
TTL_DEAD = 10.0

pytestmark = pytest.mark.slow


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def big_store(
    request: pytest.FixtureRequest, clock: FrozenClock, tmp_path: Path
) -> AsyncIterator[tuple[str, Store]]:
    async with backend_store(request.param, clock, tmp_path) as store:
        await fill(request.param, store, clock)
        yield request.param, store


def rows(now: float) -> Iterator[tuple[str, str, float, str]]:
    for i in range(LIVE):
        yield f"live{i:06d}", '{"n":1}', now + TTL_LIVE, f"user{i % 5000}"
    for i in range(DEAD):
        yield f"dead{i:06d}", '{"n":1}', now + TTL_DEAD, f"user{i % 5000}"


async def fill(backend: str, store: Store, clock: FrozenClock) -> None:
    """Bulk-load straight into each engine: the sweep is under test, not ``put``."""
    now = clock.now()
    if backend == "memory":
        for key, _, expires_at, user_id in rows(now):
            await store.put("session", key, {"n": 1}, expires_at=expires_at, user_id=user_id)
    elif backend == "sqlite":
        db: Any = store._db  # type: ignore[attr-defined]
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO records (kind, key, value, expires_at, user_id) "
            "VALUES ('session', ?, ?, ?, ?)",
            rows(now),
        )
        db.execute("COMMIT")
    else:
        pool: Any = store._pool  # type: ignore[attr-defined]
        namespace = store.namespace  # type: ignore[attr-defined]
        copy_sql = f'COPY "{namespace}".records (kind, key, value, expires_at, user_id) FROM STDIN'
        async with pool.connection() as conn, conn.cursor().copy(copy_sql) as copy:
            for row in rows(now):
                await copy.write_row(("session", *row))


async def sweep_all(store: Store) -> list[int]:
    batches = []
    while (n := await store.sweep(batch=BATCH)) > 0:
        batches.append(n)
        assert len(batches) <= DEAD  # never loops forever
    return batches


async def count(backend: str, store: Store) -> int:
    if backend == "memory":
        assert isinstance(store, MemoryStore)
        return len(store._records)
    if backend == "sqlite":
        return int(store._db.execute("SELECT count(*) FROM records").fetchone()[0])  # type: ignore[attr-defined]
    async with store._pool.connection() as conn:  # type: ignore[attr-defined]
        cur = await conn.execute(f'SELECT count(*) FROM "{store.namespace}".records')  # type: ignore[attr-defined]
        row = await cur.fetchone()
        return int(row[0])


async def test_sweep_cost_follows_what_expired(
    big_store: tuple[str, Store], clock: FrozenClock
) -> None:
    backend, store = big_store
    assert await count(backend, store) == LIVE + DEAD
    assert await store.sweep(batch=BATCH) == 0, "nothing has expired yet"
    clock.advance(TTL_DEAD + 1)

    if backend == "memory":
        assert isinstance(store, MemoryStore)
        heap_before = len(store._expiry)
        batches = await sweep_all(store)
        assert heap_before - len(store._expiry) == DEAD, "only expired entries were popped"
    elif backend == "sqlite":
        batches = await sqlite_sweep_within_budget(store, clock)
    else:
        await postgres_plan_reads_only_the_batch(store, clock)
        batches = await sweep_all(store)

    assert batches == [BATCH, BATCH, DEAD - 2 * BATCH]
    assert await count(backend, store) == LIVE
    assert await store.get("session", "dead000000") is None
    live = await store.get("session", f"live{LIVE - 1:06d}")
    assert live is not None and live.value == {"n": 1}
    assert len(await store.list_by_user("session", "user0")) == LIVE // 5000


async def sqlite_sweep_within_budget(store: Store, clock: FrozenClock) -> list[int]:
    from authstate.stores.sqlite import SWEEP

    db: Any = store._db  # type: ignore[attr-defined]
    plan = " | ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + SWEEP, (clock.now(), BATCH)))
    assert "INDEX records_expiry (expires_at<?)" in plan, plan
    assert "SCAN records" not in plan, plan

    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0

    db.set_progress_handler(tick, 1)
    try:
        db.execute(
            "SELECT count(*) FROM records NOT INDEXED WHERE expires_at <= ?", (clock.now(),)
        ).fetchall()
        scan_steps, steps = steps, 0
        batches = await sweep_all(store)
        sweep_steps = steps
    finally:
        db.set_progress_handler(None, 1)
    assert scan_steps > LIVE, "the yardstick: a scan executes at least one step per row"
    assert sweep_steps < LIVE, f"the sweep executed {sweep_steps} steps for {DEAD} rows"
    return batches


async def postgres_plan_reads_only_the_batch(store: Store, clock: FrozenClock) -> None:
    pool: Any = store._pool  # type: ignore[attr-defined]
    statement = store.sweep_statement  # type: ignore[attr-defined]
    async with pool.connection() as conn, conn.transaction(force_rollback=True):
        cur = await conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, (clock.now(), BATCH)
        )
        row = await cur.fetchone()
    plan = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    nodes = list(walk(plan[0]["Plan"]))
    kinds = {node["Node Type"] for node in nodes}
    assert "Seq Scan" not in kinds, kinds
    index_scans = [n for n in nodes if n["Node Type"] in ("Index Scan", "Index Only Scan")]
    assert [n["Index Name"] for n in index_scans] == ["records_expiry"]
    examined = sum(n["Actual Rows"] for n in nodes if "Scan" in n["Node Type"])
    assert examined <= 2 * BATCH, f"the sweep read {examined} rows for a batch of {BATCH}"


def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from walk(child)
