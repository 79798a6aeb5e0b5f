"""The audit trail on every backend: record, read back by filter and page, prune."""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime

import pytest

from authstate.audit import (
    EVENT_TYPES,
    AuditEvent,
    AuditLog,
    bind_origin,
    current_origin,
    parse_since,
    reset_origin,
)
from authstate.clock import FrozenClock
from authstate.errors import InvalidInput
from authstate.metrics import Metrics
from authstate.sessions import fingerprint
from authstate.stores import Store

DAY = 86400
JAN_15 = datetime(2027, 1, 15, tzinfo=UTC).timestamp()


@pytest.fixture
def audit(store: Store, clock: FrozenClock) -> AuditLog:
    return AuditLog(store, clock, retention_days=90)


async def test_record_stores_a_fingerprint_never_the_token(
    audit: AuditLog, store: Store, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="authstate.audit")
    token = secrets.token_urlsafe(32)
    event = await audit.record(
        "refresh_rotated", actor="user:u1", user_id="u1", session="0123456789abcdef",
        ip="203.0.113.7", user_agent="curl/8", token=token, detail={"family": "fam-1"},
    )
    assert event.id is not None
    assert event.token_fp == fingerprint(token) and len(event.token_fp) == 8
    rows = await store.query_events()
    assert len(rows) == 1 and rows[0].id == event.id
    stored = rows[0].event
    assert stored["type"] == "refresh_rotated" and stored["ts"] == clock.now()
    assert stored["token_fp"] == fingerprint(token)
    assert (stored["actor"], stored["user_id"], stored["session"], stored["ip"], stored["user_agent"]) == (
        "user:u1", "u1", "0123456789abcdef", "203.0.113.7", "curl/8"
    )
    assert stored["detail"] == {"family": "fam-1"}
    assert token not in json.dumps(stored)
    lines = [r.getMessage() for r in caplog.records if r.name == "authstate.audit"]
    assert len(lines) == 1
    logged = json.loads(lines[0])
    assert logged["event"] == "audit" and logged["type"] == "refresh_rotated"
    assert logged["token_fp"] == fingerprint(token)
    assert token not in caplog.text


async def test_credentials_slipped_into_free_text_are_redacted(audit: AuditLog, store: Store) -> None:
    token = secrets.token_urlsafe(32)
    jwt_like = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1MSJ9." + secrets.token_urlsafe(64)
    event = await audit.record(
        "login_failed", user_agent=f"evil {token}",
        detail={"reason": "bad_password", "note": f"Bearer {jwt_like}", "kid": "A" * 43},
    )
    stored = json.dumps((await store.query_events())[0].event)
    assert token not in stored and jwt_like not in stored
    assert f"[redacted:{fingerprint(token)}]" in stored
    assert event.detail["reason"] == "bad_password"
    assert event.detail["kid"] == "A" * 43, "key IDs are public and stay readable"


async def test_query_filters_and_pages_newest_first(audit: AuditLog, clock: FrozenClock) -> None:
    recorded: list[AuditEvent] = []
    for i in range(7):
        user = "alice" if i % 2 == 0 else "bob"
        kind = "login_succeeded" if i < 4 else "session_revoked"
        recorded.append(await audit.record(kind, user_id=user, detail={"i": i}))
        clock.advance(60)

    page = await audit.query()
    assert [e.detail["i"] for e in page.events] == [6, 5, 4, 3, 2, 1, 0]
    assert page.next_before is None

    alice = await audit.query(user_id="alice")
    assert [e.detail["i"] for e in alice.events] == [6, 4, 2, 0]
    revoked = await audit.query(type="session_revoked")
    assert [e.detail["i"] for e in revoked.events] == [6, 5, 4]
    both = await audit.query(user_id="bob", type="login_succeeded")
    assert [e.detail["i"] for e in both.events] == [3, 1]
    recent = await audit.query(since=recorded[5].ts)
    assert [e.detail["i"] for e in recent.events] == [6, 5]

    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        p = await audit.query(limit=3, before=cursor)
        pages += 1
        seen += [e.detail["i"] for e in p.events]
        if p.next_before is None:
            break
        cursor = p.next_before
    assert seen == [6, 5, 4, 3, 2, 1, 0] and pages == 3

    filtered = await audit.query(user_id="alice", limit=2)
    assert [e.detail["i"] for e in filtered.events] == [6, 4]
    rest = await audit.query(user_id="alice", limit=2, before=filtered.next_before)
    assert [e.detail["i"] for e in rest.events] == [2, 0]


