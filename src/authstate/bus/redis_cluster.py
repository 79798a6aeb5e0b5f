"""The revocation bus on a Redis Cluster: sharded pub/sub (Redis 7 ``SSUBSCRIBE`` /
``SPUBLISH``).

Classic ``PUBLISH`` on a cluster is broadcast to every node over the cluster bus, which
costs each node every message; a shard channel lives in the hash slot of its name, so
the revocation channel is carried by one shard (its primary and replicas) and a
subscriber connects to that shard alone.

The subscriber asks the cluster which node serves the channel's slot and subscribes
there on a plain connection. When that node dies, or the slot moves (Redis then sends a
``sunsubscribe`` for the channel), the subscription is torn down, the listener is told
it is lost, and the next attempt asks the cluster again, so it follows a failover to the
promoted replica. As for every bus (``bus/base.py``), the listener resynchronises from
the store after each subscription before trusting its copy again.

redis-py's asyncio client has sharded pub/sub only from 8.0 (``PubSub.ssubscribe``,
``RedisCluster.spublish``), and pyproject allows 6.0. Before 8.0 the bus falls back to
classic ``SUBSCRIBE`` / ``PUBLISH`` on the same node (the one serving the channel's slot):
classic messages reach every node, so delivery and failover behave the same, at the cost
of the broadcast.
"""

from __future__ import annotations

import contextlib
import time

from authstate.bus.base import JSON, BusListener, Deliver, Resubscribing, encode
from authstate.bus.redis import _FAILURES, COMMAND_TIMEOUT, CONNECT_TIMEOUT, RedisBus
from authstate.errors import BusUnavailable, MissingDependencyError

try:
    from redis import exceptions as redis_errors
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError as missing:  # pragma: no cover - redis is a core dependency today
    raise MissingDependencyError("redis", "redis") from missing

# a slot without a primary (mid-failover) is the connection going away, not a bug
_CLUSTER_FAILURES: tuple[type[BaseException], ...] = (
    *_FAILURES,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.SlotNotCoveredError,
)

# redis-py >= 8.0; before that, classic pub/sub (see the module docstring)
SHARDED = hasattr(RedisCluster, "spublish") and hasattr(PubSub, "ssubscribe")


class RedisClusterBus(RedisBus):
    name = "redis-cluster"
    _failures = _CLUSTER_FAILURES

    def __init__(self, url: str, *, channel: str, sharded: bool = SHARDED) -> None:
        kind = "sharded pub/sub" if sharded else "pub/sub"
        Resubscribing.__init__(self, f"revocation bus (redis cluster {kind})")
        self._url = url
        self._channel = channel
        self._sharded = sharded
        self._events = ("smessage",) if sharded else ("message",)
        # the slot moved to another node (resharding): resubscribe where it lives now
        self._dropped = ("sunsubscribe",) if sharded else ()
        self._cluster_publisher: RedisCluster | None = None

    def _cluster(self, retries: int) -> RedisCluster:
        from authstate.stores.redis_cluster import cluster_client

        return cluster_client(self._url, retry=Retry(NoBackoff(), retries))

    async def start(self, listener: BusListener) -> None:
        self._cluster_publisher = self._cluster(1)
        await self._listen(listener, name="authstate-redis-cluster-bus")

    async def _subscribe(self, stack: contextlib.AsyncExitStack, listener: BusListener) -> Deliver:
        topology = self._cluster(0)
        stack.push_async_callback(self._quietly, topology.aclose)
        await topology.initialize()
        node = topology.get_node_from_key(self._channel)
        if node is None:
            raise BusUnavailable("no cluster node serves the revocation channel")
        client = Redis(
            host=node.host,
            port=int(node.port),
            username=topology.connection_kwargs.get("username"),
            password=topology.connection_kwargs.get("password"),
            ssl=bool(topology.connection_kwargs.get("ssl")),
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
            socket_keepalive=True,
        )
        stack.push_async_callback(self._quietly, client.aclose)
        pubsub = client.pubsub()
        stack.push_async_callback(self._quietly, pubsub.aclose)
        await self._confirm(pubsub)
        return lambda: self._deliver(pubsub, listener)

    async def _confirm(self, pubsub: PubSub) -> None:
        """Subscribe and wait for the shard to confirm (see ``RedisBus._confirm``)."""
        if self._sharded:
            await pubsub.ssubscribe(self._channel)
        else:
            await pubsub.subscribe(self._channel)
        confirmation = "ssubscribe" if self._sharded else "subscribe"
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while time.monotonic() < deadline:
            message = await pubsub.get_message(timeout=COMMAND_TIMEOUT)
            if message is not None and message["type"] == confirmation:
                return
        raise BusUnavailable("redis cluster did not confirm the subscription")

    async def publish(self, event: JSON) -> None:
        if self._cluster_publisher is None:
            raise BusUnavailable("bus not started")
        cluster = self._cluster_publisher
        try:
            if self._sharded:
                await cluster.spublish(self._channel, encode(event))
            else:
                # PUBLISH names no key, so the client needs a node: the channel's slot
                # owner, looked up anew each time (a failed call resets the topology)
                await cluster.initialize()
                node = cluster.get_node_from_key(self._channel)
                await cluster.execute_command(
                    "PUBLISH", self._channel, encode(event), target_nodes=node
                )
        except _CLUSTER_FAILURES as error:
            raise BusUnavailable(
                f"cannot publish on the redis cluster: {type(error).__name__}"
            ) from error

    async def close(self) -> None:
        await self._stop_listening()
        if self._cluster_publisher is not None:
            await self._quietly(self._cluster_publisher.aclose)
            self._cluster_publisher = None
