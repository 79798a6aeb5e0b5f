"""PostgreSQL LISTEN/NOTIFY as the revocation bus, on the database the store already uses.

The listener holds one autocommit connection that has run ``LISTEN``; every notification
on the channel arrives through ``notifies()``. When that connection breaks (server
restart, ``pg_terminate_backend``, network) the listener is told it is lost, reconnects
with backoff, LISTENs again and lets the listener resynchronise from the store. An idle
connection is probed with ``SELECT 1`` under a deadline, and TCP keepalives are on, so a
silently dead peer is noticed within seconds. Publishing uses its own connection:
``pg_notify`` with the channel as a parameter, so no identifier is ever spliced by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from authstate.bus.base import JSON, BusListener, decode, encode, next_delay, supervise
from authstate.errors import AuthstateError, BusUnavailable, MissingDependencyError
from authstate.outage import OutageLog

try:
    import psycopg
    from psycopg import sql
except ImportError as missing:  # pragma: no cover - psycopg is a core dependency today
    raise MissingDependencyError("psycopg", "postgres") from missing

logger = logging.getLogger("authstate.bus")

CONNECT_TIMEOUT = 2  # seconds; libpq takes an integer
PROBE_INTERVAL = 2.0
PROBE_TIMEOUT = 2.0
_FAILURES = (psycopg.Error, OSError, TimeoutError, AuthstateError)


class PostgresBus:
    name = "postgres"

    def __init__(self, url: str, *, channel: str, application_name: str) -> None:
        if len(channel.encode()) > 63:
            raise ValueError("a PostgreSQL channel name is at most 63 bytes")
        self._url = url
        self._channel = channel
        self._application_name = application_name[:63]
        self._publisher: psycopg.AsyncConnection[object] | None = None
        self._publish_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()
        self._outage = OutageLog(logger, "revocation bus (postgresql notify)")

    async def _connect(self, role: str) -> psycopg.AsyncConnection[object]:
        conn: psycopg.AsyncConnection[object] = await psycopg.AsyncConnection.connect(
            self._url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=f"{self._application_name}-{role}"[:63],
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=2,
        )
        return conn

    async def start(self, listener: BusListener) -> None:
        self._task = asyncio.create_task(self._run(listener), name="authstate-pg-bus")
        supervise(self._task, listener, self._first_attempt)
        await self._first_attempt.wait()

    async def _run(self, listener: BusListener) -> None:
        delay = 0.0
        while True:
            conn: psycopg.AsyncConnection[object] | None = None
            try:
                conn = await self._connect("listen")
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                await listener.bus_connected()
                self._outage.recovered()
                self._first_attempt.set()
                delay = 0.0
                await self._deliver(conn, listener)
            except _FAILURES as error:
                self._outage.failed(error)
                listener.bus_lost(error)
                self._first_attempt.set()
            finally:
                if conn is not None:
                    with contextlib.suppress(*_FAILURES):
                        await conn.close()
            delay = next_delay(delay)
            await asyncio.sleep(delay)

    async def _deliver(
        self, conn: psycopg.AsyncConnection[object], listener: BusListener
    ) -> None:
        while True:
            async for notify in conn.notifies(timeout=PROBE_INTERVAL):
                event = decode(notify.payload)
                if event is not None:
                    listener.bus_event(event)
            async with asyncio.timeout(PROBE_TIMEOUT):
                await conn.execute("SELECT 1")

    async def publish(self, event: JSON) -> None:
        data = encode(event)
        async with self._publish_lock:
            for attempt in (1, 2):
                try:
                    if self._publisher is None or self._publisher.closed:
                        self._publisher = await self._connect("notify")
                    await self._publisher.execute(
                        "SELECT pg_notify(%s, %s)", (self._channel, data)
                    )
                    return
                except _FAILURES as error:
                    await self._drop_publisher()
                    if attempt == 2:
                        raise BusUnavailable(
                            f"cannot notify on postgresql: {type(error).__name__}"
                        ) from error

    async def _drop_publisher(self) -> None:
        if self._publisher is not None:
            with contextlib.suppress(*_FAILURES):
                await self._publisher.close()
            self._publisher = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        async with self._publish_lock:
            await self._drop_publisher()
