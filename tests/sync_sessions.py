"""Support for the Django and Flask session tests (not a test module): an ``AuthState`` on
each store, opened on a sync portal's loop (where sync code reaches it), one on a
throwaway redis-server for the outage tests, and threads that meet before they write."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from authstate.clock import FrozenClock
from authstate.sessions import KIND
from authstate.state import AuthState
from authstate.stores import Store, open_store
from authstate.sync import Portal, SyncAuthState
from tests.conftest import fresh_namespace, require_service
from tests.support import RedisServer, free_port, wait_for
from tests.web.api import api_settings


@contextlib.contextmanager
def sync_state_on(backend: str, clock: FrozenClock, tmp_path: Path) -> Iterator[SyncAuthState]:
    """A ``SyncAuthState`` over a fresh store of ``backend`` on its own portal."""
    portal = Portal("test-portal")
    if backend == "memory":
        url, namespace = "memory://", "authstate"
    elif backend == "sqlite":
        url, namespace = f"sqlite:///{tmp_path / 'authstate.db'}", "authstate"
    else:
        url, namespace = require_service(backend), fresh_namespace()

    async def opening() -> AuthState:
        store = await open_store(url, clock=clock, namespace=namespace)
        state = AuthState(api_settings(), store, clock=clock)
        await state.start()
        return state

    state = portal.call(opening)

    async def closing() -> None:
        drop = getattr(state.store, "drop_namespace", None)
        if drop is not None:
            await drop()
        await state.close()

    try:
        yield SyncAuthState.wrapping(state, portal)
    finally:
        portal.call(closing)
        portal.close()


@contextlib.contextmanager
def on_throwaway_redis(clock: FrozenClock, tmp_path: Path) -> Iterator[tuple[RedisServer, SyncAuthState]]:
    """A redis-server of the test's own that keeps its data on disk (so the test can
    SIGKILL it and start it again on the same port with the sessions still there), and a
    ``SyncAuthState`` on it, on its own portal: for the outage tests."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(free_port(), data_dir=tmp_path)
    server.start()
    portal = Portal("test-outage")

    async def opening() -> AuthState:
        store = await open_store(server.url, clock=clock, namespace=fresh_namespace())
        state = AuthState(api_settings(store=server.url), store, clock=clock)
        await state.start()
        return state

    try:
        state = portal.call(opening)
        server.after_stop = lambda: wait_for(lambda: not state.revocation.local)
        try:
            yield server, SyncAuthState.wrapping(state, portal)
        finally:
            portal.call(state.close)
    finally:
        portal.close()
        server.stop()


def count_sessions(sync: SyncAuthState) -> int:
    """How many session records the store holds (live ones)."""

    async def count(state: AuthState) -> int:
        store: Store = state.store
        return len(await store.scan(KIND, limit=10_000))

    return sync.run(count)


class Together:
    """Makes ``parties`` request threads meet after they have read the session and before
    they write it back, so a whole-object write would lose one thread's keys."""

    def __init__(self, parties: int = 2) -> None:
        self.barrier = threading.Barrier(parties, timeout=10)

    def wait(self) -> None:
        self.barrier.wait()


def run_together(*calls: object) -> list[object]:
    """Run each callable in its own thread; their results, in order (errors re-raised)."""
    results: list[object] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int, call: object) -> None:
        try:
            assert callable(call)
            results[i] = call()
        except BaseException as error:  # re-raised in the caller below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if errors:
        raise errors[0]
    return results
