"""Test infrastructure shared across modules: free ports and throwaway redis-servers.

Fault tests never touch the shared Redis; they start their own server here and stop it
by PID. The ``redis_server`` fixture in ``conftest.py`` wraps ``RedisServer``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server subprocess that keeps nothing on disk, unless given ``data_dir``:
    then every write is in its append-only file before it is acknowledged
    (``appendfsync always``), so a killed and restarted server has all of it again."""

    def __init__(self, port: int, *, data_dir: Path | None = None) -> None:
        self.port = port
        self.data_dir = data_dir
        # run after each stop: an outage test waits there until the process using the
        # server noticed (its bus down), so a hot session's copy is no longer trusted
        self.after_stop: Callable[[], None] | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        persistence = (
            ["--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", "always"]
            if self.data_dir is not None else ["--appendonly", "no"]
        )
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", *persistence, "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        pytest.fail(f"throwaway redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None
        if self.after_stop is not None:
            self.after_stop()

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` from sync code (a thread the event loop is not on) until it
    holds; AssertionError after ``timeout`` seconds. For state another thread changes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


async def bus_noticed(state: Any, timeout: float = 10.0) -> None:
    """Wait until ``state`` (an ``AuthState``) no longer trusts its per-process copies:
    after its store and bus server was killed, its bus connection has seen the loss. A
    hot session is answered from the copy until then (README: "When the store is down")."""
    deadline = time.monotonic() + timeout
    while state.revocation.local:
        if time.monotonic() > deadline:
            raise AssertionError("the bus did not notice the outage in time")
        await asyncio.sleep(0.01)
