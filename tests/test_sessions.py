"""Server-side sessions on every backend."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from authstate.clock import FrozenClock
from authstate.errors import InvalidInput
from authstate.sessions import HANDLE_LEN, Session, SessionManager, digest
from authstate.stores import Store
from tests.conftest import CLUSTER_BACKENDS, cluster_or_backend_store

# the flows also run on a Redis Cluster (its multi-key operations are several steps)
store = pytest.fixture(params=CLUSTER_BACKENDS)(cluster_or_backend_store)


@pytest.fixture
def sessions(store: Store, clock: FrozenClock) -> SessionManager:
    return SessionManager(store, clock=clock, idle_timeout=600, absolute_timeout=3600, touch_interval=60)


async def test_create_and_lookup(sessions: SessionManager, store: Store, clock: FrozenClock) -> None:
    sid, session = await sessions.create(
        "user-1", ip="203.0.113.9", user_agent="Firefox/130", data={"role": "reader"}
    )
    assert len(sid) >= 43
    found = await sessions.lookup(sid)
    assert found is not None
    assert (found.user_id, found.ip, found.user_agent, found.data) == (
        "user-1", "203.0.113.9", "Firefox/130", {"role": "reader"}
    )
    assert found.handle == session.handle == digest(sid)[:HANDLE_LEN]
    assert found.created_at == found.auth_time == clock.now()
    assert found.absolute_expires_at == clock.now() + 3600
    assert found.idle_expires_at == clock.now() + 600


async def test_only_the_digest_is_stored(sessions: SessionManager, store: Store) -> None:
    sid, _ = await sessions.create("user-1")
    assert await store.get("session", sid) is None
    record = await store.get("session", digest(sid))
    assert record is not None
    assert sid not in json.dumps(record.value)
    assert all(sid not in r.key for r in await store.scan("session"))


@pytest.mark.parametrize(
    "bad",
    ["", "x" * 129, "has space", "ünïcode", "a/b", None, 42, "../../etc/passwd", "' OR 1=1 --"],
)
async def test_malformed_ids_are_no_session(sessions: SessionManager, bad: object) -> None:
    assert await sessions.lookup(bad) is None


async def test_unknown_id_is_no_session(sessions: SessionManager) -> None:
    assert await sessions.lookup("A" * 43) is None


async def test_idle_timeout_slides_with_throttled_touch(
    sessions: SessionManager, store: Store, clock: FrozenClock
) -> None:
    sid, _ = await sessions.create("u")
    clock.advance(30)
    s = await sessions.lookup(sid)
    assert s is not None and s.last_seen == clock.now() - 30, "touch is throttled"
    clock.advance(40)
    s = await sessions.lookup(sid)
    assert s is not None and s.last_seen == clock.now()
    assert s.idle_expires_at == clock.now() + 600
    clock.advance(599)
    assert await sessions.lookup(sid) is not None
    clock.advance(601)
    assert await sessions.lookup(sid) is None


async def test_absolute_timeout_is_never_extended(sessions: SessionManager, clock: FrozenClock) -> None:
    sid, _ = await sessions.create("u")
    for _ in range(6):
        clock.advance(590)
        assert await sessions.lookup(sid) is not None
    clock.advance(590)  # 3540 + 590 > 3600
    assert await sessions.lookup(sid) is None


async def test_touch_writes_at_most_once_per_interval(
    sessions: SessionManager, store: Store, clock: FrozenClock
) -> None:
    sid, _ = await sessions.create("u")
    clock.advance(61)
    await asyncio.gather(*(sessions.lookup(sid) for _ in range(5)))
    record = await store.get("session", digest(sid))
    assert record is not None and record.value["last_seen"] == clock.now()
    clock.advance(10)
    await sessions.lookup(sid)
    again = await store.get("session", digest(sid))
    assert again is not None and again.value["last_seen"] == clock.now() - 10


async def test_rotate_kills_old_id(sessions: SessionManager) -> None:
    sid, first = await sessions.create("u", data={"a": 1})
    rotated = await sessions.rotate(sid)
    assert rotated is not None
    new_sid, session = rotated
    assert new_sid != sid
    assert await sessions.lookup(sid) is None
    found = await sessions.lookup(new_sid)
    assert found is not None and found.data == {"a": 1} and found.sid == first.sid
    assert found.handle != first.handle
    assert await sessions.rotate(sid) is None


async def test_revoke_one(sessions: SessionManager) -> None:
    sid, _ = await sessions.create("u")
    other, _ = await sessions.create("u")
    assert await sessions.revoke(sid) is not None
    assert await sessions.lookup(sid) is None
    assert await sessions.lookup(other) is not None
    assert await sessions.revoke(sid) is None


async def test_revoke_all_except_current(sessions: SessionManager) -> None:
    ids = [(await sessions.create("alice"))[0] for _ in range(4)]
    bob, _ = await sessions.create("bob")
    ended = await sessions.revoke_all("alice", except_id=ids[0])
    assert len(ended) == 3
    assert await sessions.lookup(ids[0]) is not None
    assert all([await sessions.lookup(i) is None for i in ids[1:]])
    assert await sessions.lookup(bob) is not None
    assert len(await sessions.revoke_all("alice")) == 1
    assert await sessions.lookup(ids[0]) is None


async def test_list_is_the_users_devices(sessions: SessionManager, clock: FrozenClock) -> None:
    a1, _ = await sessions.create("alice", user_agent="phone")
    clock.advance(1)
    a2, _ = await sessions.create("alice", user_agent="laptop")
    await sessions.create("bob")
    listed = await sessions.for_user("alice")
    assert [s.user_agent for s in listed] == ["laptop", "phone"]
    assert all(isinstance(s, Session) for s in listed)


async def test_revoke_by_handle_only_own(sessions: SessionManager) -> None:
    a, session = await sessions.create("alice")
    assert await sessions.revoke_handle("bob", session.handle) is None
    assert await sessions.lookup(a) is not None
    assert await sessions.revoke_handle("alice", "zz") is None
    assert await sessions.revoke_handle("alice", "é" * HANDLE_LEN) is None
    assert await sessions.revoke_handle("alice", session.handle) is not None
    assert await sessions.lookup(a) is None


async def test_find_and_revoke_by_prefix(sessions: SessionManager) -> None:
    a, session = await sessions.create("alice")
    found = await sessions.find(session.handle[:8])
    assert [s.user_id for s in found] == ["alice"]
    ended = await sessions.revoke_prefix(session.handle[:10])
    assert [s.handle for s in ended] == [session.handle]
    assert await sessions.lookup(a) is None
    with pytest.raises(InvalidInput):
        await sessions.find("ab")
    with pytest.raises(InvalidInput):
        await sessions.find("'; DROP")


async def test_update_data_in_place(sessions: SessionManager) -> None:
    sid, _ = await sessions.create("u", data={"role": "reader", "theme": "dark"})
    await sessions.update(sid, {"role": "admin"})
    found = await sessions.lookup(sid)
    assert found is not None and found.data == {"role": "admin", "theme": "dark"}
    await sessions.update(sid, {"only": 1}, replace=True)
    found = await sessions.lookup(sid)
    assert found is not None and found.data == {"only": 1}
    with pytest.raises(InvalidInput):
        await sessions.update(sid, {"big": "x" * 5000})
    assert await sessions.update("A" * 43, {"a": 1}) is None


async def test_revoke_hook_sees_every_ending(store: Store, clock: FrozenClock) -> None:
    seen: list[tuple[str, str]] = []

    async def hook(session: Session, reason: str) -> None:
        seen.append((session.user_id, reason))

    sessions = SessionManager(store, clock=clock, on_revoke=hook)
    a, _ = await sessions.create("alice")
    await sessions.create("alice")
    await sessions.revoke(a, reason="logout")
    await sessions.revoke_all("alice", reason="password_change")
    assert seen == [("alice", "logout"), ("alice", "password_change")]


async def test_concurrent_updates_of_different_keys_all_land(sessions: SessionManager) -> None:
    """Issue 10 §4: update read the data, then wrote it back, so of two concurrent updates
    one was lost. Now a single atomic store merge: none is."""
    sid, _ = await sessions.create("u", data={"seed": 0})
    results = await asyncio.gather(*(sessions.update(sid, {f"k{i}": i}) for i in range(40)))
    assert all(result is not None for result in results)
    found = await sessions.lookup(sid)
    assert found is not None
    assert found.data == {"seed": 0, **{f"k{i}": i for i in range(40)}}


async def test_update_merge_rule(sessions: SessionManager) -> None:
    """Each key replaces its value (no deep merge), None removes the key, and the data
    round-trips exactly (an empty list stays a list, a float keeps its digits)."""
    sid, _ = await sessions.create("u", data={"a": 1, "b": {"x": 1}, "c": []})
    updated = await sessions.update(sid, {"a": None, "b": {"y": 2}, "d": 1.2345678901234567})
    expected = {"b": {"y": 2}, "c": [], "d": 1.2345678901234567}
    assert updated is not None and updated.data == expected
    found = await sessions.lookup(sid)
    assert found is not None and found.data == expected
    assert found.user_id == "u" and found.expires_at == updated.expires_at


async def test_an_update_that_would_overflow_changes_nothing(sessions: SessionManager) -> None:
    sid, _ = await sessions.create("u", data={"keep": 1})
    await sessions.update(sid, {"big1": "x" * 3000})
    with pytest.raises(InvalidInput, match="4096"):
        await sessions.update(sid, {"big2": "x" * 3000})
    found = await sessions.lookup(sid)
    assert found is not None and set(found.data) == {"keep", "big1"}
    assert await sessions.update(sid, {"big1": None, "big2": "x" * 3000}) is not None


def _update_keys_in_a_process(
    path: str, session_id: str, worker: int, count: int, ready: Any, go: Any
) -> None:
    """A separate process updating its own keys of one session (see the test below)."""
    from authstate.stores import open_store

    async def run() -> None:
        store = await open_store(f"sqlite:///{path}")
        try:
            ready.release()
            go.wait(60)
            manager = SessionManager(store, idle_timeout=3600, absolute_timeout=3600)
            for i in range(count):
                assert await manager.update(session_id, {f"w{worker}-{i}": i}) is not None
        finally:
            await store.close()

    asyncio.run(run())


def test_updates_from_many_processes_on_one_sqlite_file_all_land(tmp_path: Path) -> None:
    """On SQLite, concurrency is between processes: four of them update different keys
    of one session at once, and every key is there afterwards."""
    import multiprocessing

    from authstate.stores import open_store

    path = str(tmp_path / "authstate.db")

    async def create() -> str:
        store = await open_store(f"sqlite:///{path}")
        try:
            sid, _ = await SessionManager(store, idle_timeout=3600, absolute_timeout=3600).create("u")
            return sid
        finally:
            await store.close()

    sid = asyncio.run(create())
    workers, count = 4, 50
    context = multiprocessing.get_context("spawn")
    ready, go = context.Semaphore(0), context.Event()
    processes = [
        context.Process(target=_update_keys_in_a_process, args=(path, sid, w, count, ready, go))
        for w in range(workers)
    ]
    for process in processes:
        process.start()
    for _ in processes:  # all of them open, then all of them start at once
        assert ready.acquire(timeout=60)
    go.set()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0

    async def read() -> dict[str, object]:
        store = await open_store(f"sqlite:///{path}")
        try:
            found = await SessionManager(store, idle_timeout=3600, absolute_timeout=3600).lookup(sid)
            assert found is not None
            return found.data
        finally:
            await store.close()

    data = asyncio.run(read())
    assert data == {f"w{w}-{i}": i for w in range(workers) for i in range(count)}
