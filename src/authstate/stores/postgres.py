"""The PostgreSQL store: shared state for many processes and hosts, one schema per namespace.

Each operation is one statement sent once, so it is atomic by the engine's own rules and
costs one round trip: ``INSERT … ON CONFLICT`` for put/create/incr, ``UPDATE … RETURNING``
with ``value || patch`` for a top-level merge, ``DELETE … RETURNING`` feeding an
``INSERT`` in one statement for rename, a locked read plus a conditional ``UPDATE`` (only
where ``spent_at`` is unset) for spend, and ``FOR UPDATE SKIP LOCKED`` batches for sweeps
so that several sweepers never wait on each other. Connections come from a
``psycopg_pool.AsyncConnectionPool`` in autocommit mode; the per-request read is a
prepared statement.

Faults fail closed and fast: the store is opened with one direct connection first (so a
wrong URL, password or database is a precise ``StoreUnavailable`` at start-up, not a
pool timeout), statements have a server-side timeout, a connection that cannot be had
within ``acquire_timeout`` is ``StoreUnavailable``, and the pool replaces broken
connections by itself, with a short ``reconnect_timeout`` so that it keeps trying soon
after a long outage ends. A read that fails on a connection broken by a server restart
is retried once on a fresh one, since reads are harmless to repeat; writes are not.

Tables live in the schema named by ``namespace``, created on first use and versioned in
its ``schema_version`` table: ``MIGRATIONS[n]`` takes a schema from version ``n`` to
``n + 1``, applied under an advisory lock so processes that start together migrate once.
"""

from __future__ import annotations

import asyncio
from typing import Any, LiteralString
from urllib.parse import urlsplit

from authstate.clock import Clock, SystemClock
from authstate.errors import (
    InvalidInput,
    InvalidStoreURL,
    MissingDependencyError,
    StoreUnavailable,
)
from authstate.stores.base import (
    JSON,
    NAMESPACE_PATTERN,
    AuditRow,
    Record,
    check_kind_key,
    check_limit,
    merge_object,
    redact_url,
    scrub_event,
)
from authstate.stores.sql import Statements, audit_id, prefix_end

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from psycopg.types.json import Jsonb
    from psycopg_pool import AsyncConnectionPool
except ImportError as missing:  # pragma: no cover - the dependency is declared
    raise MissingDependencyError(missing.name or "psycopg", "postgres") from missing

CONNECT_TIMEOUT = 3
OPEN_TIMEOUT = 5.0
ACQUIRE_TIMEOUT = 2.0
STATEMENT_TIMEOUT_MS = 5000
RECONNECT_TIMEOUT = 10.0
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5",
              "keepalives_count": "3"}

