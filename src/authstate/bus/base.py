"""What a revocation bus must do: carry small JSON events to every verifier process.

A bus is only a pipe. The store stays the source of truth for what is revoked; the bus
makes the news arrive in well under a second so that a verifier can answer from memory.
Because a pipe can drop messages while it is down, a bus tells its listener when it has
(re)subscribed, and the listener resynchronises from the store *before* it trusts its
local copy again; it also says when the connection is lost, so the listener can fall back
instead of silently trusting a copy that stopped receiving news.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from authstate.outage import OutageLog

JSON = dict[str, Any]

logger = logging.getLogger("authstate.bus")

EVENT_MAX_BYTES = 4000  # well under PostgreSQL's 8000-byte NOTIFY payload limit
RECONNECT_MIN = 0.05
RECONNECT_MAX = 2.0
STOP_RETRY = 0.5  # seconds between cancels of a listener that has not stopped


class BusListener(Protocol):
    """The receiving side; one per bus."""

    async def bus_connected(self) -> None:
        """Called after every (re)subscription, before events are trusted again. Raising
        (the store is down, say) makes the bus drop the connection and retry."""

    def bus_event(self, event: JSON) -> None:
        """One event, as published."""

    def bus_lost(self, error: BaseException) -> None:
        """The subscription is gone; events may be lost until ``bus_connected``."""


class Bus(Protocol):
    """The publishing and subscribing side, one per process."""

    name: str

    async def start(self, listener: BusListener) -> None:
        """Begin delivering events to ``listener`` (in the background for network buses).

        Returns once the first subscription is established, or once the first attempt has
        failed (the bus then keeps retrying and the listener has been told it is lost)."""

    async def publish(self, event: JSON) -> None:
        """Send an event to every listener; raise ``BusUnavailable`` when it cannot."""

    async def close(self) -> None:
        """Stop listening and release connections."""


def encode(event: JSON) -> str:
    data = json.dumps(event, separators=(",", ":"), sort_keys=True)
    if len(data) > EVENT_MAX_BYTES:
        raise ValueError("bus event too large")
    return data


def decode(data: str | bytes) -> JSON | None:
    """The event, or None when the payload is not a JSON object (a foreign publisher on
    the same channel must not crash the listener)."""
    try:
        event = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return event if isinstance(event, dict) else None


def next_delay(delay: float) -> float:
    """Reconnection backoff: doubling from ``RECONNECT_MIN`` up to ``RECONNECT_MAX``, so a
    restarted server is picked up within about two seconds."""
    return min(RECONNECT_MAX, max(RECONNECT_MIN, delay * 2))


def supervise(task: asyncio.Task[None], listener: BusListener, ready: asyncio.Event) -> None:
    """A listener loop that ends other than by being cancelled is a bug; make it fail
    closed (the verifier falls back) rather than leave a copy that hears nothing."""

    def died(task: asyncio.Task[None]) -> None:
        ready.set()
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.error("revocation bus listener crashed", exc_info=error)
            listener.bus_lost(error)

    task.add_done_callback(died)


Deliver = Callable[[], Awaitable[None]]


class Resubscribing:
    """The listening half both network buses share, so their outage handling cannot drift:
    subscribe, let the listener resynchronise, deliver until the connection fails, tell
    the listener it is lost, back off, and start again.

    A backend provides ``_failures`` (what counts as the connection going away) and
    ``_subscribe``, which connects, registers the cleanups on ``stack`` and returns the
    loop that delivers events until the connection fails.
    """

    _failures: tuple[type[BaseException], ...]

    def __init__(self, what: str) -> None:
        self._task: asyncio.Task[None] | None = None
        self._closing = False  # the delivery loops stop at their next turn
        self._first_attempt = asyncio.Event()
        self._outage = OutageLog(logger, what)

    async def _subscribe(
        self, stack: contextlib.AsyncExitStack, listener: BusListener
    ) -> Deliver:  # pragma: no cover - each backend overrides it
        raise NotImplementedError

    async def _listen(self, listener: BusListener, *, name: str) -> None:
        self._closing = False
        self._task = asyncio.create_task(self._run(listener), name=name)
        supervise(self._task, listener, self._first_attempt)
        await self._first_attempt.wait()

    async def _run(self, listener: BusListener) -> None:
        delay = 0.0
        while not self._closing:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    deliver = await self._subscribe(stack, listener)
                    await listener.bus_connected()
                    self._outage.recovered()
                    self._first_attempt.set()
                    delay = 0.0
                    await deliver()
                except self._failures as error:
                    self._outage.failed(error)
                    listener.bus_lost(error)
                    self._first_attempt.set()
            delay = next_delay(delay)
            await asyncio.sleep(delay)

    async def _quietly(self, close: Callable[[], Awaitable[object]]) -> None:
        """Release a connection that may already be broken."""
        with contextlib.suppress(*self._failures):
            await close()

    async def _stop_listening(self) -> None:
        """Stop the listener, even when a cancellation is lost: on Python 3.11 a cancel
        that lands as a client's own read timeout fires (``asyncio.timeout`` inside
        redis-py's ``get_message``, psycopg's ``notifies``) can be taken for the timeout
        and swallowed, and a plain ``await`` of the task then waited forever (seen once as
        a hung test teardown). So the loops also check ``_closing``, and the cancel is
        repeated until the task has ended."""
        task, self._task = self._task, None
        if task is None:
            return
        self._closing = True
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_RETRY)
        with contextlib.suppress(asyncio.CancelledError):
            task.result()
