"""Revocation policies, the local copy, push over the in-process bus, and the fallbacks."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from authstate import revocation as rev
from authstate.bus.memory import MemoryBus
from authstate.clock import FrozenClock
from authstate.errors import BusUnavailable, TokenRevoked
from authstate.revocation import BUMP, DENY, SID, Policies, Revocations
from authstate.stores import Store
from tests.conftest import CLUSTER_BACKENDS, cluster_or_backend_store

# the flows also run on a Redis Cluster (its multi-key operations are several steps)
store = pytest.fixture(params=CLUSTER_BACKENDS)(cluster_or_backend_store)

LIFETIME = 630.0


def claims(jti: Any = "j1", sub: Any = "alice", sid: Any = "s1", ver: int | None = 0, **more: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"jti": jti, "sub": sub, "sid": sid, **more}
    if ver is not None:
        c["ver"] = ver
    return c


async def rejected(r: Revocations, c: dict[str, Any]) -> bool:
    try:
        await r.check(c)
    except TokenRevoked:
        return True
    return False


def verifier(store: Store, clock: FrozenClock, bus: MemoryBus | None = None, **kw: Any) -> Revocations:
    return Revocations(store, clock=clock, lifetime=LIFETIME, leeway=30, bus=bus, **kw)


async def test_denylist_until_exp(store: Store, clock: FrozenClock) -> None:
    r = verifier(store, clock)
    assert r.mode == "store"
    exp = clock.now() + 100
    await r.revoke_jti("j1", exp)
    assert await rejected(r, claims("j1"))
    assert not await rejected(r, claims("j2"))
    clock.advance(129)
    assert await store.scan(DENY) != []
    clock.advance(2)
    assert await store.scan(DENY) == []
    await r.revoke_jti("old", clock.now() - 31)
    assert await store.scan(DENY) == []


async def test_token_version(store: Store, clock: FrozenClock) -> None:
    r = verifier(store, clock)
    assert await r.version("alice") == 0
    assert await r.bump_version("alice") == 1
    assert await r.version("alice") == 1
    assert await rejected(r, claims(ver=0))
    assert await rejected(r, claims(ver=None))
    assert not await rejected(r, claims(ver=1))
    assert not await rejected(r, claims(sub="bob", ver=0))
    assert await r.bump_version("alice") == 2
    assert await rejected(r, claims(ver=1))
    clock.advance(LIFETIME + 1)
    assert await store.scan(BUMP) == []
    assert await r.version("alice") == 2
    assert await rejected(r, claims(ver=1))


async def test_session_bound(store: Store, clock: FrozenClock) -> None:
    r = verifier(store, clock)
    await r.revoke_sid("s1")
    assert await rejected(r, claims(sid="s1"))
    assert not await rejected(r, claims(sid="s2"))
    assert not await rejected(r, {"jti": "x", "sub": "alice"})
    clock.advance(LIFETIME + 1)
    assert await store.scan(SID) == []


async def test_policies_switch_off(store: Store, clock: FrozenClock) -> None:
    writer = verifier(store, clock)
    await writer.revoke_jti("j1", clock.now() + 100)
    await writer.revoke_sid("s1")
    await writer.bump_version("alice")
    off = verifier(store, clock, policies=Policies(False, False, False))
    assert not await rejected(off, claims("j1", sid="s1", ver=0))
    only_sid = verifier(store, clock, policies=Policies(denylist=False, token_version=False))
    assert await rejected(only_sid, claims("j9", sid="s1", ver=5))
    assert not await rejected(only_sid, claims("j1", sid="s2", ver=0))


async def test_push_answers_from_memory(store: Store, clock: FrozenClock) -> None:
    bus = MemoryBus()
    a, b = verifier(store, clock, bus), verifier(store, clock, bus)
    await a.start()
    await b.start()
    assert (a.mode, b.mode) == ("push", "push")
    await a.revoke_jti("j1", clock.now() + 100)
    await a.revoke_sid("s9")
    await a.bump_version("carol")
    assert b.events == 3
    for kind in (DENY, SID, BUMP):
        for record in await store.scan(kind):
            await store.delete(kind, record.key)
    assert await rejected(b, claims("j1"))
    assert await rejected(b, claims(sid="s9"))
    assert await rejected(b, claims(sub="carol", ver=0))
    assert not await rejected(b, claims(sub="carol", ver=1, jti="j2", sid="s2"))
    clock.advance(LIFETIME + 1)
    b.purge()
    assert b.size == 0
    assert not await rejected(b, claims(sid="s9", ver=0, sub="carol", jti="j1"))
    await a.close()
    await b.close()


async def test_connect_resyncs_before_trusting(store: Store, clock: FrozenClock) -> None:
    writer = verifier(store, clock)
    await writer.revoke_jti("j1", clock.now() + 100)
    await writer.revoke_sid("s1")
    await writer.bump_version("alice")
    b = verifier(store, clock, MemoryBus())
    await b.start()
    assert b.mode == "push" and b.resyncs == 1 and b.size == 3
    assert await rejected(b, claims("j1", sid="x", ver=1))
    assert await rejected(b, claims("j2", sid="s1", ver=1))
    assert await rejected(b, claims("j2", sid="x", ver=0))
    await b.close()


@pytest.mark.parametrize("fallback", ["store", "reject"])
async def test_bus_outage_never_accepts_a_revoked_token(
    store: Store, clock: FrozenClock, fallback: str, caplog: pytest.LogCaptureFixture
) -> None:
    bus = MemoryBus()
    a = verifier(store, clock, bus)
    b = verifier(store, clock, bus, fallback=fallback)
    await a.start()
    await b.start()
    bus.interrupt()
    assert b.mode == fallback
    caplog.set_level(logging.ERROR, logger="authstate.revocation")
    await a.revoke_jti("j1", clock.now() + 100)
    assert b.events == 0
    assert any("not published" in m for m in caplog.messages)
    if fallback == "store":
        assert await rejected(b, claims("j1"))
        assert not await rejected(b, claims("j2"))
    else:
        for c in (claims("j1"), claims("j2")):
            with pytest.raises(BusUnavailable):
                await b.check(c)
    await bus.restore()
    assert b.mode == "push" and b.resyncs == 2
    await store.delete(DENY, rev._h("j1"))
    assert await rejected(b, claims("j1"))
    assert not await rejected(b, claims("j2"))
    await a.close()
    await b.close()


async def test_unstarted_verifier_reads_the_store(store: Store, clock: FrozenClock) -> None:
    b = verifier(store, clock, MemoryBus(), fallback="reject")
    assert b.mode == "store"
    await verifier(store, clock).revoke_sid("s1")
    assert await rejected(b, claims(sid="s1"))


async def test_full_copy_falls_back_to_the_store(store: Store, clock: FrozenClock, caplog: pytest.LogCaptureFixture) -> None:
    bus = MemoryBus()
    a = verifier(store, clock, bus)
    b = verifier(store, clock, bus, max_entries=3)
    await a.start()
    await b.start()
    for i in range(5):
        await a.revoke_jti(f"j{i}", clock.now() + 100)
    assert b.mode == "store"
    assert any("full" in m for m in caplog.messages)
    for i in range(5):
        assert await rejected(b, claims(f"j{i}"))
    clock.advance(200)
    await b.resync()
    assert str(b.mode) == "push"
    await a.close()
    await b.close()


async def test_resync_pages_through_many_entries(
    store: Store, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rev, "SCAN_PAGE", 4)
    writer = verifier(store, clock)
    for i in range(60):
        await writer.revoke_jti(f"jti-{i}", clock.now() + 100)
    b = verifier(store, clock, MemoryBus())
    await b.start()
    assert b.size == 60
    for i in range(60):
        b.check_local(claims(f"jti-{i + 60}"))
        with pytest.raises(TokenRevoked):
            b.check_local(claims(f"jti-{i}"))
    await b.close()


async def test_malformed_events_are_ignored(store: Store, clock: FrozenClock) -> None:
    b = verifier(store, clock, MemoryBus())
    await b.start()
    seen: list[dict[str, Any]] = []
    b.on_event.append(seen.append)
    for event in ({"t": "jti"}, {"t": "ver", "sub": "a", "ver": "x", "until": 1e12},
                  {"t": "sid", "sid": "s", "until": "soon"}, {"t": "nope"}, {}):
        b.bus_event(event)
    assert b.size == 0
    b.bus_event({"t": "sid", "sid": "s", "until": clock.now() + 5})
    assert b.size == 1 and seen[-1]["sid"] == "s"
    await b.close()


async def test_unhashable_claims_are_refused(store: Store, clock: FrozenClock) -> None:
    b = verifier(store, clock, MemoryBus())
    await b.start()
    b.check_local(claims())
    for bad in (claims(jti=["x"]), claims(sid={"a": 1}), claims(sub=["alice"])):
        with pytest.raises(TokenRevoked):
            b.check_local(bad)
    await b.close()
