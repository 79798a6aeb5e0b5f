"""A hot session costs no store read (``SessionCache``), and every change to a session
still applies at the next request: in the process that made it at once, in another one
as soon as the change's bus event arrives, and on a store without a bus (SQLite) by
reading the session per request. The other processes are real: a second ``AuthState``
with its own bus connection, and the ``authstate`` CLI run as a subprocess."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from authstate.clock import FrozenClock
from authstate.sessions import digest
from authstate.state import AuthState
from tests.test_accounts import AGENT, EMAIL, IP, until
from tests.test_usercache import BUSES, Pair, cli, two_instances
from tests.web.api import PASSWORD, api_settings


@pytest.fixture
async def pair(request: pytest.FixtureRequest, clock: FrozenClock) -> AsyncIterator[Pair]:
    async with two_instances(request.param, clock) as instances:
        yield instances


async def logged_in(state: AuthState) -> str:
    await state.add_user(EMAIL, PASSWORD, via="test")
    return (await state.login(EMAIL, PASSWORD, ip=IP, user_agent=AGENT)).session_id


@BUSES
async def test_a_hot_session_is_answered_from_the_copy(pair: Pair) -> None:
    b = pair.b
    session_id = await logged_in(pair.a)
    cache = b.sessions.cache
    assert cache is not None
    assert await b.authenticate_session(session_id) is not None
    assert len(cache) == 1 and cache.hits == 0
    for _ in range(3):
        identity = await b.authenticate_session(session_id)
        assert identity is not None and identity.user_id
    assert cache.hits == 3, "the session came from the copy, not the store"
    assert b.authenticate_session_cached(session_id) == identity, "and without awaiting"


@BUSES
async def test_a_logout_elsewhere_is_refused_once_its_event_arrived(pair: Pair) -> None:
    a, b = pair.a, pair.b
    session_id = await logged_in(a)
    assert await a.authenticate_session(session_id) is not None
    assert await b.authenticate_session(session_id) is not None
    seen = b.revocation.events
    await a.logout(session_id=session_id)
    assert await a.authenticate_session(session_id) is None, "here: at once"
    assert a.authenticate_session_cached(session_id) is None
    await until(lambda: b.revocation.events > seen)
    assert b.authenticate_session_cached(session_id) is None
    assert await b.authenticate_session(session_id) is None


@BUSES
async def test_a_rotated_id_is_dead_everywhere_and_the_new_one_works(pair: Pair) -> None:
    a, b = pair.a, pair.b
    old_id = await logged_in(a)
    assert await b.authenticate_session(old_id) is not None
    seen = b.revocation.events
    rotated = await a.sessions.rotate(old_id)
    assert rotated is not None
    new_id = rotated[0]
    assert await a.authenticate_session(old_id) is None
    await until(lambda: b.revocation.events > seen)
    assert await b.authenticate_session(old_id) is None
    assert await b.authenticate_session(new_id) is not None


@BUSES
async def test_a_data_change_is_seen_everywhere_once_its_event_arrived(pair: Pair) -> None:
    a, b = pair.a, pair.b
    session_id = await logged_in(a)
    await a.sessions.update(session_id, {"cart": [1]})
    assert (await b.sessions.lookup(session_id)).data["cart"] == [1]  # type: ignore[union-attr]
    assert (await a.sessions.lookup(session_id)).data["cart"] == [1]  # type: ignore[union-attr]
    seen = b.revocation.events
    await a.sessions.update(session_id, {"cart": [1, 2], "step": 3})
    here = await a.sessions.lookup(session_id)
    assert here is not None and here.data["cart"] == [1, 2], "here: at once"
    await until(lambda: b.revocation.events > seen)
    there = await b.sessions.lookup(session_id)
    assert there is not None and there.data["cart"] == [1, 2] and there.data["step"] == 3


@BUSES
async def test_a_cached_session_cannot_be_changed_in_place(pair: Pair) -> None:
    """The copy is shared by every request that hits it: its data is read-only, so a
    change goes through ``update`` (which announces it) or fails loudly."""
    b = pair.b
    session_id = await logged_in(b)
    await b.sessions.lookup(session_id)
    cached = await b.sessions.lookup(session_id)
    assert cached is not None and b.sessions.cache is not None and b.sessions.cache.hits
    with pytest.raises(TypeError):
        cached.data["cart"] = [1]  # type: ignore[index]


@BUSES
async def test_the_cli_revoking_a_session_reaches_a_running_instance(pair: Pair) -> None:
    b = pair.b
    session_id = await logged_in(b)
    identity = await b.authenticate_session(session_id)
    assert identity is not None and identity.session is not None
    assert await b.authenticate_session(session_id) is not None  # now in the copy
    seen = b.revocation.events
    await cli(b, "revoke", identity.session.handle, group="sessions")
    await until(lambda: b.revocation.events > seen)
    assert await b.authenticate_session(session_id) is None


@BUSES
async def test_an_event_during_a_read_keeps_that_read_out_of_the_copy(pair: Pair) -> None:
    """A request reads the session, the change's event arrives while the read is in
    flight, then the (possibly old) session comes back: it must not be kept, or the
    ended or changed session would outlive the event that was to remove it."""
    a, b = pair.a, pair.b
    session_id = await logged_in(a)
    cache = b.sessions.cache
    assert cache is not None
    reading = asyncio.create_task(b.sessions.lookup(session_id))
    await asyncio.sleep(0)  # the read is sent and waits for the store's answer
    assert not reading.done()
    b.revocation.bus_event({"t": "sess", "key": "0" * 64})  # any session's event
    assert (await reading) is not None
    assert len(cache) == 0, "a read raced by an event is not kept"
    await b.sessions.lookup(session_id)
    assert len(cache) == 1, "the next read is"


@BUSES
async def test_requests_racing_a_logout_are_all_refused_once_it_arrived(pair: Pair) -> None:
    a, b = pair.a, pair.b
    session_id = await logged_in(a)
    seen = b.revocation.events
    stop = asyncio.Event()
    accepted_after = 0
    arrived = False

    async def hammer() -> None:
        nonlocal accepted_after
        while not stop.is_set():
            after = arrived
            if await b.authenticate_session(session_id) is not None and after:
                accepted_after += 1
            await asyncio.sleep(0)

    workers = [asyncio.create_task(hammer()) for _ in range(8)]
    await asyncio.sleep(0.05)
    await a.logout(session_id=session_id)
    await until(lambda: b.revocation.events > seen)
    arrived = True
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*workers)
    assert accepted_after == 0


@BUSES
async def test_without_a_live_bus_every_lookup_reads_the_store(pair: Pair) -> None:
    """The copy is trusted only while push revocation is live: with the bus gone, a
    logout in another process is refused at the next request, read from the store."""
    a, b = pair.a, pair.b
    session_id = await logged_in(a)
    await b.authenticate_session(session_id)
    await b.authenticate_session(session_id)
    await b.revocation.close()  # b's bus is gone; its copy must no longer be trusted
    assert not b.revocation.local
    await a.logout(session_id=session_id)
    assert b.authenticate_session_cached(session_id) is None
    assert await b.authenticate_session(session_id) is None


@BUSES
async def test_an_entry_older_than_the_ttl_is_read_again(pair: Pair, clock: FrozenClock) -> None:
    """``AUTHSTATE_SESSION_CACHE_SECONDS`` bounds a copy whose event was lost."""
    b = pair.b
    session_id = await logged_in(b)
    cache = b.sessions.cache
    assert cache is not None
    await b.sessions.lookup(session_id)
    await b.sessions.store.patch("session", digest(session_id), {"data": {"lost": True}})
    assert "lost" not in (await b.sessions.lookup(session_id)).data  # type: ignore[union-attr]
    clock.advance(cache.ttl)
    fresh = await b.sessions.lookup(session_id)
    assert fresh is not None and fresh.data["lost"] is True


@BUSES
async def test_the_sync_face_answers_a_hot_session_in_the_request_thread(pair: Pair) -> None:
    b = pair.b
    session_id = await logged_in(b)
    await b.authenticate_session(session_id)
    identity = await asyncio.to_thread(b.authenticate_session_cached, session_id)
    assert identity is not None and identity.method == "session"
    await b.logout(session_id=session_id)
    assert await asyncio.to_thread(b.authenticate_session_cached, session_id) is None


async def test_sqlite_has_no_bus_so_nothing_is_cached(tmp_path: Path, clock: FrozenClock) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    settings = api_settings(store=url)
    a = await AuthState.open(settings, clock=clock)
    b = await AuthState.open(settings, clock=clock)
    try:
        session_id = await logged_in(a)
        assert await b.authenticate_session(session_id) is not None
        assert await b.authenticate_session(session_id) is not None
        assert b.sessions.cache is not None and len(b.sessions.cache) == 0
        await a.logout(session_id=session_id)
        assert await b.authenticate_session(session_id) is None
    finally:
        await b.close()
        await a.close()




@BUSES
async def test_this_process_keeps_what_its_own_write_left(pair: Pair) -> None:
    """After a write here, the next request here needs no read (the app-session case: a
    view that writes, then one that reads), and its own event echoed back by the bus does
    not drop that; another process still drops its copy through the event."""
    a, b = pair.a, pair.b
    session_id = await logged_in(a)
    cache = a.sessions.cache
    assert cache is not None
    await b.sessions.lookup(session_id)
    seen = b.revocation.events
    await a.sessions.update(session_id, {"n": 1})
    hits = cache.hits
    here = await a.sessions.lookup(session_id)
    assert here is not None and here.data["n"] == 1 and cache.hits == hits + 1
    await until(lambda: b.revocation.events > seen)
    assert len(b.sessions.cache or ()) == 0, "the other process dropped its copy"
    await asyncio.sleep(0.05)  # a's own event comes back over the bus: it is skipped
    assert (await a.sessions.lookup(session_id)) is not None and cache.hits == hits + 2


@BUSES
async def test_a_change_from_elsewhere_during_a_write_keeps_nothing(pair: Pair) -> None:
    """The write's result could miss a change that landed meanwhile: not kept."""
    a = pair.a
    session_id = await logged_in(a)
    cache = a.sessions.cache
    assert cache is not None
    writing = asyncio.create_task(a.sessions.update(session_id, {"n": 1}))
    await asyncio.sleep(0)  # the merge is sent and waits for the store's answer
    assert not writing.done()
    a.revocation.bus_event({"t": "sess", "key": "0" * 64})  # another session's event
    await writing
    assert len(cache) == 0


