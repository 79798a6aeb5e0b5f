"""Revocation buses chosen by URL: ``memory://``, ``redis://…`` (and its ``+cluster`` and
``+sentinel`` forms), ``postgresql://…``.

With no explicit ``bus`` setting, the bus follows the store, so a deployment runs no
engine it does not already run: a Redis store publishes on the same Redis, a PostgreSQL
store NOTIFYs on the same database, the memory store uses the in-process bus, and SQLite
has no bus (its verifiers read the store on each request instead).
"""

from __future__ import annotations

from authstate.bus.base import Bus, BusListener
from authstate.config import Settings
from authstate.errors import ConfigurationError
from authstate.stores import redact_url
from authstate.stores.redis_urls import CLUSTER_SCHEMES, SENTINEL_SCHEMES

__all__ = ["Bus", "BusListener", "bus_for", "open_bus"]


def bus_for(settings: Settings, store_scheme: str) -> Bus | None:
    """The bus a deployment uses with a store of ``store_scheme``, not yet started; None
    when revocation is not pushed (its verifiers then read the store per request)."""
    if not settings.revocation.push:
        return None
    if settings.revocation.bus:
        return open_bus(settings.revocation.bus, namespace=settings.store.namespace)
    if store_scheme == "memory":
        return open_bus("memory://", namespace=settings.store.namespace)
    configured = settings.store.url.split("://", 1)[0].lower()
    same_engine = {
        "redis": ("redis", "rediss", "unix", *CLUSTER_SCHEMES, *SENTINEL_SCHEMES),
        "postgresql": ("postgresql", "postgres"),
    }
    if configured in same_engine.get(store_scheme, ()):
        return open_bus(settings.store.url, namespace=settings.store.namespace)
    return None


def open_bus(url: str, *, namespace: str) -> Bus:
    """A bus for ``url`` whose channel is private to ``namespace``; not yet started."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        from authstate.bus.memory import MemoryBus

        return MemoryBus()
    if scheme in CLUSTER_SCHEMES:
        from authstate.bus.redis_cluster import RedisClusterBus

        return RedisClusterBus(url, channel=f"{namespace}:revocation")
    if scheme in ("redis", "rediss", "unix", *SENTINEL_SCHEMES):
        from authstate.bus.redis import RedisBus

        return RedisBus(url, channel=f"{namespace}:revocation")
    if scheme in ("postgresql", "postgres"):
        from authstate.bus.postgres import PostgresBus

        return PostgresBus(
            url,
            channel=f"authstate_revocation_{namespace}",
            application_name=f"authstate-bus-{namespace}",
        )
    raise ConfigurationError(
        f"unknown bus scheme in {redact_url(url)!r}; accepted: memory://, redis://, "
        "redis+cluster://, redis+sentinel://, postgresql://"
    )
