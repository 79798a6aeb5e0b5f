"""The store going away: fail closed fast, log the outage once, recover by itself.

Each test runs its own throwaway redis-server (never the shared one) and stops it by PID.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from authstate.clock import FrozenClock
from authstate.errors import StoreUnavailable
from authstate.sessions import SessionManager, digest
from authstate.stores import open_store
from authstate.stores.redis import RedisStore

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed"
)

START_TIMEOUT = 5.0
FAST = 1.0  # a refused connection must fail well under this


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server subprocess that keeps nothing on disk."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--daemonize", "no"],
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

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def server() -> Iterator[RedisServer]:
    srv = RedisServer(free_port())
    srv.start()
    try:
        yield srv
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            os.kill(srv.proc.pid, signal.SIGCONT)
        srv.stop()


@pytest.fixture
async def outage_store(server: RedisServer, clock: FrozenClock) -> AsyncIterator[RedisStore]:
    s = await open_store(server.url, clock=clock, namespace="outage")
    assert isinstance(s, RedisStore)
    try:
        yield s
    finally:
        await s.close()


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "authstate.sessions" and "unavailable" in r.getMessage()]


def recovery_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "authstate.sessions" and "available again" in r.getMessage()]


async def timed(coro: object) -> tuple[object, float]:
    start = time.monotonic()
    result = await asyncio.wait_for(coro, timeout=10)  # type: ignore[arg-type]
    return result, time.monotonic() - start


async def test_server_death_fails_closed_logs_once_and_recovers(
    server: RedisServer, outage_store: RedisStore, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="authstate.sessions")
    store = outage_store
    sessions = SessionManager(store, clock=clock)
    sid, _ = await sessions.create("alice")
    assert await sessions.lookup(sid) is not None

    server.stop()

    for _ in range(5):
        found, took = await timed(sessions.lookup(sid))
        assert found is None
        assert took < FAST
    lines = outage_lines(caplog)
    assert len(lines) == 1, lines
    assert f"127.0.0.1:{server.port}" in lines[0]
    assert sid not in caplog.text

    attempts = [
        sessions.create("bob"),
        sessions.revoke(sid),
        store.get("session", "x"),
        store.put("session", "x", {}),
        store.incr("throttle", "x"),
        store.list_by_user("session", "alice"),
        store.scan("session"),
        store.append_event({"ts": clock.now()}),
        store.query_events(),
        store.ping(),
    ]
    for attempt in attempts:
        start = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            await asyncio.wait_for(attempt, timeout=10)
        assert time.monotonic() - start < FAST
        assert info.value.code == "store_unavailable"
        assert info.value.__cause__ is None and info.value.__suppress_context__
        assert f"redis://127.0.0.1:{server.port}/0" in str(info.value)

    server.start()  # same port, empty: the server kept nothing

    assert await sessions.lookup(sid) is None  # the data is gone, and that is all
    assert len(recovery_lines(caplog)) == 1
    new_sid, _ = await sessions.create("alice")  # the same store object, never reopened
    for _ in range(3):
        assert await sessions.lookup(new_sid) is not None
    assert len(outage_lines(caplog)) == 1
    assert len(recovery_lines(caplog)) == 1


async def test_restart_between_requests_goes_unnoticed(
    server: RedisServer, outage_store: RedisStore, clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="authstate.sessions")
    sessions = SessionManager(outage_store, clock=clock)
    await asyncio.gather(*(sessions.create("warm") for _ in range(4)))  # several pooled
    server.stop()
    server.start()  # every pooled connection is now a dead socket
    sid, _ = await sessions.create("alice")
    found = await asyncio.gather(*(sessions.lookup(sid) for _ in range(4)))
    assert all(s is not None and s.user_id == "alice" for s in found)
    assert outage_lines(caplog) == []


async def test_hung_server_times_out_and_no_stale_reply_leaks(
    server: RedisServer, outage_store: RedisStore, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="authstate.sessions")
    store = outage_store
    sessions = SessionManager(store, clock=clock)
    alice, _ = await sessions.create("alice")
    bob, _ = await sessions.create("bob")

    server.pause()
    try:
        # A caller giving up mid-read (a cancelled request) must not leave alice's
        # reply queued on a pooled connection either.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(store.get("session", digest(alice)), timeout=0.1)
        found, took = await timed(sessions.lookup(alice))
        assert found is None
        assert took < 3.0
        assert len(outage_lines(caplog)) == 1
    finally:
        server.resume()

    # The timed-out connection must not hand alice's late reply to bob's read.
    found_bob = await sessions.lookup(bob)
    assert found_bob is not None and found_bob.user_id == "bob"
    found_alice = await sessions.lookup(alice)
    assert found_alice is not None and found_alice.user_id == "alice"
    assert len(recovery_lines(caplog)) == 1


async def test_unreachable_at_start_up_names_the_redacted_url() -> None:
    port = free_port()
    url = f"redis://admin:hunter2secret@127.0.0.1:{port}/0"
    start = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        await asyncio.wait_for(open_store(url, namespace="outage"), timeout=10)
    assert time.monotonic() - start < 2.0
    message = str(info.value)
    assert f"redis://admin:***@127.0.0.1:{port}/0" in message
    assert "hunter2secret" not in message
    assert "ping" in message
