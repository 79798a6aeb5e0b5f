"""The Redis store on a primary watched by Redis Sentinel.

A Sentinel deployment is one primary with replicas, so the store is ``RedisStore``
unchanged (every script keeps its single-server atomicity); only its connections come
from redis-py's ``SentinelConnectionPool``, which asks the sentinels for the current
primary whenever it opens a connection and drops connections to a primary that was
demoted (a READONLY reply). During a failover requests fail with ``StoreUnavailable``
(503, fail closed); once the sentinels have promoted a replica, the next connection goes
to it, with no restart. Writes acknowledged by the old primary but not yet replicated
when it died are lost, as Redis' asynchronous replication implies.
"""

from __future__ import annotations

from typing import Any

from authstate.clock import Clock
from authstate.errors import MissingDependencyError, StoreUnavailable
from authstate.stores.redis import (
    AUDIT_MAX,
    COMMAND_TIMEOUT,
    CONNECT_TIMEOUT,
    HEALTH_CHECK_INTERVAL,
    RedisStore,
)
from authstate.stores.redis_urls import parse

try:
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
except ImportError as missing:  # pragma: no cover - redis is a core dependency today
    raise MissingDependencyError("redis", "redis") from missing


def sentinel_client(url: str, **options: Any) -> Redis:
    """A client of the current primary of the service named in a ``redis+sentinel://``
    URL; it follows failovers by asking the sentinels on every new connection."""
    parsed = parse(url)
    assert parsed.service is not None  # parse() demands it for sentinel URLs
    timeouts = {"socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": COMMAND_TIMEOUT}
    # one quick retry when asking a sentinel (redis-py's default backs off for seconds)
    quick = Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(parsed.hosts), sentinel_kwargs={**timeouts, "retry": quick}
    )
    settings: dict[str, Any] = {
        **timeouts,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "db": parsed.db,
        "username": parsed.username,
        "password": parsed.password,
        "retry": Retry(
            ExponentialBackoff(cap=0.05, base=0.01),
            retries=1,
            supported_errors=(RedisConnectionError,),
        ),
    }
    if parsed.tls:
        settings["ssl"] = True
    settings.update(options)
    client: Redis = sentinel.master_for(parsed.service, redis_class=Redis, **settings)
    return client


async def open_sentinel_store(
    url: str,
    *,
    clock: Clock | None = None,
    namespace: str = "authstate",
    audit_max: int = AUDIT_MAX,
) -> RedisStore:
    """Connect to the primary the sentinels name and check that it answers."""
    store = RedisStore(
        sentinel_client(url), url=url, clock=clock, namespace=namespace, audit_max=audit_max
    )
    try:
        await store.ping()
    except StoreUnavailable:
        await store.close()
        raise
    return store
