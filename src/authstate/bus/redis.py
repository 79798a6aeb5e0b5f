"""Redis pub/sub as the revocation bus, on the server the deployment already runs.

Pub/sub is fire-and-forget: a subscriber that is disconnected misses what was published
meanwhile. So the client's own silent reconnect-and-resubscribe is switched off (no
retries), every failure tears the subscription down, and each new subscription is
announced to the listener, which resynchronises from the store before trusting its copy.
A PING every few idle seconds, with a deadline for the PONG, catches a half-open socket.
"""

from __future__ import annotations

import contextlib
import logging
import time

from authstate.bus.base import JSON, BusListener, Deliver, Resubscribing, decode, encode
from authstate.errors import AuthstateError, BusUnavailable, MissingDependencyError

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


class RedisBus(Resubscribing):
    name = "redis"
    _failures = _FAILURES

    def __init__(self, url: str, *, channel: str) -> None:
        super().__init__("revocation bus (redis pub/sub)")
        self._url = url
        self._channel = channel
        self._publisher: Redis | None = None

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
        await self._listen(listener, name="authstate-redis-bus")

    async def _subscribe(self, stack: contextlib.AsyncExitStack, listener: BusListener) -> Deliver:
        client = self._client()
        stack.push_async_callback(self._quietly, client.aclose)
        pubsub = client.pubsub()
        stack.push_async_callback(self._quietly, pubsub.aclose)
        await self._confirm(pubsub)
        return lambda: self._deliver(pubsub, listener)

    async def _confirm(self, pubsub: PubSub) -> None:
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
        await self._stop_listening()
        if self._publisher is not None:
            await self._quietly(self._publisher.aclose)
            self._publisher = None