@BUSES
async def test_the_fast_path_refuses_malformed_ids_without_an_error(pair: Pair) -> None:
    """Any cookie value reaches the copy's lookup before any pattern check: a non-ASCII,
    oversized or non-string one is a miss (then the store path's answer: no session),
    never an exception."""
    b = pair.b
    await b.authenticate_session(await logged_in(b))
    for bad in ("é" * 43, "x" * 10_000, "", None, 42, "a b"):
        assert b.sessions.lookup_cached(bad) is None
        assert b.authenticate_session_cached(bad) is None
        assert await b.authenticate_session(bad) is None


@BUSES
async def test_an_answer_from_the_copy_is_still_counted_in_the_metrics(pair: Pair) -> None:
    """The fast path skips the awaits, not ``authstate_verify_seconds``."""
    b = pair.b
    if b.metrics is None:
        pytest.skip("metrics are off in these settings")
    session_id = await logged_in(b)
    await b.authenticate_session(session_id)

    def count() -> float:
        value = b.metrics.registry.get_sample_value(  # type: ignore[union-attr]
            "authstate_verify_seconds_count", {"method": "session"})
        return value or 0.0

    before = count()
    first = b.authenticate_session_cached(session_id)
    again = b.authenticate_session_cached(session_id)
    assert first is not None and again is first, "one Identity per cached session"
    assert count() == before + 2


@BUSES
async def test_a_resync_after_reconnecting_empties_the_copy(pair: Pair) -> None:
    """Events missed while the bus was down cannot leave a stale copy: the resync that
    follows every (re)connection empties it. Here the missed event is a session deleted
    behind authstate's back (no event at all); the resync is the one a reconnection runs."""
    b = pair.b
    session_id = await logged_in(b)
    await b.authenticate_session(session_id)
    assert await b.authenticate_session(session_id) is not None  # from the copy
    await b.store.delete("session", digest(session_id))
    assert await b.authenticate_session(session_id) is not None, "no event: still copied"
    await b.revocation.bus_connected()  # what the bus runs after reconnecting
    assert await b.authenticate_session(session_id) is None
