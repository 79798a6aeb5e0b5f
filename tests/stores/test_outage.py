"""The store going away: fail closed fast, log the outage once, recover by itself.

Each test runs its own throwaway redis-server (never the shared one) and stops it by PID.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator

import pytest

from authstate.clock import FrozenClock
from authstate.errors import StoreUnavailable
from authstate.sessions import SessionManager, digest
from authstate.stores import open_store
from authstate.stores.redis import RedisStore
from tests.support import RedisServer, free_port

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed"
)

FAST = 1.0  # a refused connection must fail well under this


@pytest.fixture
async def outage_store(redis_server: RedisServer, clock: FrozenClock) -> AsyncIterator[RedisStore]:
    s = await open_store(redis_server.url, clock=clock, namespace="outage")
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


async def test_server_death_fails_closed_logs_once_and_recovers(
    redis_server: RedisServer, outage_store: RedisStore, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="authstate.sessions")
    store = outage_store
    sessions = SessionManager(store, clock=clock)
    sid, _ = await sessions.create("alice")
    assert await sessions.lookup(sid) is not None

    redis_server.stop()

    for _ in range(5):
        start = time.monotonic()
        with pytest.raises(StoreUnavailable):  # an outage, never "no session"
            await asyncio.wait_for(sessions.lookup(sid), timeout=10)
        assert time.monotonic() - start < FAST
    lines = outage_lines(caplog)
    assert len(lines) == 1, lines
    assert f"127.0.0.1:{redis_server.port}" in lines[0]
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
        assert f"redis://127.0.0.1:{redis_server.port}/0" in str(info.value)

    redis_server.start()  # same port, empty: the server kept nothing

    assert await sessions.lookup(sid) is None  # the data is gone, and that is all
    assert len(recovery_lines(caplog)) == 1
    new_sid, _ = await sessions.create("alice")  # the same store object, never reopened
    for _ in range(3):
        assert await sessions.lookup(new_sid) is not None
    assert len(outage_lines(caplog)) == 1
    assert len(recovery_lines(caplog)) == 1


async def test_restart_between_requests_goes_unnoticed(
    redis_server: RedisServer, outage_store: RedisStore, clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="authstate.sessions")
    sessions = SessionManager(outage_store, clock=clock)
    await asyncio.gather(*(sessions.create("warm") for _ in range(4)))  # several pooled
    redis_server.stop()
    redis_server.start()  # every pooled connection is now a dead socket
    sid, _ = await sessions.create("alice")
    found = await asyncio.gather(*(sessions.lookup(sid) for _ in range(4)))
    assert all(s is not None and s.user_id == "alice" for s in found)
    assert outage_lines(caplog) == []


async def test_hung_server_times_out_and_no_stale_reply_leaks(
    redis_server: RedisServer, outage_store: RedisStore, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="authstate.sessions")
    store = outage_store
    sessions = SessionManager(store, clock=clock)
    alice, _ = await sessions.create("alice")
    bob, _ = await sessions.create("bob")

    redis_server.pause()
    try:
        # A caller giving up mid-read (a cancelled request) must not leave alice's
        # reply queued on a pooled connection either.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(store.get("session", digest(alice)), timeout=0.1)
        start = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(sessions.lookup(alice), timeout=10)
        assert time.monotonic() - start < 3.0
        assert len(outage_lines(caplog)) == 1
    finally:
        redis_server.resume()

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