MIGRATIONS: tuple[tuple[LiteralString, ...], ...] = (
    (
        "CREATE TABLE {schema}.records ("
        " kind text COLLATE \"C\" NOT NULL,"
        " key text COLLATE \"C\" NOT NULL,"
        " value jsonb NOT NULL,"
        " expires_at double precision,"
        " user_id text COLLATE \"C\","
        " PRIMARY KEY (kind, key))",
        "CREATE INDEX records_user ON {schema}.records (kind, user_id)"
        " WHERE user_id IS NOT NULL",
        "CREATE INDEX records_expiry ON {schema}.records (expires_at)"
        " WHERE expires_at IS NOT NULL",
        "CREATE TABLE {schema}.audit ("
        " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " ts double precision NOT NULL,"
        " type text,"
        " user_id text,"
        " event jsonb NOT NULL)",
        "CREATE INDEX audit_user ON {schema}.audit (user_id, id)",
        "CREATE INDEX audit_type ON {schema}.audit (type, id)",
        "CREATE INDEX audit_ts ON {schema}.audit (ts)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

PATCH = (
    "UPDATE {records} SET value = value || %s, expires_at = coalesce(%s, expires_at)"
    " WHERE kind = %s AND key = %s AND (expires_at IS NULL OR expires_at > %s)"
    " RETURNING value, expires_at, user_id"
)
# ``merge``: lock the live row, then write it back merged (see ``PostgresStore.merge``).
MERGE_LOCK = (
    "SELECT value, expires_at, user_id FROM {records}"
    " WHERE kind = %s AND key = %s AND (expires_at IS NULL OR expires_at > %s) FOR UPDATE"
)
MERGE_WRITE = "UPDATE {records} SET value = %s WHERE kind = %s AND key = %s"
RENAME = (
    "WITH old AS ("
    " DELETE FROM {records}"
    " WHERE kind = %(kind)s AND key = %(old_key)s"
    " AND (expires_at IS NULL OR expires_at > %(now)s)"
    " RETURNING value, expires_at, user_id)"
    " INSERT INTO {records} (kind, key, value, expires_at, user_id)"
    " SELECT %(kind)s, %(new_key)s, value || %(fields)s,"
    " coalesce(%(expires_at)s, expires_at), user_id FROM old"
    " ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value,"
    " expires_at = excluded.expires_at, user_id = excluded.user_id"
    " RETURNING value, expires_at, user_id"
)
INCR = (
    "INSERT INTO {records} AS r (kind, key, value, expires_at)"
    " VALUES (%(kind)s, %(key)s, jsonb_build_object('n', 1), %(expires_at)s)"
    " ON CONFLICT (kind, key) DO UPDATE SET"
    " value = CASE WHEN r.expires_at IS NULL OR r.expires_at > %(now)s"
    "  THEN jsonb_build_object('n', (r.value->>'n')::bigint + 1) ELSE excluded.value END,"
    " expires_at = CASE WHEN r.expires_at IS NULL OR r.expires_at > %(now)s"
    "  THEN r.expires_at ELSE excluded.expires_at END,"
    " user_id = CASE WHEN r.expires_at IS NULL OR r.expires_at > %(now)s"
    "  THEN r.user_id END"
    " RETURNING (value->>'n')::bigint"
)
# The same upsert with a guard: a live counter at ``limit`` is left alone and the
# statement returns no row. The conflicting row is locked by ON CONFLICT and the WHERE is
# evaluated on its newest version, so concurrent callers take at most ``limit`` between them.
INCR_BELOW = (
    "INSERT INTO {records} AS r (kind, key, value, expires_at)"
    " VALUES (%(kind)s, %(key)s, jsonb_build_object('n', 1), %(expires_at)s)"
    " ON CONFLICT (kind, key) DO UPDATE SET"
    " value = CASE WHEN r.expires_at IS NULL OR r.expires_at > %(now)s"
    "  THEN jsonb_build_object('n', (r.value->>'n')::bigint + 1) ELSE excluded.value END,"
    " expires_at = CASE WHEN r.expires_at IS NULL OR r.expires_at > %(now)s"
    "  THEN r.expires_at ELSE excluded.expires_at END,"
    " user_id = CASE WHEN r.expires_at IS NULL OR r.expires_at > %(now)s"
    "  THEN r.user_id END"
    " WHERE (r.expires_at IS NOT NULL AND r.expires_at <= %(now)s)"
    "  OR (r.value->>'n')::bigint < %(limit)s"
    " RETURNING (value->>'n')::bigint"
)
DECR = (
    "UPDATE {records}"
    " SET value = jsonb_build_object('n', GREATEST((value->>'n')::bigint - 1, 0))"
    " WHERE kind = %(kind)s AND key = %(key)s"
    " AND (expires_at IS NULL OR expires_at > %(now)s)"
    " RETURNING (value->>'n')::bigint"
)
# ``old`` locks the live row and reports it as it was; ``spent`` is the conditional
# update (only while spent_at is unset), re-checked by the engine against the newest row
# version if a concurrent spend got there first; the successor exists only if ``spent``
# updated a row. One statement, so there is no window between the check and the write.
SPEND = (
    "WITH old AS ("
    " SELECT value, expires_at, user_id FROM {records}"
    " WHERE kind = %(kind)s AND key = %(key)s"
    " AND (expires_at IS NULL OR expires_at > %(now)s) FOR UPDATE),"
    " spent AS ("
    " UPDATE {records} SET value = value || %(fields)s,"
    " expires_at = LEAST(expires_at, %(spent_expires_at)s::double precision)"
    " WHERE kind = %(kind)s AND key = %(key)s"
    " AND (expires_at IS NULL OR expires_at > %(now)s) AND value->>'spent_at' IS NULL"
    " RETURNING key),"
    " successor AS ("
    " INSERT INTO {records} (kind, key, value, expires_at, user_id)"
    " SELECT %(kind)s::text, %(new_key)s::text, %(new_value)s,"
    " %(new_expires_at)s::double precision, %(user_id)s::text FROM spent"
    " ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value,"
    " expires_at = excluded.expires_at, user_id = excluded.user_id)"
    " SELECT value, expires_at, user_id, EXISTS (SELECT 1 FROM spent) FROM old"
)
# The batch is picked oldest first through the partial expires_at index and deleted by
# physical row address, so neither half can turn into a scan of the live rows; rows
# another sweeper (or a writer) holds are skipped, not waited for.
SWEEP = (
    "DELETE FROM {records} WHERE ctid = ANY (ARRAY ("
    " SELECT ctid FROM {records} WHERE expires_at <= %s"
    " ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED))"
)

REPEATABLE_READ = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"
# Each retry means another move of this user's records committed meanwhile; a few moves
# per user at a time are normal, an endless stream of them is not.
SERIALIZATION_RETRIES = 20

Row = tuple[Any, ...]

# "The server cannot serve us right now": lost or refused connections, timeouts, a pool
# with no connection to give, shutdown, and a standby that cannot take writes (after a
# failover, until the URL points at the new primary). Other errors are bugs.
_DOWN = (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction)


class PostgresStore:
    """The Store protocol on PostgreSQL; see the module docstring."""

    url_scheme = "postgresql"

    def __init__(
        self,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]],
        *,
        url: str,
        clock: Clock,
        namespace: str,
    ) -> None:
        self._pool = pool
        self._url = redact_url(url)
        self._password = urlsplit(url).password
        self._clock = clock
        self.namespace = namespace
        self._schema = f'"{namespace}"'
        records, audit = f"{self._schema}.records", f"{self._schema}.audit"
        self._sql = Statements.render(records=records, audit=audit, placeholder="%s")
        self._patch = PATCH.format(records=records)
        self._merge_lock = MERGE_LOCK.format(records=records)
        self._merge_write = MERGE_WRITE.format(records=records)
        self._rename = RENAME.format(records=records)
        self._incr = INCR.format(records=records)
        self._incr_below = INCR_BELOW.format(records=records)
        self._decr = DECR.format(records=records)
        self._spend = SPEND.format(records=records)
        self.sweep_statement = SWEEP.format(records=records)
        self._user_events_locked = self._sql.user_events + " FOR UPDATE"
        self._checking: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        clock: Clock | None = None,
        namespace: str = "authstate",
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: int = CONNECT_TIMEOUT,
        open_timeout: float = OPEN_TIMEOUT,
        acquire_timeout: float = ACQUIRE_TIMEOUT,
        statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
    ) -> PostgresStore:
        """Connect, create or migrate the namespace's schema, and open the pool; an
        unreachable or misconfigured server is ``StoreUnavailable`` within seconds."""
        if not NAMESPACE_PATTERN.match(namespace):
            raise InvalidStoreURL(f"namespace must match {NAMESPACE_PATTERN.pattern}")
        conninfo = _conninfo(url, namespace, connect_timeout, statement_timeout_ms)
        redacted = redact_url(url)
        password = urlsplit(url).password
        try:
            conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        except _DOWN as error:
            raise _unavailable(redacted, password, "connecting", error) from error
        try:
            async with conn:
                await _migrate(conn, namespace)
        except psycopg.Error as error:  # e.g. no right to create the schema: say so, once
            raise _unavailable(redacted, password, "preparing the schema", error) from error
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]] = AsyncConnectionPool(
            conninfo,
            kwargs={"autocommit": True},
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=acquire_timeout,
            reconnect_timeout=RECONNECT_TIMEOUT,
            name=f"authstate-{namespace}",
        )
        try:
            await pool.open(wait=True, timeout=open_timeout)
        except _DOWN as error:
            await pool.close()
            raise _unavailable(redacted, password, "opening the pool", error) from error
        return cls(pool, url=url, clock=clock or SystemClock(), namespace=namespace)

    def _fail(self, doing: str, error: BaseException) -> StoreUnavailable:
        return _unavailable(self._url, self._password, doing, error)

    async def _query(
        self,
        statement: str,
        params: Any,
        doing: str,
        *,
        read: bool = False,
        fetch: bool = True,
        prepare: bool | None = None,
    ) -> tuple[list[Row], int]:
        """Run one statement on a pooled connection: its rows and row count.

        ``getconn``/``putconn`` rather than ``pool.connection()``: in autocommit mode the
        connection's own context (a commit on exit) has nothing to do, and skipping it
        saves about 7 µs of a 150 µs read. ``fetch`` says whether the statement returns
        rows (asking the cursor, through ``description``, builds column objects)."""
        for attempt in (1, 2):
            conn = None
            try:
                conn = await self._pool.getconn()
                cur = await conn.execute(statement, params, prepare=prepare)
                rows = await cur.fetchall() if fetch else []
                return rows, cur.rowcount
            except _DOWN as error:
                broken = conn is not None and conn.broken
                if broken:
                    self._check_pool()
                elif conn is not None and isinstance(error, psycopg.errors.ReadOnlySqlTransaction):
                    # A demoted primary: closed, the connection leaves the pool, and its
                    # replacement goes through the URL's hosts again (with
                    # target_session_attrs=read-write, to the new primary).
                    await conn.close()
                if not (broken and read and attempt == 1):
                    raise self._fail(doing, error) from error
            except psycopg.DataError:
                # The message quotes the offending JSON, so it is neither kept nor chained.
                raise InvalidInput(
                    "PostgreSQL cannot store this value: text and jsonb hold no NUL "
                    "characters, and JSON has no NaN or infinity"
                ) from None
            finally:
                if conn is not None:
                    await self._pool.putconn(conn)
        raise AssertionError("unreachable")

    def _check_pool(self) -> None:
        """After one broken connection, test the idle ones in the background, so a
        server restart costs one failed call rather than one per pooled connection."""
        if self._checking is None or self._checking.done():
            self._checking = asyncio.get_running_loop().create_task(self._pool.check())

    def _live(self, expires_at: float | None) -> bool:
        return expires_at is None or expires_at > self._clock.now()

    async def get(self, kind: str, key: str) -> Record | None:
        rows, _ = await self._query(
            self._sql.get, (kind, key, self._clock.now()), "a read", read=True, prepare=True
        )
        if not rows:
            return None
        row = rows[0]
        return Record(key, row[0], row[1], row[2])

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
        await self._query(
            self._sql.put, (kind, key, Jsonb(value), expires_at, user_id), "a write", fetch=False
        )

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
        params = (kind, key, Jsonb(value), expires_at, user_id, self._clock.now())
        _, count = await self._query(self._sql.create, params, "a create", fetch=False)
        return count == 1

    async def patch(
        self, kind: str, key: str, fields: JSON, *, expires_at: float | None = None
    ) -> Record | None:
        params = (Jsonb(fields), expires_at, kind, key, self._clock.now())
        rows, _ = await self._query(self._patch, params, "a patch")
        return Record(key, rows[0][0], rows[0][1], rows[0][2]) if rows else None

    async def merge(
        self, kind: str, key: str, field: str, fields: JSON, *, max_bytes: int
    ) -> Record | None:
        """The row is locked (``FOR UPDATE``) for one short transaction, and the merge is
        ``merge_object`` in Python rather than ``jsonb ||``: one merge rule and one size
        measure on every backend (jsonb's text form, with its spaces, would measure a
        different size than the other stores)."""
        now = self._clock.now()
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cur = await conn.execute(self._merge_lock, (kind, key, now))
                row = await cur.fetchone()
                if row is None:
                    return None
                old, expires_at, user_id = row
                value = {**old, field: merge_object(old.get(field), fields, max_bytes)}
                await conn.execute(self._merge_write, (Jsonb(value), kind, key))
        except _DOWN as error:
            raise self._fail("a merge", error) from error
        except psycopg.DataError:
            raise InvalidInput(
                "PostgreSQL cannot store this value: text and jsonb hold no NUL "
                "characters, and JSON has no NaN or infinity"
            ) from None
        return Record(key, value, expires_at, user_id)

    async def delete(self, kind: str, key: str) -> Record | None:
        rows, _ = await self._query(self._sql.delete, (kind, key), "a delete")
        if not rows or not self._live(rows[0][1]):
            return None
        return Record(key, rows[0][0], rows[0][1], rows[0][2])

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
        if new_key == old_key:
            return await self.patch(kind, old_key, fields or {}, expires_at=expires_at)
        params = {
            "kind": kind,
            "old_key": old_key,
            "new_key": new_key,
            "fields": Jsonb(fields or {}),
            "expires_at": expires_at,
            "now": self._clock.now(),
        }
        rows, _ = await self._query(self._rename, params, "a rename")
        return Record(new_key, rows[0][0], rows[0][1], rows[0][2]) if rows else None

    async def list_by_user(self, kind: str, user_id: str) -> list[Record]:
        rows, _ = await self._query(
            self._sql.list_by_user, (kind, user_id, self._clock.now()), "a read", read=True
        )
        return [Record(*row) for row in rows]

    async def delete_by_user(
        self, kind: str, user_id: str, *, keep: str | None = None
    ) -> list[Record]:
        """One ``DELETE`` in a REPEATABLE READ transaction, retried on a serialization
        failure, so that a record moved meanwhile is never left behind.

        Under the default READ COMMITTED the ``DELETE`` sees the user's rows as of its
        snapshot: a ``rename`` (or a ``spend``'s successor) that commits while the
        ``DELETE`` waits for the old row's lock moves the record to a row the ``DELETE``
        cannot see, and it only skips the vanished old row, so the moved record survives
        "log out everywhere". Under REPEATABLE READ that same moment (a row in the
        snapshot changed or deleted by a concurrent commit) is an error instead, and the
        retry's fresh snapshot sees the moved record. A move that starts after the
        ``DELETE`` took a row's lock finds the row gone and moves nothing. Only this rare
        operation pays (measured in ``benchmarks/pg_delete_by_user.py``): ``rename`` and
        ``spend`` stay one autocommit statement, and a per-user lock they would all take
        would cost them a round trip each."""
        params = (kind, user_id, keep or "")
        for _ in range(SERIALIZATION_RETRIES):
            try:
                async with self._pool.connection() as conn:
                    try:
                        async with conn.transaction():
                            await conn.execute(REPEATABLE_READ)
                            cur = await conn.execute(self._sql.delete_by_user, params)
                            rows = await cur.fetchall()
                    except psycopg.errors.SerializationFailure:
                        continue
            except _DOWN as error:
                raise self._fail("a delete", error) from error
            return [Record(*row) for row in rows if self._live(row[2])]
        raise self._fail(
            "a delete", RuntimeError(f"{SERIALIZATION_RETRIES} concurrent-change retries")
        )

    async def scan(self, kind: str, *, prefix: str = "", limit: int = 1000) -> list[Record]:
        end = prefix_end(prefix)
        now = self._clock.now()
        if end is None:
            rows, _ = await self._query(
                self._sql.scan_open, (kind, prefix, now, limit), "a scan", read=True
            )
        else:
            rows, _ = await self._query(
                self._sql.scan, (kind, prefix, end, now, limit), "a scan", read=True
            )
        return [Record(*row) for row in rows]

    async def incr(self, kind: str, key: str, *, expires_at: float | None = None) -> int:
        check_kind_key(kind, key)
        params = {"kind": kind, "key": key, "expires_at": expires_at, "now": self._clock.now()}
        rows, _ = await self._query(self._incr, params, "an increment")
        return int(rows[0][0])

    async def incr_below(
        self, kind: str, key: str, *, limit: int, expires_at: float | None = None
    ) -> int | None:
        check_kind_key(kind, key)
        check_limit(limit)
        params = {"kind": kind, "key": key, "expires_at": expires_at,
                  "now": self._clock.now(), "limit": limit}
        rows, _ = await self._query(self._incr_below, params, "an increment")
        return int(rows[0][0]) if rows else None

    async def decr(self, kind: str, key: str) -> int | None:
        params = {"kind": kind, "key": key, "now": self._clock.now()}
        rows, _ = await self._query(self._decr, params, "a decrement")
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
        params = {
            "kind": kind,
            "key": key,
            "now": self._clock.now(),
            "fields": Jsonb(fields),
            "new_key": new_key,
            "new_value": Jsonb(new_value),
            "new_expires_at": new_expires_at,
            "user_id": user_id,
            "spent_expires_at": spent_expires_at,
        }
        rows, _ = await self._query(self._spend, params, "a spend")
        if not rows:
            return None, False
        value, expires_at, owner, rotated = rows[0]
        return Record(key, value, expires_at, owner), bool(rotated)

    async def append_event(self, event: JSON) -> str:
        user_id = event.get("user_id")
        params = (
            float(event["ts"]),
            event.get("type"),
            None if user_id is None else str(user_id),
            Jsonb(event),
        )
        rows, _ = await self._query(self._sql.append_event, params, "an audit write")
        return audit_id(rows[0][0])

    async def query_events(
        self,
        *,
        user_id: str | None = None,
        type: str | None = None,
        since: float | None = None,
        before_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditRow]:
        query, params = self._sql.query_events(
            user_id=user_id, type=type, since=since, before_id=before_id, limit=limit
        )
        rows, _ = await self._query(query, params, "an audit query", read=True)
        return [AuditRow(audit_id(row[0]), row[1]) for row in rows]

    async def prune_events(self, before: float) -> int:
        _, count = await self._query(
            self._sql.prune_events, (before,), "pruning audit events", fetch=False
        )
        return count

    async def scrub_audit(self, user_id: str, fields: tuple[str, ...]) -> int:
        """The user's events are read ``FOR UPDATE`` (through the ``audit_user`` index)
        and rewritten by id in the same transaction."""
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cur = await conn.execute(self._user_events_locked, (user_id,))
                changes = [
                    (Jsonb(scrubbed), row[0]) for row in await cur.fetchall()
                    if (scrubbed := scrub_event(row[1], fields)) is not None
                ]
                if changes:
                    async with conn.cursor() as writer:
                        await writer.executemany(self._sql.rewrite_event, changes)
        except _DOWN as error:
            raise self._fail("scrubbing audit events", error) from error
        return len(changes)

    async def sweep(self, *, batch: int = 1000) -> int:
        _, count = await self._query(
            self.sweep_statement, (self._clock.now(), batch), "a sweep", fetch=False
        )
        return count

    async def ping(self) -> None:
        await self._query("SELECT 1", (), "a ping", read=True)

    async def drop_namespace(self) -> None:
        """Drop this namespace's schema and everything in it (tests, uninstall)."""
        drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.namespace))
        try:
            async with self._pool.connection() as conn:
                await conn.execute(drop)
        except _DOWN as error:
            raise self._fail("dropping the namespace", error) from error

    async def close(self) -> None:
        if self._checking is not None:
            self._checking.cancel()
        await self._pool.close()


