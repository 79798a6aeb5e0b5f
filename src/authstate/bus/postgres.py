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

from authstate.bus.base import JSON, BusListener, Deliver, Resubscribing, decode, encode
from authstate.errors import AuthstateError, BusUnavailable, MissingDependencyError

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


class PostgresBus(Resubscribing):
    name = "postgres"
    _failures = _FAILURES

    def __init__(self, url: str, *, channel: str, application_name: str) -> None:
        if len(channel.encode()) > 63:
            raise ValueError("a PostgreSQL channel name is at most 63 bytes")
        super().__init__("revocation bus (postgresql notify)")
        self._url = url
        self._channel = channel
        self._application_name = application_name[:63]
        self._publisher: psycopg.AsyncConnection[object] | None = None
        self._publish_lock = asyncio.Lock()

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
        await self._listen(listener, name="authstate-pg-bus")

    async def _subscribe(self, stack: contextlib.AsyncExitStack, listener: BusListener) -> Deliver:
        conn = await self._connect("listen")
        stack.push_async_callback(self._quietly, conn.close)
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        return lambda: self._deliver(conn, listener)

    async def _deliver(
        self, conn: psycopg.AsyncConnection[object], listener: BusListener
    ) -> None:
        while not self._closing:
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
            await self._quietly(self._publisher.close)
            self._publisher = None

    async def close(self) -> None:
        await self._stop_listening()
        async with self._publish_lock:
            await self._drop_publisher()
