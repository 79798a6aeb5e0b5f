"""The SQLite store: the embedded default, safe for several processes on one machine.

The stdlib ``sqlite3`` is called directly inside the async methods, on the event loop's
thread. A primary-key read costs about 4 µs here (9 µs with decoding its JSON), and a
hop to a worker thread (``asyncio.to_thread``) about 85 µs (see
``benchmarks/session_lookup.py``), so offloading would make every read about 10x slower
to "unblock" a loop that was never blocked for long. What can block is a writer
waiting for another process's write lock, for at most ``busy_timeout``; WAL mode means
readers never wait, and every write here is one short transaction, so such waits are rare
and brief. Each operation runs without an ``await`` inside it, so on one event loop it is
atomic by construction (the connection stays on the thread that opened it: sqlite3's
same-thread check turns a store shared between threads into a loud error rather than
interleaved transactions); across processes, atomicity comes from the database:

- a single write statement (``put``, ``create``, ``incr``, ``incr_below``, ``decr``, ``delete``,
  ``delete_by_user``, ``sweep``) takes the write lock when it starts and is its own
  transaction;
- a read-then-write (``patch``, ``rename``, ``spend``) runs inside ``BEGIN IMMEDIATE``,
  which takes the write lock before the read, so no other process can write in between
  (and the upgrade from reader to writer can never fail with ``SQLITE_BUSY_SNAPSHOT``).

Every statement is read to its end (``fetchall``), so no half-read statement keeps a read
snapshot or the write lock open between calls. ``synchronous=NORMAL`` in WAL mode loses
no committed transaction when the process crashes, only on power loss, which is the usual
trade for a store of sessions and counters.

The schema is versioned with ``PRAGMA user_version``: ``MIGRATIONS[n]`` takes a database
from version ``n`` to ``n + 1``, applied on open under ``BEGIN IMMEDIATE`` so processes
that start together migrate once. Later changes append to the list, never edit it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from authstate.clock import Clock, SystemClock
from authstate.errors import InvalidStoreURL, StoreUnavailable
from authstate.stores.base import (
    JSON,
    AuditRow,
    Record,
    check_kind_key,
    check_limit,
    expire_earlier,
    merge_object,
    redact_url,
    scrub_event,
)
from authstate.stores.base import dumps as _dumps
from authstate.stores.base import loads as _loads
from authstate.stores.sql import Statements, audit_id, prefix_end

# Long enough for any write here (microseconds) and a WAL checkpoint (milliseconds) to
# finish elsewhere; short because the wait blocks this process's event loop.
BUSY_TIMEOUT_MS = 2000

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE records ("
        " kind TEXT NOT NULL,"
        " key TEXT NOT NULL,"
        " value TEXT NOT NULL,"
        " expires_at REAL,"
        " user_id TEXT,"
        " PRIMARY KEY (kind, key))",
        "CREATE INDEX records_user ON records (kind, user_id) WHERE user_id IS NOT NULL",
        "CREATE INDEX records_expiry ON records (expires_at) WHERE expires_at IS NOT NULL",
        "CREATE TABLE audit ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " ts REAL NOT NULL,"
        " type TEXT,"
        " user_id TEXT,"
        " event TEXT NOT NULL)",
        "CREATE INDEX audit_user ON audit (user_id, id)",
        "CREATE INDEX audit_type ON audit (type, id)",
        "CREATE INDEX audit_ts ON audit (ts)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

SQL = Statements.render(records="records", audit="audit", placeholder="?")

# Oldest first, so a backlog drains in expiry order; the partial index on expires_at
# serves both the filter and the order, so a batch reads only what it deletes.
SWEEP = (
    "DELETE FROM records WHERE rowid IN ("
    " SELECT rowid FROM records WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)"
)
# Counters keep only ``n`` and the window they were created with, like the memory store:
# a live counter is bumped, an expired one starts again at 1 with the new window.
INCR = (
    "INSERT INTO records (kind, key, value, expires_at) VALUES (?, ?, '{\"n\":1}', ?)"
    " ON CONFLICT (kind, key) DO UPDATE SET"
    " value = CASE WHEN records.expires_at IS NULL OR records.expires_at > ?"
    "  THEN json_object('n', json_extract(records.value, '$.n') + 1)"
    "  ELSE excluded.value END,"
    " expires_at = CASE WHEN records.expires_at IS NULL OR records.expires_at > ?"
    "  THEN records.expires_at ELSE excluded.expires_at END,"
    " user_id = CASE WHEN records.expires_at IS NULL OR records.expires_at > ?"
    "  THEN records.user_id ELSE NULL END"
    " RETURNING json_extract(value, '$.n')"
)
# The same upsert with a guard: a live counter at ``limit`` is left alone, and then the
# statement returns no row (an upsert whose WHERE fails updates nothing). One statement
# under the write lock, so the check and the add cannot be split by another writer.
INCR_BELOW = (
    "INSERT INTO records (kind, key, value, expires_at) VALUES (:kind, :key, '{\"n\":1}', :e)"
    " ON CONFLICT (kind, key) DO UPDATE SET"
    " value = CASE WHEN records.expires_at IS NULL OR records.expires_at > :now"
    "  THEN json_object('n', json_extract(records.value, '$.n') + 1)"
    "  ELSE excluded.value END,"
    " expires_at = CASE WHEN records.expires_at IS NULL OR records.expires_at > :now"
    "  THEN records.expires_at ELSE excluded.expires_at END,"
    " user_id = CASE WHEN records.expires_at IS NULL OR records.expires_at > :now"
    "  THEN records.user_id ELSE NULL END"
    " WHERE records.expires_at IS NOT NULL AND records.expires_at <= :now"
    "  OR json_extract(records.value, '$.n') < :limit"
    " RETURNING json_extract(value, '$.n')"
)
DECR = (
    "UPDATE records SET value = json_object('n', max(json_extract(value, '$.n') - 1, 0))"
    " WHERE kind = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)"
    " RETURNING json_extract(value, '$.n')"
)
UPDATE_VALUE = "UPDATE records SET value = ?, expires_at = ? WHERE kind = ? AND key = ?"

# At run time only OperationalError means "the database cannot serve us now" (locked past
# busy_timeout, I/O error, disk full, read-only); the other sqlite3 errors are bugs. At
# open, a file that is not a database (plain DatabaseError) is unavailable too.
_BUGS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.DataError)


def database_path(url: str) -> str:
    """The file behind ``sqlite:///relative.db`` or ``sqlite:////absolute.db``."""
    if not url.lower().startswith("sqlite:///"):
        raise InvalidStoreURL(
            f"SQLite URLs look like sqlite:///relative/path.db or sqlite:////abs/path.db, "
            f"not {redact_url(url)!r}"
        )
    path = url[len("sqlite:///"):]
    if not path or "?" in path or "#" in path:
        raise InvalidStoreURL(f"no database file (or a query string) in {redact_url(url)!r}")
    return path


