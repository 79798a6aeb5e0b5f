"""Metrics: one registry per AuthState, counters driven by the audit log, the exposition."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from authstate.audit import AuditLog
from authstate.bus.memory import MemoryBus
from authstate.clock import FrozenClock
from authstate.config import Settings
from authstate.errors import InvalidToken, StoreUnavailable
from authstate.metrics import Metrics
from authstate.sessions import SessionManager
from authstate.state import AuthState
from authstate.stores import Store, open_store
from tests.support import RedisServer


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def parse(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


async def test_each_authstate_has_its_own_registry(clock: FrozenClock) -> None:
    settings = Settings.from_flat(store="memory://")
    one = AuthState(settings, await open_store("memory://", clock=clock), clock=clock)
    two = AuthState(settings, await open_store("memory://", clock=clock), clock=clock)
    assert one.metrics is not None and two.metrics is not None
    assert one.metrics.registry is not two.metrics.registry
    await one.audit.record("login_succeeded", user_id="u")
    assert sample(one.metrics, "authstate_logins_total", outcome="succeeded") == 1
    assert sample(two.metrics, "authstate_logins_total", outcome="succeeded") == 0


async def test_metrics_can_be_switched_off(clock: FrozenClock) -> None:
    state = AuthState(Settings.from_flat(store="memory://", metrics=False), await open_store("memory://"), clock=clock)
    assert state.metrics is None
    event = await state.audit.record("login_succeeded", user_id="u")
    assert event.id is not None


async def test_audit_events_move_their_counters(clock: FrozenClock) -> None:
    store = await open_store("memory://", clock=clock)
    m = Metrics()
    audit = AuditLog(store, clock, metrics=m)
    expected = {
        ("login_succeeded", None): ("authstate_logins_total", {"outcome": "succeeded"}),
        ("login_failed", None): ("authstate_logins_total", {"outcome": "failed"}),
        ("throttle_tripped", "account"): ("authstate_throttle_trips_total", {"scope": "account"}),
        ("session_created", None): ("authstate_sessions_created_total", {}),
        ("access_token_issued", None): ("authstate_tokens_issued_total", {"kind": "access"}),
        ("refresh_rotated", None): ("authstate_refresh_rotations_total", {}),
        ("refresh_reuse_detected", None): ("authstate_refresh_reuse_detections_total", {}),
        ("session_revoked", None): ("authstate_revocations_total", {"kind": "session"}),
        ("token_revoked", None): ("authstate_revocations_total", {"kind": "token"}),
        ("user_version_bumped", None): ("authstate_revocations_total", {"kind": "user"}),
        ("key_rotated", None): ("authstate_key_events_total", {"event": "rotated"}),
    }
    for (kind, scope), (name, labels) in expected.items():
        before = sample(m, name, **labels)
        await audit.record(kind, detail={"scope": scope} if scope else None)
        assert sample(m, name, **labels) == before + 1, kind
        assert sample(m, "authstate_audit_events_total", type=kind) >= 1
    await audit.record("access_token_issued", detail={"kind": "opaque"})
    await audit.record("access_token_issued", detail={"kind": "../../weird"})
    assert sample(m, "authstate_tokens_issued_total", kind="opaque") == 1
    assert sample(m, "authstate_tokens_issued_total", kind="access") == 2, "unknown kinds are bounded"
    assert sample(m, "authstate_logins_total", outcome="throttled") == 1


def test_direct_observations() -> None:
    m = Metrics()
    m.observe_verify("jwt", 0.001)
    m.observe_verify("session", 0.0002)
    m.store_error("get")
    m.observe_bus_lag(0.02)
    m.observe_bus_lag(-1.0)  # clock skew
    assert sample(m, "authstate_verify_seconds_count", method="jwt") == 1
    assert sample(m, "authstate_verify_seconds_sum", method="jwt") >= 0.001
    assert sample(m, "authstate_verify_seconds_bucket", method="session", le="0.00025") == 1
    assert sample(m, "authstate_store_errors_total", operation="get") == 1
    assert sample(m, "authstate_bus_lag_seconds_count") == 2
    assert sample(m, "authstate_bus_lag_seconds_bucket", le="0.001") == 1


async def test_active_sessions_gauge_reads_the_store(store: Store, clock: FrozenClock) -> None:
    m = Metrics(gauge_ttl=60)
    sessions = SessionManager(store, clock=clock, idle_timeout=600, absolute_timeout=3600)
    for user in ("a", "b", "c"):
        await sessions.create(user)
    await m.refresh_gauges(store)
    assert sample(m, "authstate_sessions_active") == 3
    await sessions.create("d")
    await m.refresh_gauges(store)
    assert sample(m, "authstate_sessions_active") == 3, "cached for gauge_ttl"
    await m.refresh_gauges(store, force=True)
    assert sample(m, "authstate_sessions_active") == 4
    clock.advance(601)
    await m.refresh_gauges(store, force=True)
    assert sample(m, "authstate_sessions_active") == 0, "expired sessions are not active"


def test_exposition_parses_and_names_every_metric() -> None:
    m = Metrics()
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    samples = parse(body)
    names = {name for name, _ in samples}
    names |= {f.name for f in text_string_to_metric_families(body.decode())}
    for name in (
        "authstate_logins_total", "authstate_sessions_active", "authstate_tokens_issued_total",
        "authstate_refresh_rotations_total", "authstate_refresh_reuse_detections_total",
        "authstate_revocations_total", "authstate_verify_seconds_bucket",
        "authstate_store_errors_total", "authstate_bus_lag_seconds_bucket",
    ):
        assert name in names or name.replace("_total", "") in names, name
    assert samples[("authstate_logins_total", (("outcome", "failed"),))] == 0


async def test_verify_latency_is_timed_by_method(clock: FrozenClock) -> None:
    store = await open_store("memory://", clock=clock)
    state = AuthState(Settings.from_flat(store="memory://"), store, clock=clock)
    await state.start()
    try:
        m = state.metrics
        assert m is not None
        session_id, session = await state.sessions.create("u_1")
        assert (await state.authenticate_session(session_id)) is not None
        assert await state.authenticate_session("nope") is None
        token, _ = await state.issue_for_session(session)
        assert (await state.authenticate_bearer(token)).method == "jwt"
        with pytest.raises(InvalidToken):
            await state.authenticate_bearer("not.a.jwt")
        assert sample(m, "authstate_verify_seconds_count", method="session") == 2
        assert sample(m, "authstate_verify_seconds_count", method="jwt") == 2
        assert sample(m, "authstate_verify_seconds_sum", method="jwt") > 0
    finally:
        await state.close()


async def test_bus_lag_is_observed_by_the_receiver(clock: FrozenClock) -> None:
    store = await open_store("memory://", clock=clock)
    bus = MemoryBus()
    a = AuthState(Settings.from_flat(store="memory://"), store, clock=clock, bus=bus)
    b = AuthState(Settings.from_flat(store="memory://"), store, clock=clock, bus=bus)
    await a.start()
    await b.start()
    try:
        assert b.metrics is not None
        before = sample(b.metrics, "authstate_bus_lag_seconds_count")
        await a.revocation.revoke_jti("jti-1", clock.now() + 60)
        assert sample(b.metrics, "authstate_bus_lag_seconds_count") == before + 1
        assert sample(b.metrics, "authstate_bus_lag_seconds_bucket", le="0.001") == before + 1
    finally:
        await a.revocation.close()
        await b.revocation.close()


async def test_store_errors_are_counted(redis_server: RedisServer, clock: FrozenClock) -> None:
    store = await open_store(redis_server.url, clock=clock, namespace="metrics")
    state = AuthState(Settings.from_flat(store=redis_server.url, push_revocation=False), store, clock=clock)
    try:
        m = state.metrics
        assert m is not None
        session_id, _ = await state.sessions.create("u_1")
        redis_server.stop()
        for _ in range(3):
            with pytest.raises(StoreUnavailable):  # fails closed, and is no "no session"
                await state.authenticate_session(session_id)
        assert sample(m, "authstate_store_errors_total", operation="session") == 3
        event = await state.audit.record("login_failed")
        assert event.id is None, "not stored, but not raised either"
        assert sample(m, "authstate_store_errors_total", operation="append_event") == 1
        await m.refresh_gauges(state.store, force=True)
        assert sample(m, "authstate_store_errors_total", operation="count") == 1
    finally:
        await store.close()
