"""The session path reads the store once per request (``usercache``), and an account
change still applies at the next request: in this process at once, in another one as
soon as the change's bus event arrives, and on a store without a bus (SQLite) by reading
the record per request. The other processes here are real: a second ``AuthState`` with
its own bus connection, and the ``authstate`` CLI run as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from authstate.bus import open_bus
from authstate.clock import FrozenClock
from authstate.state import AuthState
from authstate.stores import open_store
from tests.conftest import fresh_namespace, require_service
from tests.test_accounts import AGENT, EMAIL, IP, until
from tests.web.api import FAST_PASSWORDS, PASSWORD, api_settings

ROOT = Path(__file__).resolve().parents[1]


class Pair:
    """Two instances on one store, each with its own bus connection (when it has one)."""

    def __init__(self, a: AuthState, b: AuthState) -> None:
        self.a, self.b = a, b


@pytest.fixture
async def pair(request: pytest.FixtureRequest, clock: FrozenClock) -> AsyncIterator[Pair]:
    async with two_instances(request.param, clock) as instances:
        yield instances


@contextlib.asynccontextmanager
async def two_instances(service: str, clock: FrozenClock) -> AsyncIterator[Pair]:
    """Two started instances on one fresh namespace of ``service``'s store."""
    url = require_service(service)
    namespace = fresh_namespace()
    store = await open_store(url, clock=clock, namespace=namespace)
    settings = api_settings(store=url, namespace=namespace)
    a = AuthState(settings, store, clock=clock, bus=open_bus(url, namespace=namespace))
    b = AuthState(settings, store, clock=clock, bus=open_bus(url, namespace=namespace))
    try:
        await a.start()
        await b.start()
        await until(lambda: a.revocation.local and b.revocation.local)
        yield Pair(a, b)
    finally:
        await b.revocation.close()
        await a.revocation.close()
        await store.drop_namespace()  # type: ignore[attr-defined]
        await store.close()


BUSES = pytest.mark.parametrize("pair", ["redis", "postgres"], indirect=True)


async def scopes_seen(state: AuthState, session_id: str) -> tuple[str, ...]:
    identity = await state.authenticate_session(session_id)
    assert identity is not None and identity.user is not None
    assert identity.scope == identity.user.scopes
    return identity.scope


@BUSES
async def test_a_session_request_reads_the_user_once_then_not_at_all(pair: Pair) -> None:
    a, b = pair.a, pair.b
    user = await a.add_user(EMAIL, PASSWORD, via="test")
    login = await a.login(EMAIL, PASSWORD, ip=IP, user_agent=AGENT)
    assert await scopes_seen(b, login.session_id) == ()
    assert len(b.user_cache) == 1 and b.user_cache.hits == 0
    for _ in range(3):
        assert await scopes_seen(b, login.session_id) == ()
    assert b.user_cache.hits == 3, "the record came from the cache, not the store"

    await a.set_scopes(user.id, ["orders:read"])  # an ADD: no token version bump
    await until(lambda: len(b.user_cache) == 0)
    assert await scopes_seen(b, login.session_id) == ("orders:read",)
    assert await scopes_seen(a, login.session_id) == ("orders:read",), "at once, here"

    seen = b.revocation.events
    await a.set_admin(user.id, True)
    await until(lambda: b.revocation.events > seen)
    identity = await b.authenticate_session(login.session_id)
    assert identity is not None and identity.user is not None and identity.user.is_admin

    seen = b.revocation.events
    await a.set_scopes(user.id, [])  # a removal: user event and version bump
    await until(lambda: b.revocation.events >= seen + 2)
    assert await scopes_seen(b, login.session_id) == ()


@BUSES
async def test_a_change_made_by_the_cli_process_reaches_a_running_instance(pair: Pair) -> None:
    """The operator's ``authstate users set-scopes`` runs in its own process with its
    own bus connection; the instance serving requests sees the change at its next one."""
    b = pair.b
    await b.add_user(EMAIL, PASSWORD, via="test")
    login = await b.login(EMAIL, PASSWORD, ip=IP, user_agent=AGENT)
    assert await scopes_seen(b, login.session_id) == ()
    assert len(b.user_cache) == 1
    seen = b.revocation.events

    await cli(b, "set-scopes", EMAIL, "orders:read", "profile")

    await until(lambda: b.revocation.events > seen)
    assert await scopes_seen(b, login.session_id) == ("orders:read", "profile")
    seen = b.revocation.events
    await cli(b, "set-scopes", EMAIL, "profile")
    await until(lambda: b.revocation.events > seen)
    assert await scopes_seen(b, login.session_id) == ("profile",)


