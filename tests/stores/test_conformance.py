"""One suite, every backend: the Store protocol's contract (see stores/base.py)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from authstate.clock import FrozenClock
from authstate.errors import InvalidInput, InvalidStoreURL
from authstate.stores import Store, open_store
from tests.conftest import CLUSTER_BACKENDS, cluster_or_backend_store

# every test here also runs on a Redis Cluster started for the test run
store = pytest.fixture(params=CLUSTER_BACKENDS)(cluster_or_backend_store)


async def test_put_get_delete(store: Store, clock: FrozenClock) -> None:
    assert await store.get("session", "a") is None
    await store.put("session", "a", {"x": 1, "nested": {"y": [1, 2]}}, user_id="u1")
    record = await store.get("session", "a")
    assert record is not None
    assert record.value == {"x": 1, "nested": {"y": [1, 2]}}
    assert record.user_id == "u1"
    assert record.expires_at is None
    removed = await store.delete("session", "a")
    assert removed is not None and removed.value["x"] == 1
    assert await store.get("session", "a") is None
    assert await store.delete("session", "a") is None


async def test_kinds_are_separate(store: Store) -> None:
    await store.put("session", "k", {"v": "s"})
    await store.put("opaque", "k", {"v": "o"})
    s = await store.get("session", "k")
    o = await store.get("opaque", "k")
    assert s is not None and o is not None
    assert (s.value["v"], o.value["v"]) == ("s", "o")


async def test_put_replaces(store: Store) -> None:
    await store.put("session", "a", {"x": 1}, user_id="u1")
    await store.put("session", "a", {"y": 2}, user_id="u1")
    record = await store.get("session", "a")
    assert record is not None and record.value == {"y": 2}


async def test_expiry_by_clock(store: Store, clock: FrozenClock) -> None:
    await store.put("session", "a", {"x": 1}, expires_at=clock.now() + 60, user_id="u1")
    record = await store.get("session", "a")
    assert record is not None
    assert record.expires_at == pytest.approx(clock.now() + 60)
    clock.advance(59.9)
    assert await store.get("session", "a") is not None
    clock.advance(0.2)
    assert await store.get("session", "a") is None
    assert await store.list_by_user("session", "u1") == []
    assert await store.patch("session", "a", {"x": 2}) is None
    assert await store.rename("session", "a", "b") is None


async def test_create_only_if_absent(store: Store, clock: FrozenClock) -> None:
    assert await store.create("email", "a@example.com", {"user_id": "1"})
    assert not await store.create("email", "a@example.com", {"user_id": "2"})
    record = await store.get("email", "a@example.com")
    assert record is not None and record.value["user_id"] == "1"
    await store.put("throttle", "t", {"n": 1}, expires_at=clock.now() + 1)
    clock.advance(2)
    assert await store.create("throttle", "t", {"n": 5})


async def test_create_races_have_one_winner(store: Store) -> None:
    results = await asyncio.gather(
        *(store.create("email", "race@example.com", {"user_id": str(i)}) for i in range(20))
    )
    assert results.count(True) == 1


async def test_patch_merges_and_sets_expiry(store: Store, clock: FrozenClock) -> None:
    await store.put("session", "a", {"x": 1, "y": 2}, expires_at=clock.now() + 10, user_id="u")
    record = await store.patch("session", "a", {"y": 3, "z": {"k": True}}, expires_at=clock.now() + 100)
    assert record is not None
    assert record.value == {"x": 1, "y": 3, "z": {"k": True}}
    assert record.user_id == "u"
    clock.advance(50)
    again = await store.get("session", "a")
    assert again is not None and again.value["y"] == 3
    untouched = await store.patch("session", "a", {"x": 9})
    assert untouched is not None and untouched.expires_at == pytest.approx(clock.now() + 50)


async def test_rename_moves_atomically(store: Store, clock: FrozenClock) -> None:
    await store.put("session", "old", {"x": 1}, expires_at=clock.now() + 10, user_id="u")
    moved = await store.rename("session", "old", "new", fields={"rotated": True})
    assert moved is not None
    assert moved.key == "new" and moved.value == {"x": 1, "rotated": True}
    assert moved.expires_at == pytest.approx(clock.now() + 10)
    assert await store.get("session", "old") is None
    assert [r.key for r in await store.list_by_user("session", "u")] == ["new"]
    assert await store.rename("session", "old", "other") is None


async def test_concurrent_renames_one_wins(store: Store) -> None:
    await store.put("session", "old", {"x": 1}, user_id="u")
    results = await asyncio.gather(*(store.rename("session", "old", f"n{i}") for i in range(10)))
    assert sum(r is not None for r in results) == 1
    assert len(await store.list_by_user("session", "u")) == 1


async def test_delete_by_user_catches_records_moved_meanwhile(store: Store) -> None:
    """"Log out everywhere" racing session rotations and refresh rotations of the same
    user leaves nothing of that user: a move that finishes first is deleted under its new
    key, one that finishes later finds nothing to move (the Redis Cluster store does
    these in several one-slot steps; this pins that the steps keep that promise).

    PostgreSQL: this caught a READ COMMITTED ``DELETE`` missing the row a rename moved
    in after its snapshot (now REPEATABLE READ + retry, see ``delete_by_user``). SQLite
    cannot race so: writers are serialised by the database's one write lock, and a write
    statement runs on the newest snapshot once it holds it, so a move either committed
    before the ``DELETE`` (seen, deleted) or starts after it (finds nothing to move)."""
    for i in range(20):
        await store.put("session", f"s{i}", {"i": i}, user_id="u")
        await store.put("refresh", f"r{i}", {"i": i}, user_id="u")
    moves = [store.rename("session", f"s{i}", f"s{i}-new") for i in range(20)]
    spends = [
        store.spend(
            "refresh", f"r{i}", fields={"spent_at": 1.0}, new_key=f"r{i}-new",
            new_value={"i": i}, new_expires_at=None, user_id="u",
        )
        for i in range(20)
    ]
    await asyncio.gather(
        *moves[:10], *spends[:10],
        store.delete_by_user("session", "u"), store.delete_by_user("refresh", "u"),
        *moves[10:], *spends[10:],
    )
    assert await store.list_by_user("session", "u") == []
    assert await store.list_by_user("refresh", "u") == []
    for i in range(20):
        assert await store.get("session", f"s{i}") is None
        assert await store.get("session", f"s{i}-new") is None
        assert await store.get("refresh", f"r{i}-new") is None


async def test_list_and_delete_by_user(store: Store, clock: FrozenClock) -> None:
    for i in range(5):
        await store.put("session", f"s{i}", {"i": i}, user_id="alice", expires_at=clock.now() + 100)
    await store.put("session", "b0", {"i": 0}, user_id="bob")
    await store.put("opaque", "o0", {"i": 0}, user_id="alice")
    assert sorted(r.key for r in await store.list_by_user("session", "alice")) == [
        f"s{i}" for i in range(5)
    ]
    removed = await store.delete_by_user("session", "alice", keep="s2")
    assert sorted(r.key for r in removed) == ["s0", "s1", "s3", "s4"]
    assert [r.key for r in await store.list_by_user("session", "alice")] == ["s2"]
    assert [r.key for r in await store.list_by_user("session", "bob")] == ["b0"]
    assert [r.key for r in await store.list_by_user("opaque", "alice")] == ["o0"]
    assert await store.delete_by_user("session", "nobody") == []


async def test_scan_by_prefix(store: Store, clock: FrozenClock) -> None:
    await store.put("session", "abc1", {}, user_id="u")
    await store.put("session", "abc2", {}, expires_at=clock.now() + 1)
    await store.put("session", "abd1", {})
    await store.put("deny", "abc3", {})
    assert sorted(r.key for r in await store.scan("session", prefix="abc")) == ["abc1", "abc2"]
    clock.advance(5)
    assert [r.key for r in await store.scan("session", prefix="abc")] == ["abc1"]
    assert len(await store.scan("session")) == 2


async def test_scan_prefix_is_literal(store: Store) -> None:
    await store.put("session", "a%b", {})
    await store.put("session", "a_c", {})
    await store.put("session", "a*d", {})
    await store.put("session", "axe", {})
    assert [r.key for r in await store.scan("session", prefix="a%")] == ["a%b"]
    assert [r.key for r in await store.scan("session", prefix="a_")] == ["a_c"]
    assert [r.key for r in await store.scan("session", prefix="a*")] == ["a*d"]


async def test_incr_is_atomic_with_fixed_window(store: Store, clock: FrozenClock) -> None:
    counts = await asyncio.gather(
        *(store.incr("throttle", "ip:1", expires_at=clock.now() + 60) for _ in range(25))
    )
    assert sorted(counts) == list(range(1, 26))
    clock.advance(30)
    assert await store.incr("throttle", "ip:1", expires_at=clock.now() + 60) == 26
    clock.advance(31)
    assert await store.incr("throttle", "ip:1", expires_at=clock.now() + 60) == 1
    assert await store.incr("ver", "user-1") == 1
    assert await store.incr("ver", "user-1") == 2


async def test_incr_below_never_takes_past_the_limit(store: Store, clock: FrozenClock) -> None:
    """25 concurrent takers of 5 slots: exactly 5 get one, numbered 1..5, the rest None."""
    counts = await asyncio.gather(
        *(store.incr_below("throttle", "a:1", limit=5, expires_at=clock.now() + 60)
          for _ in range(25))
    )
    assert sorted(c for c in counts if c is not None) == [1, 2, 3, 4, 5]
    assert counts.count(None) == 20
    record = await store.get("throttle", "a:1")
    assert record is not None and record.value == {"n": 5}  # refusals changed nothing
    assert record.expires_at == pytest.approx(clock.now() + 60)
    clock.advance(30)  # a refusal or a take inside the window keeps the window
    assert await store.incr_below("throttle", "a:1", limit=5, expires_at=clock.now() + 60) is None
    assert await store.incr_below("throttle", "a:1", limit=6, expires_at=clock.now() + 60) == 6
    clock.advance(31)  # the window ended: the counter starts again, with the new window
    assert await store.incr_below("throttle", "a:1", limit=5, expires_at=clock.now() + 60) == 1
    record = await store.get("throttle", "a:1")
    assert record is not None and record.expires_at == pytest.approx(clock.now() + 60)
    with pytest.raises(ValueError):
        await store.incr_below("throttle", "a:1", limit=0)


async def test_decr_gives_back_without_creating(store: Store, clock: FrozenClock) -> None:
    assert await store.decr("throttle", "a:2") is None  # nothing to give back to
    assert await store.get("throttle", "a:2") is None  # and nothing was created
    for _ in range(3):
        await store.incr_below("throttle", "a:2", limit=3, expires_at=clock.now() + 60)
    counts = await asyncio.gather(*(store.decr("throttle", "a:2") for _ in range(5)))
    assert sorted(counts) == [0, 0, 0, 1, 2]  # never below zero
    record = await store.get("throttle", "a:2")
    assert record is not None and record.value == {"n": 0}
    assert record.expires_at == pytest.approx(clock.now() + 60)  # the window is kept
    assert await store.incr_below("throttle", "a:2", limit=1, expires_at=clock.now() + 600) == 1
    record = await store.get("throttle", "a:2")
    assert record is not None and record.expires_at == pytest.approx(clock.now() + 60)
    clock.advance(61)
    assert await store.decr("throttle", "a:2") is None  # a late give-back is a no-op
    assert await store.get("throttle", "a:2") is None


async def test_spend_rotates_once(store: Store, clock: FrozenClock) -> None:
    await store.put("refresh", "r1", {"family": "f"}, expires_at=clock.now() + 100, user_id="u")
    before, rotated = await store.spend(
        "refresh", "r1", fields={"spent_at": clock.now(), "successor": "blob"},
        new_key="r2", new_value={"family": "f"}, new_expires_at=clock.now() + 100, user_id="u",
    )
    assert rotated and before is not None and before.value == {"family": "f"}
    spent = await store.get("refresh", "r1")
    assert spent is not None and spent.value["successor"] == "blob"
    assert await store.get("refresh", "r2") is not None
    again, rotated = await store.spend(
        "refresh", "r1", fields={"spent_at": clock.now()},
        new_key="r3", new_value={}, new_expires_at=None,
    )
    assert not rotated and again is not None and again.value["successor"] == "blob"
    assert await store.get("refresh", "r3") is None
    missing, rotated = await store.spend(
        "refresh", "nope", fields={"spent_at": 1.0}, new_key="r4", new_value={}, new_expires_at=None
    )
    assert (missing, rotated) == (None, False)


async def test_concurrent_spend_one_successor(store: Store, clock: FrozenClock) -> None:
    await store.put("refresh", "r", {"family": "f"}, expires_at=clock.now() + 100)
    results = await asyncio.gather(
        *(
            store.spend(
                "refresh", "r", fields={"spent_at": clock.now(), "successor": f"s{i}"},
                new_key=f"n{i}", new_value={"i": i}, new_expires_at=clock.now() + 100,
            )
            for i in range(20)
        )
    )
    winners = [i for i, (_, ok) in enumerate(results) if ok]
    assert len(winners) == 1
    record = await store.get("refresh", "r")
    assert record is not None and record.value["successor"] == f"s{winners[0]}"
    created = [i for i in range(20) if await store.get("refresh", f"n{i}") is not None]
    assert created == winners


async def test_audit_events(store: Store, clock: FrozenClock) -> None:
    ids = []
    for i in range(7):
        ids.append(await store.append_event(
            {"ts": clock.now() + i, "type": "login" if i % 2 else "logout", "user_id": f"u{i % 3}"}
        ))
    page = await store.query_events(limit=3)
    assert [r.event["ts"] for r in page] == [clock.now() + 6, clock.now() + 5, clock.now() + 4]
    rest = await store.query_events(limit=10, before_id=page[-1].id)
    assert [r.event["ts"] for r in rest] == [clock.now() + i for i in (3, 2, 1, 0)]
    assert {r.event["type"] for r in await store.query_events(type="login")} == {"login"}
    assert [r.event["ts"] for r in await store.query_events(user_id="u0")] == [
        clock.now() + 6, clock.now() + 3, clock.now()
    ]
    assert len(await store.query_events(since=clock.now() + 5)) == 2
    assert await store.prune_events(clock.now() + 2) == 2
    assert len(await store.query_events(limit=100)) == 5


async def test_scrub_audit_fingerprints_one_users_ip_and_user_agent_in_place(
    store: Store, clock: FrozenClock
) -> None:
    """A deleted user's events keep their ids, order and fields, but their IP address and
    user agent become fingerprints; other users' events and later appends are untouched,
    and a second scrub changes nothing."""
    ids = []
    for i in range(9):
        ids.append(await store.append_event({
            "ts": clock.now() + i, "type": "login", "user_id": "gone" if i % 3 == 0 else "kept",
            "ip": f"192.0.2.{i}", "user_agent": f"Browser/{i}", "detail": {"n": i},
        }))
    await store.append_event({"ts": clock.now() + 9, "type": "logout", "user_id": "gone"})
    before = await store.query_events(limit=100)

    assert await store.scrub_audit("gone", ("ip", "user_agent")) == 3
    after = await store.query_events(limit=100)
    assert [r.id for r in after] == [r.id for r in before]
    for old, new in zip(before, after, strict=True):
        if old.event["user_id"] == "gone" and "ip" in old.event:
            ip = "sha256:" + hashlib.sha256(old.event["ip"].encode()).hexdigest()[:8]
            ua = "sha256:" + hashlib.sha256(old.event["user_agent"].encode()).hexdigest()[:8]
            assert new.event == {**old.event, "ip": ip, "user_agent": ua}
        else:
            assert new.event == old.event
    assert not any("192.0.2." in str(r.event) for r in await store.query_events(user_id="gone"))
    assert await store.scrub_audit("gone", ("ip", "user_agent")) == 0
    assert await store.scrub_audit("nobody", ("ip", "user_agent")) == 0
    # the log goes on after a rewrite: a new event comes after every old one
    newest = await store.append_event({"ts": clock.now() + 10, "type": "login", "user_id": "x"})
    page = await store.query_events(limit=2)
    assert page[0].id == newest and page[1].id == after[0].id
    assert [r.id for r in await store.query_events(limit=3, before_id=ids[4])] == ids[3::-1][:3]


async def test_scrub_audit_loses_no_event_appended_meanwhile(
    store: Store, clock: FrozenClock
) -> None:
    """Appends racing a scrub (which on Redis takes the stream's tail out and puts it
    back) all land, once each, after the events that were there before."""
    for i in range(200):
        await store.append_event({"ts": clock.now(), "type": "login",
                                  "user_id": "gone" if i % 2 else "kept", "ip": f"ip{i}"})
    racing = [store.append_event({"ts": clock.now() + 1, "type": "login", "user_id": "kept",
                                  "ip": f"late{i}"}) for i in range(40)]
    results = await asyncio.gather(*racing[:20], store.scrub_audit("gone", ("ip",)),
                                   *racing[20:])
    assert results[20] == 100
    rows = await store.query_events(limit=1000)
    assert len(rows) == 240 and len({r.id for r in rows}) == 240
    late = {r.event["ip"] for r in rows if r.event["ip"].startswith("late")}
    assert late == {f"late{i}" for i in range(40)}
    assert not any(r.event["ip"].startswith("late") for r in rows[40:])  # newest first
    assert all(r.event["ip"].startswith("sha256:") for r in rows if r.event["user_id"] == "gone")


async def test_sweep_removes_only_expired(store: Store, clock: FrozenClock) -> None:
    for i in range(30):
        await store.put("session", f"live{i}", {}, expires_at=clock.now() + 1000, user_id="u")
    for i in range(25):
        await store.put("session", f"dead{i}", {}, expires_at=clock.now() + 10, user_id="u")
    clock.advance(11)
    swept = 0
    while (n := await store.sweep(batch=10)) > 0:
        assert n <= 10
        swept += n
    # Redis expires keys by TTL on its own; its sweep only tidies indexes.
    assert swept in (25, 0) if store.url_scheme == "redis" else swept == 25
    assert len(await store.list_by_user("session", "u")) == 30


async def test_ping(store: Store) -> None:
    await store.ping()


@pytest.mark.parametrize(
    "url",
    ["nope://x", "", "sqlite", "http://example.com", "mysql://localhost/db"],
)
async def test_bad_urls_name_the_schemes(url: str) -> None:
    with pytest.raises(InvalidStoreURL) as info:
        await open_store(url)
    assert "memory://" in str(info.value) and "postgresql://" in str(info.value)


async def test_url_password_never_in_error() -> None:
    with pytest.raises(InvalidStoreURL) as info:
        await open_store("bogus://user:hunter2secret@host/db")
    assert "hunter2secret" not in str(info.value)


async def test_merge_one_field_by_key(store: Store, clock: FrozenClock) -> None:
    expires = clock.now() + 100
    await store.put("session", "s", {"sid": "x", "data": {"a": 1, "b": {"x": 1}, "c": []}},
                    expires_at=expires, user_id="u")
    merged = await store.merge("session", "s", "data", {"a": None, "b": {"y": 2}, "d": 0.1},
                               max_bytes=4096)
    expected = {"sid": "x", "data": {"b": {"y": 2}, "c": [], "d": 0.1}}
    assert merged is not None and merged.value == expected
    assert (merged.expires_at, merged.user_id) == (pytest.approx(expires), "u")
    found = await store.get("session", "s")
    assert found is not None and found.value == expected and found.user_id == "u"
    assert [r.key for r in await store.list_by_user("session", "u")] == ["s"]
    fresh = await store.merge("session", "s", "other", {"k": "v"}, max_bytes=4096)
    assert fresh is not None and fresh.value["other"] == {"k": "v"}


async def test_merge_past_max_bytes_changes_nothing(store: Store) -> None:
    await store.put("session", "s", {"data": {"a": "x" * 50}})
    with pytest.raises(InvalidInput):
        await store.merge("session", "s", "data", {"b": "y" * 50}, max_bytes=100)
    found = await store.get("session", "s")
    assert found is not None and found.value == {"data": {"a": "x" * 50}}


async def test_merge_needs_a_live_record(store: Store, clock: FrozenClock) -> None:
    assert await store.merge("session", "nope", "data", {"a": 1}, max_bytes=4096) is None
    await store.put("session", "old", {"data": {}}, expires_at=clock.now() + 10)
    clock.advance(11)
    assert await store.merge("session", "old", "data", {"a": 1}, max_bytes=4096) is None
    assert await store.get("session", "old") is None


async def test_concurrent_merges_of_different_keys_lose_none(store: Store) -> None:
    await store.put("session", "s", {"data": {}})
    results = await asyncio.gather(
        *(store.merge("session", "s", "data", {f"k{i}": i}, max_bytes=4096) for i in range(50))
    )
    assert all(result is not None for result in results)
    found = await store.get("session", "s")
    assert found is not None and found.value["data"] == {f"k{i}": i for i in range(50)}


async def test_spend_keeps_the_spent_record_only_until_spent_expires_at(
    store: Store, clock: FrozenClock
) -> None:
    await store.put("refresh", "r1", {"family": "f"}, expires_at=clock.now() + 1000, user_id="u")
    _, rotated = await store.spend(
        "refresh", "r1", fields={"spent_at": clock.now()}, new_key="r2",
        new_value={"family": "f"}, new_expires_at=clock.now() + 1000, user_id="u",
        spent_expires_at=clock.now() + 100,
    )
    assert rotated
    spent = await store.get("refresh", "r1")
    assert spent is not None and spent.expires_at == pytest.approx(clock.now() + 100)
    if store.url_scheme == "redis":  # the space itself is reclaimed by Redis's TTL
        pttl = await store._redis.pttl(store._prefix("refresh") + "r1")  # type: ignore[attr-defined]
        assert 0 < pttl <= 100_000
    clock.advance(101)
    if store.url_scheme != "redis":  # swept by the store, not left for the whole TTL
        assert await store.sweep() == 1
    assert await store.get("refresh", "r1") is None
    successor = await store.get("refresh", "r2")
    assert successor is not None and successor.expires_at == pytest.approx(clock.now() + 899)


async def test_spend_never_extends_the_spent_record(store: Store, clock: FrozenClock) -> None:
    await store.put("refresh", "short", {}, expires_at=clock.now() + 50)
    await store.put("refresh", "forever", {})
    for key, new_key in (("short", "n1"), ("forever", "n2")):
        _, rotated = await store.spend(
            "refresh", key, fields={"spent_at": clock.now()}, new_key=new_key, new_value={},
            new_expires_at=None, spent_expires_at=clock.now() + 100,
        )
        assert rotated
    short, forever = await store.get("refresh", "short"), await store.get("refresh", "forever")
    assert short is not None and short.expires_at == pytest.approx(clock.now() + 50)
    assert forever is not None and forever.expires_at == pytest.approx(clock.now() + 100)
