"""Shared fixtures: an injectable clock and one store fixture over every backend.

Redis and PostgreSQL are real servers (``AUTHSTATE_TEST_REDIS_URL``,
``AUTHSTATE_TEST_POSTGRES_URL``). When one is unreachable its tests are skipped with a
reason that says how to start it, unless ``AUTHSTATE_REQUIRE_SERVICES=1`` (CI), where
they fail. Every test gets its own namespace (Redis key prefix, PostgreSQL schema), so
runs never see each other's data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from authstate.clock import FrozenClock
from authstate.stores import Store, open_store
from tests.stores.cluster import RedisClusterNodes, RedisSentinelSet, TopologyError, started
from tests.support import RedisServer, free_port

REDIS_URL = os.environ.get("AUTHSTATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "AUTHSTATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("AUTHSTATE_REQUIRE_SERVICES") == "1"
# Public vectors vendored with their licences (tests/vectors/PROVENANCE.md), so a fresh
# clone runs every vector test: none may skip for want of files.
VECTORS = Path(__file__).resolve().parent / "vectors"

HOW_TO_START = {
    "redis": "start one with: redis-server --port 6379 --save '' --daemonize yes",
    "postgres": "start one with: pg_ctlcluster <version> main start (trust auth, database test)",
}
BACKENDS = ["memory", "sqlite", "redis", "postgres"]
# the store conformance suite also runs on a Redis Cluster the test run starts itself
CLUSTER_BACKENDS = [*BACKENDS, "redis-cluster"]


def service_reachable(url: str) -> bool:
    parts = urlsplit(url)
    default_port = 6379 if parts.scheme.startswith("redis") else 5432
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), 1):
            return True
    except OSError:
        return False


def require_service(name: str) -> str:
    """The test URL of a service, or skip (fail under AUTHSTATE_REQUIRE_SERVICES=1)."""
    url = REDIS_URL if name == "redis" else POSTGRES_URL
    if not service_reachable(url):
        message = f"{name} not reachable at {url}; {HOW_TO_START[name]}"
        if REQUIRE_SERVICES:
            pytest.fail(f"AUTHSTATE_REQUIRE_SERVICES=1 but {message}")
        pytest.skip(message)
    return url


def fresh_namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(1_800_000_000.0)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A throwaway redis-server of the test's own, for stopping, pausing and restarting."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    srv = RedisServer(free_port())
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def require_redis_server() -> None:
    """Skip (fail under AUTHSTATE_REQUIRE_SERVICES=1) when redis-server is not installed:
    the cluster and sentinel tests start their own servers from it."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        message = "redis-server/redis-cli not installed (apt-get install redis-server)"
        if REQUIRE_SERVICES:
            pytest.fail(f"AUTHSTATE_REQUIRE_SERVICES=1 but {message}")
        pytest.skip(message)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    """One Redis Cluster (3 primaries, 3 replicas) on loopback for the whole run, its
    processes killed by PID at the end. Tests that kill nodes start their own."""
    require_redis_server()
    try:
        with started(RedisClusterNodes(primaries=3, replicas=1)) as cluster:
            yield cluster
    except TopologyError as error:
        pytest.fail(f"could not start a throwaway Redis Cluster: {error}")


@pytest.fixture
def redis_sentinel() -> Iterator[RedisSentinelSet]:
    """A primary, a replica and three sentinels of this test alone (failover tests)."""
    require_redis_server()
    try:
        with started(RedisSentinelSet()) as topology:
            yield topology
    except TopologyError as error:
        pytest.fail(f"could not start a throwaway Redis Sentinel set: {error}")


@contextlib.asynccontextmanager
async def backend_store(
    backend: str, clock: FrozenClock, tmp_path: Path, url: str | None = None
) -> AsyncIterator[Store]:
    """A store on ``backend`` in a fresh namespace; what the test wrote to a shared server
    is dropped afterwards."""
    if backend == "memory":
        s = await open_store("memory://", clock=clock)
    elif backend == "sqlite":
        s = await open_store(f"sqlite:///{tmp_path / 'authstate.db'}", clock=clock)
    elif url is not None:
        s = await open_store(url, clock=clock, namespace=fresh_namespace())
    else:
        s = await open_store(require_service(backend), clock=clock, namespace=fresh_namespace())
    try:
        yield s
    finally:
        drop = getattr(s, "drop_namespace", None)
        if drop is not None:
            await drop()
        await s.close()


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, clock: FrozenClock, tmp_path: Path) -> AsyncIterator[Store]:
    async with backend_store(request.param, clock, tmp_path) as s:
        yield s


async def cluster_or_backend_store(
    request: pytest.FixtureRequest, clock: FrozenClock, tmp_path: Path
) -> AsyncIterator[Store]:
    """The ``store`` fixture's body over CLUSTER_BACKENDS (a module opts in with
    ``store = pytest.fixture(params=CLUSTER_BACKENDS)(cluster_or_backend_store)``)."""
    url = None
    if request.param == "redis-cluster":
        url = request.getfixturevalue("redis_cluster").url
    async with backend_store(request.param, clock, tmp_path, url) as s:
        yield s
