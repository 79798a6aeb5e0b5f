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
from typing import Any

from authstate.bus.base import JSON, BusListener, Deliver, Resubscribing, decode, encode
from authstate.errors import AuthstateError, BusUnavailable, MissingDependencyError
from authstate.stores.redis_urls import SENTINEL_SCHEMES

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
_FAILURES: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError, redis_errors.TimeoutError, OSError, AuthstateError
)


class RedisBus(Resubscribing):
    name = "redis"
    _failures = _FAILURES
    _events: tuple[str, ...] = ("message",)  # reply types that carry an event
    _dropped: tuple[str, ...] = ()  # reply types that end the subscription

    def __init__(self, url: str, *, channel: str) -> None:
        super().__init__("revocation bus (redis pub/sub)")
        self._url = url
        self._channel = channel
        self._publisher: Redis | None = None

    def _connect(self, retries: int, **options: Any) -> Redis:
        """A client of the server (for a Sentinel URL: of the primary the sentinels name
        now, followed on each new connection)."""
        settings: dict[str, Any] = {
            "retry": Retry(NoBackoff(), retries),
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_timeout": COMMAND_TIMEOUT,
            **options,
        }
        if self._url.split("://", 1)[0].lower() in SENTINEL_SCHEMES:
            from authstate.stores.redis_sentinel import sentinel_client

            return sentinel_client(self._url, **settings)
        return Redis.from_url(self._url, **settings)

    def _client(self) -> Redis:
        return self._connect(0, socket_keepalive=True)

    async def start(self, listener: BusListener) -> None:
        self._publisher = self._connect(1)
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
        while not self._closing:
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
            if message["type"] in self._dropped:
                raise BusUnavailable("redis ended the subscription")
            if message["type"] in self._events:
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

