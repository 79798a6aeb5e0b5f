"""Throwaway Redis topologies on loopback: a Redis Cluster and a Sentinel set.

Each server is a ``redis-server`` subprocess of the test run, bound to 127.0.0.1 on a
free port, keeping nothing on disk but its cluster/sentinel config in a temporary
directory. The data servers of a topology share a random password (``requirepass`` and
``masterauth``): a killed primary's port may be taken by another test's empty server,
and a replica still reconnecting to that port must fail to authenticate there rather
than resynchronise from it and drop its data (which happened, a few runs in twenty). Every wait is bounded, and ``stop`` kills by PID whatever was started, also
when start-up failed half-way. Used by the session-scoped fixtures in ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from tests.support import free_port

NODE_TIMEOUT_MS = 1000  # how long a silent primary takes to be marked failed
READY_TIMEOUT = 30.0  # seconds for a topology to form (creation, replicas in sync)
FAILOVER_TIMEOUT = 20.0  # seconds for a replica to take over a killed primary
FAILOVER_TIMEOUT_MS = 10000  # the sentinels' failover-timeout (a stalled failover retried)


class TopologyError(RuntimeError):
    """A throwaway topology did not come up in time."""


def _command(port: int, *args: str, timeout: float = 2.0, password: str | None = None) -> str:
    """One redis-cli command against a loopback port; its output ('' when it fails)."""
    auth = ["-a", password, "--no-auth-warning"] if password else []
    try:
        done = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *auth, *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout


def _info(port: int, section: str, password: str | None = None) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in _command(port, "INFO", section, password=password).splitlines():
        name, sep, value = line.strip().partition(":")
        if sep:
            out[name] = value
    return out


def _wait(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TopologyError(f"{what} not reached within {timeout:.0f} s")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def _distinct_ports(n: int) -> list[int]:
    """``n`` free loopback ports, no two alike (each probe frees its port at once)."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class _Processes:
    """redis-server processes started by this run, by port, killed by PID."""

    def __init__(self, prefix: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(self, port: int, *args: str) -> None:
        self.procs[port] = subprocess.Popen(
            [*args], cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def kill(self, port: int) -> None:
        proc = self.procs.get(port)
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def stop(self) -> None:
        for port in list(self.procs):
            self.kill(port)
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisClusterNodes:
    """``primaries`` primaries with ``replicas`` replicas each, joined with
    ``redis-cli --cluster create``."""

    def __init__(self, primaries: int = 3, replicas: int = 1) -> None:
        count = primaries * (1 + replicas)
        # the bus port defaults to port + 10000, which may be taken or above 65535
        ports = _distinct_ports(2 * count)
        self.ports, self.bus_ports = ports[:count], ports[count:]
        self.replicas = replicas
        self.password = secrets.token_hex(12)
        self._procs = _Processes("authstate-cluster-")

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{port}" for port in self.ports[:3])
        return f"redis+cluster://:{self.password}@{seeds}/"

    def _cmd(self, port: int, *args: str, timeout: float = 2.0) -> str:
        return _command(port, *args, timeout=timeout, password=self.password)

    def _info(self, port: int, section: str) -> dict[str, str]:
        return _info(port, section, password=self.password)

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        for port, bus_port in zip(self.ports, self.bus_ports, strict=True):
            self._procs.spawn(
                port, "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-port", str(bus_port),
                "--requirepass", self.password, "--masterauth", self.password,
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", str(self._procs.dir),
            )
        _wait(lambda: all(_answers(p) for p in self.ports), READY_TIMEOUT, "cluster nodes up")
        create = subprocess.run(
            ["redis-cli", "-a", self.password, "--no-auth-warning", "--cluster", "create",
             *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=READY_TIMEOUT, check=False,
        )
        if create.returncode != 0:
            raise TopologyError(f"redis-cli --cluster create failed: {create.stdout[-500:]}")
        _wait(self.healthy, READY_TIMEOUT, "cluster_state:ok with every replica in sync")

    def healthy(self) -> bool:
        """Every live node sees the cluster ok, and every live replica's link is up."""
        for port in self.live_ports():
            if "cluster_state:ok" not in self._cmd(port, "CLUSTER", "INFO"):
                return False
            repl = self._info(port, "replication")
            if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                return False
        return True

    def live_ports(self) -> list[int]:
        return [p for p, proc in self._procs.procs.items() if proc.poll() is None]

    def primary_ports(self) -> list[int]:
        return [p for p in self.live_ports() if self._info(p, "replication").get("role") == "master"]

    def replicas_of(self, port: int) -> list[int]:
        found = []
        for p in self.live_ports():
            repl = self._info(p, "replication")
            if repl.get("role") == "slave" and repl.get("master_port") == str(port):
                found.append(p)
        return found

    def wait_replicated(self, port: int) -> None:
        """Block until ``port``'s replicas acknowledged all its writes (bounded)."""
        wanted = str(len(self.replicas_of(port)))
        _wait(
            lambda: self._cmd(port, "WAIT", wanted, "1000", timeout=3).strip() == wanted,
            FAILOVER_TIMEOUT, f"replication of 127.0.0.1:{port}",
        )

    def kill(self, port: int) -> None:
        self._procs.kill(port)

    def pause(self, port: int) -> None:
        """SIGSTOP the node at ``port`` (a paused replica cannot be promoted)."""
        os.kill(self._procs.procs[port].pid, signal.SIGSTOP)

    def resume(self, port: int) -> None:
        os.kill(self._procs.procs[port].pid, signal.SIGCONT)

    def wait_failover(self, dead: int) -> None:
        """Bounded wait until the slots of the killed primary ``dead`` are served again."""
        _wait(self._serves_all_slots, FAILOVER_TIMEOUT, f"failover of 127.0.0.1:{dead}")

    def _serves_all_slots(self) -> bool:
        return all(
            "cluster_state:ok" in self._cmd(p, "CLUSTER", "INFO") for p in self.live_ports()
        )

    def stop(self) -> None:
        self._procs.stop()


class RedisSentinelSet:
    """One primary, one replica and three sentinels watching them as ``service``; the
    sentinels declare a silent primary down after ``down_after_ms``."""

    def __init__(self, service: str = "authstate", down_after_ms: int = NODE_TIMEOUT_MS) -> None:
        self.service = service
        self.down_after_ms = down_after_ms
        self.primary, self.replica, *self.sentinels = _distinct_ports(5)
        self.password = secrets.token_hex(12)
        self._procs = _Processes("authstate-sentinel-")

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinels)
        return f"redis+sentinel://:{self.password}@{hosts}/{self.service}/{db}"

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _server(self, port: int, *extra: str) -> None:
        self._procs.spawn(
            port, "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--dir", str(self._procs.dir),
            "--requirepass", self.password, "--masterauth", self.password, *extra,
        )

    def _start(self) -> None:
        self._server(self.primary)
        self._server(self.replica, "--replicaof", "127.0.0.1", str(self.primary))
        for port in self.sentinels:
            conf = self._procs.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self._procs.dir}\n"
                f"sentinel monitor {self.service} 127.0.0.1 {self.primary} 2\n"
                f"sentinel auth-pass {self.service} {self.password}\n"
                f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.service} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
            self._procs.spawn(port, "redis-server", str(conf), "--sentinel")
        ports = [self.primary, self.replica, *self.sentinels]
        _wait(lambda: all(_answers(p) for p in ports), READY_TIMEOUT, "sentinel set up")
        _wait(self._ready, READY_TIMEOUT, "replica in sync and every sentinel seeing it")

    def _ready(self) -> bool:
        if _info(self.replica, "replication", self.password).get("master_link_status") != "up":
            return False
        for port in self.sentinels:
            replicas = _command(port, "SENTINEL", "REPLICAS", self.service)
            others = _command(port, "SENTINEL", "SENTINELS", self.service)
            if str(self.replica) not in replicas or others.count("127.0.0.1") < 2:
                return False
        return True

    def master_port(self) -> int | None:
        out = _command(self.sentinels[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        lines = out.split()
        return int(lines[1]) if len(lines) == 2 else None

    def kill(self, port: int) -> None:
        self._procs.kill(port)

    def wait_replicated(self) -> None:
        _wait(
            lambda: _command(
                self.primary, "WAIT", "1", "1000", timeout=3, password=self.password
            ).strip() == "1",
            FAILOVER_TIMEOUT, "replication to the replica",
        )

    def wait_promoted(self, port: int) -> None:
        """Bounded wait until the sentinels name ``port`` the primary and it takes writes."""
        def promoted() -> bool:
            return (
                self.master_port() == port
                and _info(port, "replication", self.password).get("role") == "master"
            )
        _wait(promoted, FAILOVER_TIMEOUT, f"promotion of 127.0.0.1:{port}")

    def stop(self) -> None:
        self._procs.stop()


Topology = TypeVar("Topology", RedisClusterNodes, RedisSentinelSet)


@contextlib.contextmanager
def started(topology: Topology) -> Iterator[Topology]:
    """Start ``topology`` and stop it (every process, by PID) however the block ends."""
    topology.start()
    try:
        yield topology
    finally:
        topology.stop()
