"""What only the Redis backend promises: its key layout, real TTLs, lazy index repair,
literal SCAN prefixes, stream-based audit, and script reloading."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis

from authstate.clock import FrozenClock
from authstate.errors import InvalidInput
from authstate.stores import open_store
from authstate.stores.redis import RedisStore, glob_escape
from tests.conftest import fresh_namespace, require_service


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(require_service("redis"))
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def rstore(clock: FrozenClock) -> AsyncIterator[RedisStore]:
    ns = fresh_namespace()
    store = await open_store(require_service("redis"), clock=clock, namespace=ns)
    assert isinstance(store, RedisStore)
    try:
        yield store
    finally:
        await store.drop_namespace()
        await store.close()


def ns(store: RedisStore) -> str:
    return store._ns


async def test_record_is_a_hash_with_a_relative_ttl(
    rstore: RedisStore, raw: aioredis.Redis, clock: FrozenClock
) -> None:
    # The frozen clock is years away from real time: the TTL must still be 60 s.
    await rstore.put("session", "k", {"a": 1, "b": {"c": [1, 2]}}, expires_at=clock.now() + 60,
                     user_id="alice")
    key = f"{ns(rstore)}:r:session:k"
    assert await raw.type(key) == b"hash"
    assert 59_000 < await raw.pttl(key) <= 60_000
    fields = await raw.hgetall(key)
    assert fields == {
        b',"\\u0000e":': repr(clock.now() + 60).encode(),
        b',"\\u0000u":': b'"alice"',
        b',"a":': b"1",
        b',"b":': b'{"c":[1,2]}',
    }
    # Joined as Redis returns them, the fields are the record's JSON object.
    flat = await raw.execute_command("HGETALL", key)
    if isinstance(flat, dict):  # a RESP3 client
        flat = [part for pair in flat.items() for part in pair]
    assert json.loads("{" + b"".join(flat).decode()[1:] + "}") == {
        "\x00e": clock.now() + 60, "\x00u": "alice", "a": 1, "b": {"c": [1, 2]}
    }
    index = f"{ns(rstore)}:u:session:alice"
    assert await raw.smembers(index) == {b"k"}
    assert 59_000 < await raw.pttl(index) <= 60_000


async def test_patch_extends_record_and_index_ttl(
    rstore: RedisStore, raw: aioredis.Redis, clock: FrozenClock
) -> None:
    await rstore.put("session", "k", {"x": 1}, expires_at=clock.now() + 10, user_id="u")
    clock.advance(5)
    patched = await rstore.patch("session", "k", {"y": 0.1 + 0.2}, expires_at=clock.now() + 600)
    assert patched is not None and patched.value == {"x": 1, "y": 0.1 + 0.2}
    assert 599_000 < await raw.pttl(f"{ns(rstore)}:r:session:k") <= 600_000
    assert 599_000 < await raw.pttl(f"{ns(rstore)}:u:session:u") <= 600_000


async def test_index_outlives_its_longest_member(
    rstore: RedisStore, raw: aioredis.Redis, clock: FrozenClock
) -> None:
    index = f"{ns(rstore)}:u:session:u"
    await rstore.put("session", "long", {}, expires_at=clock.now() + 1000, user_id="u")
    await rstore.put("session", "short", {}, expires_at=clock.now() + 10, user_id="u")
    assert await raw.pttl(index) > 999_000
    await rstore.put("session", "forever", {}, user_id="u")
    assert await raw.pttl(index) == -1
    await rstore.put("session", "short2", {}, expires_at=clock.now() + 10, user_id="u")
    assert await raw.pttl(index) == -1


async def test_stale_index_members_are_dropped_lazily(
    rstore: RedisStore, raw: aioredis.Redis
) -> None:
    await rstore.put("session", "a", {}, user_id="alice")
    await rstore.put("session", "b", {}, user_id="alice")
    await raw.delete(f"{ns(rstore)}:r:session:b")  # as if Redis expired it by TTL
    await rstore.put("session", "a", {}, user_id="bob")  # the key changed owner
    assert await rstore.list_by_user("session", "alice") == []
    assert await raw.exists(f"{ns(rstore)}:u:session:alice") == 0
    assert [r.key for r in await rstore.list_by_user("session", "bob")] == ["a"]


async def test_expiry_in_the_past_stores_nothing(
    rstore: RedisStore, raw: aioredis.Redis, clock: FrozenClock
) -> None:
    await rstore.put("session", "k", {"x": 1}, expires_at=clock.now() - 1, user_id="u")
    assert await raw.exists(f"{ns(rstore)}:r:session:k") == 0
    assert await rstore.get("session", "k") is None
    assert await rstore.create("session", "k", {"x": 2}, expires_at=clock.now() + 5)
    assert await rstore.incr("throttle", "t", expires_at=clock.now() - 1) == 1
    assert await rstore.get("throttle", "t") is None


async def test_values_keep_exact_json(rstore: RedisStore) -> None:
    value = {"f": 1800000000.123456, "big": 2**60, "s": 'quote " \\ é', "n": None, "l": []}
    await rstore.put("session", "k", value)
    record = await rstore.get("session", "k")
    assert record is not None and record.value == value
    with pytest.raises(TypeError):
        await rstore.put("session", "k", {1: "x"})  # type: ignore[dict-item]
    for reserved in ("\x00e", "\x00u"):
        with pytest.raises(ValueError):
            await rstore.patch("session", "k", {reserved: 1})
    assert (await rstore.get("session", "k")) == record


@pytest.mark.parametrize("user", ['quote"and\\backslash', "ünïcødé 🔑", "colon:and space"])
async def test_any_user_id_indexes(rstore: RedisStore, clock: FrozenClock, user: str) -> None:
    await rstore.put("session", "a", {}, user_id=user, expires_at=clock.now() + 10)
    await rstore.put("session", "b", {}, user_id=user)
    moved = await rstore.rename("session", "a", "c", expires_at=clock.now() + 20)
    assert moved is not None and moved.user_id == user
    patched = await rstore.patch("session", "c", {"x": 1}, expires_at=clock.now() + 30)
    assert patched is not None and patched.user_id == user
    assert sorted(r.key for r in await rstore.list_by_user("session", user)) == ["b", "c"]
    await rstore.put("session", "b", {}, user_id="someone else")
    assert [r.key for r in await rstore.list_by_user("session", user)] == ["c"]
    assert [r.key for r in await rstore.delete_by_user("session", user)] == ["c"]
    assert await rstore.list_by_user("session", user) == []


async def test_url_asking_for_resp3_still_works(clock: FrozenClock) -> None:
    store = await open_store(
        require_service("redis") + "?protocol=3", clock=clock, namespace=fresh_namespace()
    )
    try:
        await store.put("session", "k", {"x": 1})
        record = await store.get("session", "k")
        assert record is not None and record.value == {"x": 1}
    finally:
        await store.drop_namespace()  # type: ignore[attr-defined]
        await store.close()


@pytest.mark.parametrize("prefix", ["a?", "a[", "a]", "a\\", "a%", "a_", "a*"])
async def test_scan_prefix_glob_characters_are_literal(rstore: RedisStore, prefix: str) -> None:
    for key in ["a?1", "a[1", "a]1", "a\\1", "a%1", "a_1", "a*1", "ab1"]:
        await rstore.put("session", key, {})
    assert [r.key for r in await rstore.scan("session", prefix=prefix)] == [prefix + "1"]


def test_glob_escape() -> None:
    assert glob_escape("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f"


async def test_scan_limit(rstore: RedisStore) -> None:
    for i in range(30):
        await rstore.put("session", f"p{i:02d}", {})
    assert len(await rstore.scan("session", prefix="p", limit=7)) == 7


async def test_audit_is_a_stream_pruned_by_event_time(
    rstore: RedisStore, raw: aioredis.Redis, clock: FrozenClock
) -> None:
    assert await rstore.prune_events(clock.now()) == 0
    for i in range(5):
        await rstore.append_event({"ts": clock.now() + i, "type": "login", "user_id": "u"})
    assert await raw.xlen(f"{ns(rstore)}:audit") == 5
    assert await rstore.prune_events(clock.now() + 100) == 5
    assert await rstore.query_events() == []
    new_id = await rstore.append_event({"ts": clock.now() + 200, "type": "x"})
    assert [r.id for r in await rstore.query_events()] == [new_id]


async def test_audit_filters_page_past_non_matching_events(
    rstore: RedisStore, clock: FrozenClock
) -> None:
    await rstore.append_event({"ts": clock.now(), "type": "rare", "user_id": "u"})
    for i in range(450):
        await rstore.append_event({"ts": clock.now() + i, "type": "common", "user_id": "v"})
    rare = await rstore.query_events(type="rare", limit=5)
    assert [r.event["type"] for r in rare] == ["rare"]
    assert len(await rstore.query_events(user_id="v", limit=300)) == 300
    # A user id that looks like another JSON type does not match.
    assert await rstore.query_events(user_id="null") == []


async def test_bad_audit_cursor_is_invalid_input(rstore: RedisStore) -> None:
    with pytest.raises(InvalidInput):
        await rstore.query_events(before_id="00000000000000000001")


async def test_scripts_reload_after_script_flush(
    rstore: RedisStore, raw: aioredis.Redis
) -> None:
    assert await rstore.create("email", "a@example.com", {"u": 1})
    await raw.script_flush()
    assert not await rstore.create("email", "a@example.com", {"u": 2})
    assert await rstore.incr("throttle", "t") == 1


async def test_drop_namespace_only_drops_its_own(clock: FrozenClock, raw: aioredis.Redis) -> None:
    url = require_service("redis")
    mine = await open_store(url, clock=clock, namespace=fresh_namespace())
    other_ns = fresh_namespace()
    other = await open_store(url, clock=clock, namespace=other_ns)
    try:
        assert isinstance(mine, RedisStore) and isinstance(other, RedisStore)
        for store in (mine, other):
            await store.put("session", "k", {}, user_id="u")
            await store.append_event({"ts": 1.0})
        await mine.drop_namespace()
        assert await raw.keys(f"{mine._ns}:*") == []
        assert len(await raw.keys(f"{other_ns}:*")) == 3
    finally:
        await other.drop_namespace()
        await mine.close()
        await other.close()


async def test_a_client_already_speaking_resp3_still_reads(clock: FrozenClock) -> None:
    url = require_service("redis")
    client = aioredis.Redis.from_url(url, protocol=3)
    await client.ping()  # a RESP3 connection now waits in the pool
    store = RedisStore(client, url=url, clock=clock, namespace=fresh_namespace())
    try:
        await store.put("session", "k", {"x": 1}, user_id="u")
        record = await store.get("session", "k")
        assert record is not None and (record.value, record.user_id) == ({"x": 1}, "u")
    finally:
        await store.drop_namespace()
        await store.close()


async def test_a_counter_reads_as_n(rstore: RedisStore, clock: FrozenClock) -> None:
    await rstore.incr("throttle", "ip", expires_at=clock.now() + 60)
    assert await rstore.incr("throttle", "ip", expires_at=clock.now() + 60) == 2
    record = await rstore.get("throttle", "ip")
    assert record is not None
    assert (record.value, record.expires_at) == ({"n": 2}, clock.now() + 60)


async def test_concurrent_reads_share_one_round_trip_and_each_gets_its_own(
    rstore: RedisStore, raw: aioredis.Redis, clock: FrozenClock
) -> None:
    """Reads of one event-loop turn go out as one batch (``_fetch``): each caller gets
    its own record (or None), a wrong-type key fails only its own read, and a reader
    cancelled before the reply leaves the others' answers intact."""
    for i in range(50):
        await rstore.put("session", f"k{i}", {"i": i}, expires_at=clock.now() + 60)
    await raw.set(f"{ns(rstore)}:r:session:wrongtype", b"x")  # a string, not a hash
    gets = [asyncio.create_task(rstore.get("session", f"k{i}")) for i in range(60)]
    broken = asyncio.create_task(rstore.get("session", "wrongtype"))
    doomed = asyncio.create_task(rstore.get("session", "k1"))
    await asyncio.sleep(0)  # every read is queued; the batch goes out next turn
    doomed.cancel()
    await asyncio.sleep(0)
    assert len(rstore._fetches) == 1, "one round trip for the 62 reads"
    records = await asyncio.gather(*gets)
    assert [r.value["i"] if r is not None else None for r in records] == [
        *range(50), *[None] * 10]
    with pytest.raises(redis.exceptions.ResponseError):
        await broken
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert len(rstore._fetches) == 0
    assert await rstore.get("session", "k7") is not None, "the store still reads alone"
