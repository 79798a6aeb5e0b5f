"""Redis pub/sub as the revocation bus, on the server the deployment already runs.

Pub/sub is fire-and-forget: a subscriber that is disconnected misses what was published
meanwhile. So the client's own silent reconnect-and-resubscribe is switched off (no
retries), every failure tears the subscription down, and each new subscription is
announced to the listener, which resynchronises from the store before trusting its copy.
A PING every few idle seconds, with a deadline for the PONG, catches a half-open socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from authstate.bus.base import JSON, BusListener, decode, encode, next_delay, supervise
from authstate.errors import AuthstateError, BusUnavailable, MissingDependencyError
from authstate.outage import OutageLog

try:
    from redis import exceptions as redis_errors
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError as missing:  # pragma: no cover - redis is a core dependency today
    raise MissingDependencyError("redis", "redis") from missing

logger = logging.getLogger("authstate.bus")

CONNECT_TIMEOUT = 0.5
COMMAND_TIMEOUT = 2.0
PING_INTERVAL = 2.0  # idle seconds before a PING; the PONG must follow within as long
_FAILURES = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError, AuthstateError)


class RedisBus:
    name = "redis"

    def __init__(self, url: str, *, channel: str) -> None:
        self._url = url
        self._channel = channel
        self._publisher: Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()
        self._outage = OutageLog(logger, "revocation bus (redis pub/sub)")

    def _client(self) -> Redis:
        return Redis.from_url(
            self._url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
            socket_keepalive=True,
        )

    async def start(self, listener: BusListener) -> None:
        self._publisher = Redis.from_url(
            self._url,
            retry=Retry(NoBackoff(), 1),
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
        )
        self._task = asyncio.create_task(self._run(listener), name="authstate-redis-bus")
        supervise(self._task, listener, self._first_attempt)
        await self._first_attempt.wait()

    async def _run(self, listener: BusListener) -> None:
        delay = 0.0
        while True:
            client = self._client()
            pubsub = client.pubsub()
            try:
                await self._subscribe(pubsub)
                await listener.bus_connected()
                self._outage.recovered()
                self._first_attempt.set()
                delay = 0.0
                await self._deliver(pubsub, listener)
            except _FAILURES as error:
                self._outage.failed(error)
                listener.bus_lost(error)
                self._first_attempt.set()
            finally:
                with contextlib.suppress(*_FAILURES):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(*_FAILURES):
                    await client.aclose()
            delay = next_delay(delay)
            await asyncio.sleep(delay)

    async def _subscribe(self, pubsub: PubSub) -> None:
        """Subscribe and wait for Redis to confirm, so that nothing published after the
        listener's resync can slip past."""
        await pubsub.subscribe(self._channel)
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while time.monotonic() < deadline:
            message = await pubsub.get_message(timeout=COMMAND_TIMEOUT)
            if message is not None and message["type"] == "subscribe":
                return
        raise BusUnavailable("redis did not confirm the subscription")

    async def _deliver(self, pubsub: PubSub, listener: BusListener) -> None:
        pinged_at: float | None = None
        while True:
            message = await pubsub.get_message(timeout=PING_INTERVAL)
            now = time.monotonic()
            if message is None:
                if pinged_at is None:
                    await pubsub.ping()
                    pinged_at = now
                elif now - pinged_at > PING_INTERVAL:
                    raise BusUnavailable("redis did not answer a PING")
                continue
            pinged_at = None
            if message["type"] == "message":
                event = decode(message["data"])
                if event is not None:
                    listener.bus_event(event)

    async def publish(self, event: JSON) -> None:
        if self._publisher is None:
            raise BusUnavailable("bus not started")
        try:
            await self._publisher.publish(self._channel, encode(event))
        except _FAILURES as error:
            raise BusUnavailable(f"cannot publish on redis: {type(error).__name__}") from error

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._publisher is not None:
            with contextlib.suppress(*_FAILURES):
                await self._publisher.aclose()
            self._publisher = None

