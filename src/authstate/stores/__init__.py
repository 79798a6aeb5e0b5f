"""Stores chosen by URL: ``memory://``, ``sqlite:///path.db``, ``redis://…`` (also
``redis+cluster://…`` and ``redis+sentinel://…``), ``postgresql://…``.

Backends are imported only when their scheme is asked for, so a missing driver is a
``MissingDependencyError`` for that backend alone.
"""

from __future__ import annotations

from authstate.clock import Clock, SystemClock
from authstate.errors import InvalidStoreURL
from authstate.stores.base import NAMESPACE_PATTERN, AuditRow, Record, Store, redact_url

__all__ = [
    "NAMESPACE_PATTERN", "SCHEMES", "AuditRow", "Record", "Store", "open_store", "redact_url",
]

SCHEMES = (
    "memory://",
    "sqlite:///path.db",
    "redis://host:port/db",
    "redis+cluster://host:port,host:port/",
    "redis+sentinel://host:port,host:port/SERVICE/db",
    "postgresql://…",
)


async def open_store(
    url: str, *, clock: Clock | None = None, namespace: str = "authstate"
) -> Store:
    """Open (and for SQL, migrate) the store at ``url`` and check that it answers.

    ``namespace`` is the Redis key prefix or the PostgreSQL schema, so that separate
    deployments or test runs never see each other's data.
    """
    clock = clock or SystemClock()
    if not NAMESPACE_PATTERN.match(namespace):
        raise InvalidStoreURL(f"namespace must match {NAMESPACE_PATTERN.pattern}")
    if not isinstance(url, str) or "://" not in url:
        raise InvalidStoreURL(
            f"not a store URL: {redact_url(str(url))!r}; accepted: {', '.join(SCHEMES)}"
        )
    scheme = url.split("://", 1)[0].lower()
    store: Store
    if scheme == "memory":
        from authstate.stores.memory import MemoryStore

        store = MemoryStore(clock=clock)
    elif scheme == "sqlite":
        from authstate.stores.sqlite import SQLiteStore

        store = await SQLiteStore.open(url, clock=clock)
    elif scheme in ("redis", "rediss", "unix"):
        from authstate.stores.redis import RedisStore

        store = await RedisStore.open(url, clock=clock, namespace=namespace)
    elif scheme in ("redis+cluster", "rediss+cluster"):
        from authstate.stores.redis_cluster import RedisClusterStore

        store = await RedisClusterStore.open(url, clock=clock, namespace=namespace)
    elif scheme in ("redis+sentinel", "rediss+sentinel"):
        from authstate.stores.redis_sentinel import open_sentinel_store

        store = await open_sentinel_store(url, clock=clock, namespace=namespace)
    elif scheme in ("postgresql", "postgres"):
        from authstate.stores.postgres import PostgresStore

        store = await PostgresStore.open(url, clock=clock, namespace=namespace)
    else:
        raise InvalidStoreURL(
            f"unknown store scheme {scheme!r} in {redact_url(url)!r}; "
            f"accepted: {', '.join(SCHEMES)}"
        )
    return store