async def test_query_rejects_bad_input(audit: AuditLog) -> None:
    with pytest.raises(InvalidInput):
        await audit.query(type="no_such_event")
    with pytest.raises(InvalidInput):
        await audit.query(limit=0)
    with pytest.raises(InvalidInput):
        await audit.query(limit=100_000)
    with pytest.raises(InvalidInput):
        await audit.query(before="'; DROP TABLE audit; --")
    with pytest.raises(ValueError):
        await audit.record("made_up_event")


async def test_retention_prunes_only_old_events(audit: AuditLog, clock: FrozenClock) -> None:
    await audit.record("login_succeeded", user_id="old")
    clock.advance(89 * DAY)
    await audit.record("login_succeeded", user_id="recent")
    assert await audit.prune() == 0
    clock.advance(2 * DAY)
    await audit.record("login_succeeded", user_id="new")
    assert await audit.prune() == 1
    users = [e.user_id for e in (await audit.query()).events]
    assert users == ["new", "recent"]
    assert await audit.prune(retention_days=1) == 1
    assert [e.user_id for e in (await audit.query()).events] == ["new"]


async def test_every_event_type_round_trips(audit: AuditLog) -> None:
    for kind in sorted(EVENT_TYPES):
        await audit.record(kind, user_id="u1", detail={"kind": kind})
    events = (await audit.query(limit=100)).events
    assert sorted(e.type for e in events) == sorted(EVENT_TYPES)
    for kind in EVENT_TYPES:
        only = (await audit.query(type=kind)).events
        assert [e.type for e in only] == [kind]


async def test_record_feeds_metrics(store: Store, clock: FrozenClock) -> None:
    metrics = Metrics()
    audit = AuditLog(store, clock, metrics=metrics)
    await audit.record("login_succeeded", user_id="u")
    await audit.record("login_failed", detail={"reason": "bad_password"})
    await audit.record("refresh_reuse_detected", user_id="u")

    def value(name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    assert value("authstate_logins_total", outcome="succeeded") == 1
    assert value("authstate_logins_total", outcome="failed") == 1
    assert value("authstate_refresh_reuse_detections_total") == 1
    assert value("authstate_revocations_total", kind="family") == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", 1_800_000_000.0 - 1800),
        ("24h", 1_800_000_000.0 - 86400),
        ("7d", 1_800_000_000.0 - 7 * 86400),
        ("2w", 1_800_000_000.0 - 14 * 86400),
        ("2027-01-15", JAN_15),
        ("2027-01-15T10:00:00Z", JAN_15 + 36000),
        ("2027-01-15T12:00:00+02:00", JAN_15 + 36000),
        ("2027-01-15T10:00:00", JAN_15 + 36000),
        ("1799990000", 1_799_990_000.0),
    ],
)
def test_parse_since(text: str, expected: float) -> None:
    assert parse_since(text, 1_800_000_000.0) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["", "yesterday", "5x", "-3d", "2027-13-45", "12"])
def test_parse_since_rejects(bad: str) -> None:
    with pytest.raises(InvalidInput):
        parse_since(bad, 1_800_000_000.0)


async def test_request_origin_fills_what_the_caller_left_out(audit: AuditLog) -> None:
    token = bind_origin(ip="192.0.2.1", user_agent="Firefox/130")
    try:
        inner = bind_origin(actor="user:u_admin")
        try:
            deep = await audit.record("session_revoked", user_id="u_alice", detail={"reason": "admin"})
            explicit = await audit.record("login_succeeded", actor="user:u_alice", ip="198.51.100.1")
        finally:
            reset_origin(inner)
        assert current_origin().actor is None and current_origin().ip == "192.0.2.1"
    finally:
        reset_origin(token)
    assert (deep.actor, deep.ip, deep.user_agent) == ("user:u_admin", "192.0.2.1", "Firefox/130")
    assert (explicit.actor, explicit.ip, explicit.user_agent) == ("user:u_alice", "198.51.100.1", "Firefox/130")
    outside = await audit.record("login_failed")
    assert (outside.actor, outside.ip, outside.user_agent) == (None, None, None)