def _conninfo(url: str, namespace: str, connect_timeout: int, statement_timeout_ms: int) -> str:
    """The URL as libpq connection parameters, with authstate's timeouts added where the
    URL does not set its own (libpq's defaults wait forever for a dead server), and an
    application name that shows the namespace in ``pg_stat_activity``."""
    try:
        params: dict[str, Any] = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        # libpq's message quotes the whole URI, password included: not chained.
        raise InvalidStoreURL(f"malformed PostgreSQL URL {redact_url(url)!r}") from None
    params.setdefault("connect_timeout", str(connect_timeout))
    params.setdefault("application_name", f"authstate/{namespace}")
    for name, value in KEEPALIVES.items():
        params.setdefault(name, value)
    timeout = f"-c statement_timeout={int(statement_timeout_ms)}"
    params["options"] = f"{timeout} {params.get('options') or ''}".strip()
    return make_conninfo("", **params)


async def _migrate(conn: psycopg.AsyncConnection[Row], namespace: str) -> None:
    schema = sql.Identifier(namespace)
    async with conn.transaction():
        # A migration (or waiting for another process's) may take longer than a request.
        await conn.execute("SET LOCAL statement_timeout = 0")
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"authstate:{namespace}",)
        )
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        await conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.schema_version (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        ).format(schema))
        cur = await conn.execute(
            sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_version").format(schema)
        )
        row = await cur.fetchone()
        version = int(row[0]) if row is not None else 0
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"PostgreSQL schema {namespace} has version {version}; this authstate knows "
                f"up to {SCHEMA_VERSION}: upgrade authstate"
            )
        for number in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[number]:
                await conn.execute(sql.SQL(statement).format(schema=schema))
            await conn.execute(
                sql.SQL("INSERT INTO {}.schema_version (version) VALUES (%s)").format(schema),
                (number + 1,),
            )


def _unavailable(
    url: str, password: str | None, doing: str, error: BaseException
) -> StoreUnavailable:
    reason = (str(error).strip().splitlines() or [error.__class__.__name__])[0]
    if password:
        reason = reason.replace(password, "***")
    return StoreUnavailable(f"PostgreSQL store at {url} unavailable: {doing} failed ({reason})")
