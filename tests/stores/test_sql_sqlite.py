"""What the SQLite store promises beyond the shared contract: its URL, its pragmas, a
versioned schema, safety across processes, and faults as StoreUnavailable."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from authstate.clock import FrozenClock
from authstate.errors import InvalidStoreURL, StoreUnavailable
from authstate.stores import open_store
from authstate.stores import sqlite as sqlite_store
from authstate.stores.sqlite import SCHEMA_VERSION, SQLiteStore, database_path


def test_url_forms() -> None:
    assert database_path("sqlite:///relative/dir/a.db") == "relative/dir/a.db"
    assert database_path("sqlite:////abs/dir/a.db") == "/abs/dir/a.db"
    for bad in ("sqlite://host/a.db", "sqlite:///", "sqlite:///a.db?mode=ro"):
        with pytest.raises(InvalidStoreURL):
            database_path(bad)


async def test_relative_path_is_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "state").mkdir()
    store = await open_store("sqlite:///state/auth.db")
    await store.put("session", "a", {})
    await store.close()
    assert (tmp_path / "state" / "auth.db").stat().st_size > 0


async def test_missing_directory_fails_at_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/no/such/dir/auth.db"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        await open_store(url)
    assert time.monotonic() - started < 2
    message = str(info.value)
    assert url.split("///", 1)[1] in message and "opening the database" in message
    assert "Traceback" not in message


async def test_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database file at all" * 200)
    with pytest.raises(StoreUnavailable, match="not a database"):
        await open_store(f"sqlite:///{path}")


async def test_pragmas_schema_and_private_file(tmp_path: Path, clock: FrozenClock) -> None:
    path = tmp_path / "auth.db"
    store = await open_store(f"sqlite:///{path}", clock=clock)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        db: sqlite3.Connection = store._db  # type: ignore[attr-defined]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == sqlite_store.BUSY_TIMEOUT_MS
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"records", "audit"} <= tables
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"records_user", "records_expiry", "audit_user", "audit_type", "audit_ts"} <= indexes
    finally:
        await store.close()


async def test_reads_use_the_indexes(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/auth.db")
    try:
        db: sqlite3.Connection = store._db  # type: ignore[attr-defined]
        sql = sqlite_store.SQL

        def plan(statement: str, params: tuple[object, ...]) -> str:
            return " | ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + statement, params))

        assert "USING INDEX sqlite_autoindex_records_1 (kind=? AND key=?)" in plan(
            sql.get, ("session", "k", 0.0)
        )
        assert "USING INDEX records_user (kind=? AND user_id=?)" in plan(
            sql.list_by_user, ("session", "u", 0.0)
        )
        assert "(kind=? AND key>? AND key<?)" in plan(sql.scan, ("session", "a", "b", 0.0, 10))
        query, params = sql.query_events(
            user_id="u", type=None, since=None, before_id=None, limit=10
        )
        assert "USING INDEX audit_user (user_id=?)" in plan(query, tuple(params))
    finally:
        await store.close()


async def test_reopening_keeps_data_and_does_not_migrate_again(
    tmp_path: Path, clock: FrozenClock
) -> None:
    url = f"sqlite:///{tmp_path}/auth.db"
    store = await open_store(url, clock=clock)
    await store.put("session", "a", {"x": 1})
    await store.close()
    again = await open_store(url, clock=clock)
    try:
        record = await again.get("session", "a")
        assert record is not None and record.value == {"x": 1}
    finally:
        await again.close()


async def test_an_appended_migration_runs_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/auth.db"
    await (await open_store(url)).close()
    step = ("CREATE TABLE extra (id INTEGER PRIMARY KEY)",)
    monkeypatch.setattr(sqlite_store, "MIGRATIONS", (*sqlite_store.MIGRATIONS, step))
    monkeypatch.setattr(sqlite_store, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    for _ in range(2):  # the second open must not try to create the table again
        store = await open_store(url)
        db: sqlite3.Connection = store._db  # type: ignore[attr-defined]
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert db.execute("SELECT count(*) FROM extra").fetchone()[0] == 0
        await store.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    await (await open_store(f"sqlite:///{path}")).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(StoreUnavailable, match="upgrade authstate"):
        await open_store(f"sqlite:///{path}")


async def test_patch_is_a_top_level_merge(tmp_path: Path, clock: FrozenClock) -> None:
    """Not SQLite's json_patch (RFC 7396), which would merge nested objects and delete
    keys set to null."""
    store = await open_store(f"sqlite:///{tmp_path}/auth.db", clock=clock)
    try:
        await store.put("session", "a", {"nested": {"keep": 1, "b": 2}, "gone": 1, "s": "é"})
        record = await store.patch("session", "a", {"nested": {"b": 3}, "gone": None})
        assert record is not None
        assert record.value == {"nested": {"b": 3}, "gone": None, "s": "é"}
        again = await store.get("session", "a")
        assert again is not None and again.value == record.value
    finally:
        await store.close()


async def test_a_read_leaves_no_snapshot_open(tmp_path: Path, clock: FrozenClock) -> None:
    """Every statement is read to its end: a reader that kept its statement open would
    hold a WAL snapshot, so another process could never checkpoint past it."""
    path = tmp_path / "auth.db"
    store = await open_store(f"sqlite:///{path}", clock=clock)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        for i in range(3):
            await store.put("session", f"k{i}", {"i": i}, user_id="u")
        await store.get("session", "k0")
        await store.list_by_user("session", "u")
        await store.scan("session")
        await store.delete("session", "k2")
        other.execute("INSERT INTO records (kind, key, value) VALUES ('session', 'z', '{}')")
        busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
        assert (await store.get("session", "z")) is not None, "the store sees the new row"
    finally:
        other.close()
        await store.close()


async def test_writer_blocked_past_busy_timeout_is_unavailable(
    tmp_path: Path, clock: FrozenClock
) -> None:
    path = tmp_path / "auth.db"
    store = await SQLiteStore.open(f"sqlite:///{path}", clock=clock, busy_timeout_ms=100)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await store.put("session", "a", {"x": 1})
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="database is locked"):
            await store.patch("session", "a", {"x": 2})
        with pytest.raises(StoreUnavailable):
            await store.put("session", "b", {})
        assert time.monotonic() - started < 2
        record = await store.get("session", "a")  # WAL: readers never wait
        assert record is not None and record.value == {"x": 1}
        other.execute("ROLLBACK")
        assert await store.patch("session", "a", {"x": 3}) is not None
    finally:
        other.close()
        await store.close()


WORKER = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from authstate.stores import open_store

    async def main(url, n, me, go):
        while not os.path.exists(go):
            time.sleep(0.005)
        store = await open_store(url)
        for i in range(n):
            await store.incr("throttle", "shared")
            await store.create("refresh", f"r{i}", {"family": "f"})
            await store.spend("refresh", f"r{i}", fields={"spent_at": 1.0, "by": me},
                              new_key=f"s{i}-{me}", new_value={}, new_expires_at=None)
        await store.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
    """
)