class SQLiteStore:
    """The Store protocol on one SQLite file; see the module docstring."""

    url_scheme = "sqlite"

    def __init__(self, db: sqlite3.Connection, *, url: str, clock: Clock) -> None:
        self._db = db
        self._url = redact_url(url)
        self._clock = clock

    @classmethod
    async def open(
        cls, url: str, *, clock: Clock | None = None, busy_timeout_ms: int = BUSY_TIMEOUT_MS
    ) -> SQLiteStore:
        """Open (creating and migrating when needed) the database at ``url``; a file that
        cannot be opened is ``StoreUnavailable`` now, not at the first request."""
        path = database_path(url)
        try:
            if path != ":memory:":
                _create_private(path)
            db = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
        except (OSError, sqlite3.Error) as error:
            raise _unavailable(redact_url(url), "opening the database", error) from error
        store = cls(db, url=url, clock=clock or SystemClock())
        try:
            store._configure(busy_timeout_ms)
            store._migrate()
        except sqlite3.DatabaseError as error:
            db.close()
            if isinstance(error, _BUGS):
                raise
            raise store._fail("preparing the database", error) from error
        except BaseException:
            db.close()
            raise
        return store

    def _configure(self, busy_timeout_ms: int) -> None:
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self._db.execute("PRAGMA journal_mode = WAL").fetchall()
        self._db.execute("PRAGMA synchronous = NORMAL")

    def _migrate(self) -> None:
        with self._immediate():
            version = self._db.execute("PRAGMA user_version").fetchall()[0][0]
            if version > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"SQLite store at {self._url} has schema version {version}; this "
                    f"authstate knows up to {SCHEMA_VERSION}: upgrade authstate"
                )
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number]:
                    self._db.execute(statement)
            if version != SCHEMA_VERSION:
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed when the block ends, rolled
        back when it raises."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _fail(self, doing: str, error: sqlite3.Error) -> StoreUnavailable:
        return _unavailable(self._url, doing, error)

    def _rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as error:
            raise self._fail("a query", error) from error

    def _record(self, key: str, row: Sequence[Any]) -> Record:
        return Record(key, _loads(row[0]), row[1], row[2])

    def _live(self, expires_at: float | None) -> bool:
        return expires_at is None or expires_at > self._clock.now()

    async def get(self, kind: str, key: str) -> Record | None:
        try:
            rows = self._db.execute(SQL.get, (kind, key, self._clock.now())).fetchall()
        except sqlite3.OperationalError as error:
            raise self._fail("a read", error) from error
        if not rows:
            return None
        row = rows[0]
        return Record(key, _loads(row[0]), row[1], row[2])

    async def put(
        self,
        kind: str,
        key: str,
        value: JSON,
        *,
        expires_at: float | None = None,
        user_id: str | None = None,
    ) -> None:
        check_kind_key(kind, key)
        self._rows(SQL.put, (kind, key, _dumps(value), expires_at, user_id))

    async def create(
        self,
        kind: str,
        key: str,
        value: JSON,
        *,
        expires_at: float | None = None,
        user_id: str | None = None,
    ) -> bool:
        check_kind_key(kind, key)
        params = (kind, key, _dumps(value), expires_at, user_id, self._clock.now())
        try:
            return self._db.execute(SQL.create, params).rowcount == 1
        except sqlite3.OperationalError as error:
            raise self._fail("a create", error) from error

    async def patch(
        self, kind: str, key: str, fields: JSON, *, expires_at: float | None = None
    ) -> Record | None:
        try:
            with self._immediate() as db:
                return self._merge(db, kind, key, fields, expires_at)
        except sqlite3.OperationalError as error:
            raise self._fail("a patch", error) from error

    def _merge(
        self,
        db: sqlite3.Connection,
        kind: str,
        key: str,
        fields: JSON,
        expires_at: float | None,
    ) -> Record | None:
        """Read-merge-write of top-level fields; only inside ``_immediate``. (SQLite's
        ``json_patch`` merges recursively and deletes keys set to null, which is not the
        protocol's top-level merge.)"""
        rows = db.execute(SQL.get, (kind, key, self._clock.now())).fetchall()
        if not rows:
            return None
        old = self._record(key, rows[0])
        value = {**old.value, **fields}
        expiry = old.expires_at if expires_at is None else expires_at
        db.execute(UPDATE_VALUE, (_dumps(value), expiry, kind, key))
        return Record(key, value, expiry, old.user_id)

    async def merge(
        self, kind: str, key: str, field: str, fields: JSON, *, max_bytes: int
    ) -> Record | None:
        """Read-merge-write inside ``BEGIN IMMEDIATE``, which takes the write lock first,
        so a concurrent merge from any process waits for this one to commit."""
        try:
            with self._immediate() as db:
                rows = db.execute(SQL.get, (kind, key, self._clock.now())).fetchall()
                if not rows:
                    return None
                old = self._record(key, rows[0])
                value = {**old.value, field: merge_object(old.value.get(field), fields, max_bytes)}
                db.execute(UPDATE_VALUE, (_dumps(value), old.expires_at, kind, key))
                return Record(key, value, old.expires_at, old.user_id)
        except sqlite3.OperationalError as error:
            raise self._fail("a merge", error) from error

    async def delete(self, kind: str, key: str) -> Record | None:
        rows = self._rows(SQL.delete, (kind, key))
        if not rows or not self._live(rows[0][1]):
            return None
        return self._record(key, rows[0])

    async def rename(
        self,
        kind: str,
        old_key: str,
        new_key: str,
        *,
        fields: JSON | None = None,
        expires_at: float | None = None,
    ) -> Record | None:
        check_kind_key(kind, new_key)
        try:
            with self._immediate() as db:
                if new_key == old_key:
                    return self._merge(db, kind, old_key, fields or {}, expires_at)
                rows = db.execute(SQL.delete, (kind, old_key)).fetchall()
                if not rows or not self._live(rows[0][1]):
                    return None
                old = self._record(old_key, rows[0])
                value = {**old.value, **(fields or {})}
                expiry = old.expires_at if expires_at is None else expires_at
                db.execute(SQL.put, (kind, new_key, _dumps(value), expiry, old.user_id))
                return Record(new_key, value, expiry, old.user_id)
        except sqlite3.OperationalError as error:
            raise self._fail("a rename", error) from error

    async def list_by_user(self, kind: str, user_id: str) -> list[Record]:
        rows = self._rows(SQL.list_by_user, (kind, user_id, self._clock.now()))
        return [self._record(row[0], row[1:]) for row in rows]

    async def delete_by_user(
        self, kind: str, user_id: str, *, keep: str | None = None
    ) -> list[Record]:
        rows = self._rows(SQL.delete_by_user, (kind, user_id, keep or ""))
        return [self._record(row[0], row[1:]) for row in rows if self._live(row[2])]

    async def scan(self, kind: str, *, prefix: str = "", limit: int = 1000) -> list[Record]:
        end = prefix_end(prefix)
        now = self._clock.now()
        if end is None:
            rows = self._rows(SQL.scan_open, (kind, prefix, now, limit))
        else:
            rows = self._rows(SQL.scan, (kind, prefix, end, now, limit))
        return [self._record(row[0], row[1:]) for row in rows]

    async def incr(self, kind: str, key: str, *, expires_at: float | None = None) -> int:
        check_kind_key(kind, key)
        now = self._clock.now()
        rows = self._rows(INCR, (kind, key, expires_at, now, now, now))
        return int(rows[0][0])

    async def incr_below(
        self, kind: str, key: str, *, limit: int, expires_at: float | None = None
    ) -> int | None:
        check_kind_key(kind, key)
        check_limit(limit)
        params = {"kind": kind, "key": key, "e": expires_at, "now": self._clock.now(),
                  "limit": limit}
        rows = self._rows(INCR_BELOW, params)
        return int(rows[0][0]) if rows else None

    async def decr(self, kind: str, key: str) -> int | None:
        rows = self._rows(DECR, (kind, key, self._clock.now()))
        return int(rows[0][0]) if rows else None

    async def spend(
        self,
        kind: str,
        key: str,
        *,
        fields: JSON,
        new_key: str,
        new_value: JSON,
        new_expires_at: float | None,
        user_id: str | None = None,
        spent_expires_at: float | None = None,
    ) -> tuple[Record | None, bool]:
        check_kind_key(kind, new_key)
        try:
            with self._immediate() as db:
                rows = db.execute(SQL.get, (kind, key, self._clock.now())).fetchall()
                if not rows:
                    return None, False
                before = self._record(key, rows[0])
                if before.value.get("spent_at") is not None:
                    return before, False
                spent = _dumps({**before.value, **fields})
                expiry = expire_earlier(before.expires_at, spent_expires_at)
                db.execute(UPDATE_VALUE, (spent, expiry, kind, key))
                db.execute(SQL.put, (kind, new_key, _dumps(new_value), new_expires_at, user_id))
                return before, True
        except sqlite3.OperationalError as error:
            raise self._fail("a spend", error) from error

    async def append_event(self, event: JSON) -> str:
        ts = float(event["ts"])
        user_id = event.get("user_id")
        params = (ts, event.get("type"), None if user_id is None else str(user_id), _dumps(event))
        return audit_id(self._rows(SQL.append_event, params)[0][0])

    async def query_events(
        self,
        *,
        user_id: str | None = None,
        type: str | None = None,
        since: float | None = None,
        before_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditRow]:
        sql, params = SQL.query_events(
            user_id=user_id, type=type, since=since, before_id=before_id, limit=limit
        )
        return [AuditRow(audit_id(row[0]), _loads(row[1])) for row in self._rows(sql, params)]

    async def prune_events(self, before: float) -> int:
        try:
            return self._db.execute(SQL.prune_events, (before,)).rowcount
        except sqlite3.OperationalError as error:
            raise self._fail("pruning audit events", error) from error

    async def scrub_audit(self, user_id: str, fields: tuple[str, ...]) -> int:
        """Read and rewrite the user's events under ``BEGIN IMMEDIATE`` (through the
        ``audit_user`` index), so no other process writes in between."""
        try:
            with self._immediate() as db:
                rows = db.execute(SQL.user_events, (user_id,)).fetchall()
                changes = [
                    (_dumps(scrubbed), row[0]) for row in rows
                    if (scrubbed := scrub_event(_loads(row[1]), fields)) is not None
                ]
                db.executemany(SQL.rewrite_event, changes)
        except sqlite3.OperationalError as error:
            raise self._fail("scrubbing audit events", error) from error
        return len(changes)

    async def sweep(self, *, batch: int = 1000) -> int:
        try:
            return self._db.execute(SWEEP, (self._clock.now(), batch)).rowcount
        except sqlite3.OperationalError as error:
            raise self._fail("a sweep", error) from error

    async def ping(self) -> None:
        self._rows("PRAGMA user_version", ())

    async def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA optimize")
        self._db.close()


def _create_private(path: str) -> None:
    """Create the database file readable by its owner only (it holds password hashes
    and session digests); SQLite gives its -wal and -shm files the same mode."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _unavailable(url: str, doing: str, error: BaseException) -> StoreUnavailable:
    reason = str(error).splitlines()[0] if str(error) else error.__class__.__name__
    return StoreUnavailable(f"SQLite store at {url} unavailable: {doing} failed ({reason})")