async def cli(state: AuthState, *args: str, group: str = "users") -> None:
    """``authstate GROUP ARGS`` in its own process, on ``state``'s store and namespace."""
    env = {**os.environ, "AUTHSTATE_NAMESPACE": state.settings.store.namespace,
           **{f"AUTHSTATE_{k.upper()}": str(v) for k, v in FAST_PASSWORDS.items()}}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from authstate.cli import app; app()", group, *args,
        "--store", state.settings.store.url, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()


@BUSES
async def test_an_event_during_a_read_keeps_that_read_out_of_the_cache(pair: Pair) -> None:
    """The race: a request reads the record, the change's event arrives while the read is
    in flight, then the (possibly old) record comes back. It must not be kept, or the old
    scopes would outlive the event that was to remove them."""
    a, b = pair.a, pair.b
    user = await a.add_user(EMAIL, PASSWORD, via="test")
    reading = asyncio.create_task(b.user_cache.get(user.id))
    await asyncio.sleep(0)  # the read is sent and waits for the store's answer
    assert not reading.done()
    b.revocation.bus_event({"t": "user", "sub": user.id})  # as the bus delivers it
    assert (await reading) is not None
    assert len(b.user_cache) == 0, "a read raced by an event is not kept"
    await b.user_cache.get(user.id)
    assert len(b.user_cache) == 1, "the next read is"


@BUSES
@pytest.mark.parametrize("head_start", range(4))
async def test_requests_racing_a_scope_change_all_see_it_once_it_arrived(
    pair: Pair, head_start: int
) -> None:
    """Requests run on ``b`` while ``a`` changes the scopes: any answer may be old while
    the change is in flight, but every request after the event arrived sees the new
    scopes (no stale record was left in the cache)."""
    a, b = pair.a, pair.b
    user = await a.add_user(EMAIL, PASSWORD, via="test")
    await a.set_scopes(user.id, ["orders:read"])
    login = await a.login(EMAIL, PASSWORD, ip=IP, user_agent=AGENT)
    seen = b.revocation.events
    stop = asyncio.Event()

    async def hammer() -> None:
        while not stop.is_set():
            await b.authenticate_session(login.session_id)
            await asyncio.sleep(0)  # a cache hit never awaits I/O: let the others run

    workers = [asyncio.create_task(hammer()) for _ in range(8)]
    for _ in range(head_start * 3):
        await asyncio.sleep(0)
    await a.set_scopes(user.id, ["orders:read", "orders:write"])
    await until(lambda: b.revocation.events > seen)
    assert await scopes_seen(b, login.session_id) == ("orders:read", "orders:write")
    stop.set()
    await asyncio.gather(*workers)
    assert await scopes_seen(b, login.session_id) == ("orders:read", "orders:write")


async def test_without_a_bus_every_request_reads_the_record(
    tmp_path: Path, clock: FrozenClock
) -> None:
    """SQLite has no bus: another process's change is seen at the next request because
    the record is read per request; nothing is cached."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    settings = api_settings(store=url)
    a = await AuthState.open(settings, clock=clock)
    b = await AuthState.open(settings, clock=clock)
    try:
        assert not b.revocation.local
        user = await a.add_user(EMAIL, PASSWORD, via="test")
        login = await a.login(EMAIL, PASSWORD, ip=IP, user_agent=AGENT)
        assert await scopes_seen(b, login.session_id) == ()
        await a.set_scopes(user.id, ["orders:read"])
        assert await scopes_seen(b, login.session_id) == ("orders:read",)
        await cli(b, "set-scopes", EMAIL)
        assert await scopes_seen(b, login.session_id) == ()
        assert len(b.user_cache) == 0 and b.user_cache.hits == 0
    finally:
        await b.close()
        await a.close()


async def test_the_service_api_reads_the_user_once_per_cookie_request(
    tmp_path: Path, clock: FrozenClock
) -> None:
    """``web/caller.py`` takes the account the session path read (``Identity.user``)."""
    from authstate.web import caller

    url = f"sqlite:///{tmp_path / 'a.db'}"
    state = await AuthState.open(api_settings(store=url), clock=clock)
    try:
        await state.add_user(EMAIL, PASSWORD, via="test")
        login = await state.login(EMAIL, PASSWORD, ip=IP, user_agent=AGENT)
        identity = await state.authenticate_session(login.session_id)
        assert identity is not None and identity.user is not None
        reads: list[str] = []
        original: Any = state.users.get

        async def counting(user_id: str) -> Any:  # counts calls; the store is real
            reads.append(user_id)
            return await original(user_id)

        state.users.get = counting  # type: ignore[method-assign]
        user = await caller._user(state, identity, token_presented=False)
        assert user == identity.user and reads == []
    finally:
        await state.close()