async def test_several_processes_share_one_file(tmp_path: Path) -> None:
    """Processes released together on a fresh file migrate it once, and their counters,
    creates and spends stay atomic across processes."""
    url = f"sqlite:///{tmp_path}/shared.db"
    go = tmp_path / "go"
    n, workers = 150, 3
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, url, str(n), f"w{w}", str(go)])
        for w in range(workers)
    ]
    time.sleep(0.5)  # let the interpreters start, then release them at once
    go.touch()
    assert [p.wait(timeout=60) for p in procs] == [0] * workers
    store = await open_store(url)
    try:
        assert await store.incr("throttle", "shared") == n * workers + 1
        for i in range(n):
            spent = await store.get("refresh", f"r{i}")
            successors = await store.scan("refresh", prefix=f"s{i}-")
            assert spent is not None and [s.key for s in successors] == [
                f"s{i}-{spent.value['by']}"
            ]
    finally:
        await store.close()


TAKER = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from authstate.stores import open_store

    async def main(url, tries, go):
        while not os.path.exists(go):
            time.sleep(0.005)
        store = await open_store(url)
        taken = 0
        for _ in range(tries):
            if await store.incr_below("throttle", "gate", limit=20) is not None:
                taken += 1
        await store.close()
        print(taken)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
    """
)


async def test_incr_below_holds_the_limit_across_processes(tmp_path: Path) -> None:
    """Processes racing for 20 slots on one file take exactly 20 between them."""
    url = f"sqlite:///{tmp_path}/gate.db"
    store = await open_store(url)  # migrate once, before the race
    await store.close()
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", TAKER, url, "15", str(go)],
                         stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    time.sleep(0.5)  # let the interpreters start, then release them at once
    go.touch()
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4
    assert sum(int(out) for out in outputs) == 20
    store = await open_store(url)
    try:
        record = await store.get("throttle", "gate")
        assert record is not None and record.value == {"n": 20}
    finally:
        await store.close()
