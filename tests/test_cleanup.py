"""Expired-state cleanup: bounded batches, audit retention, the background sweeper, the CLI.

(The 100,000-live / 1,000-expired scale test is tests/stores/test_sweep_scale.py.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from authstate.audit import AuditLog
from authstate.cleanup import CleanupReport, Sweeper, cleanup_once
from authstate.cli import app
from authstate.clock import FrozenClock, SystemClock
from authstate.metrics import Metrics
from authstate.stores import Store, open_store
from tests.support import RedisServer

DAY = 86400
KINDS = ("session", "refresh", "denylist", "throttle")


def reclaims_by_sweep(store: Store) -> bool:
    """Redis reclaims by TTL, so its sweep has nothing to do."""
    return store.url_scheme != "redis"


async def fill(store: Store, now: float, *, live: int, expired: int) -> None:
    for i in range(live):
        await store.put(KINDS[i % 4], f"live-{i}", {"i": i}, expires_at=now + 3600, user_id="u1")
    for i in range(expired):
        await store.put(KINDS[i % 4], f"gone-{i}", {"i": i}, expires_at=now + 10, user_id="u1")


async def live_keys(store: Store) -> set[str]:
    return {r.key for kind in KINDS for r in await store.scan(kind)}


async def test_cleanup_removes_expired_in_bounded_batches(store: Store, clock: FrozenClock) -> None:
    await fill(store, clock.now(), live=10, expired=25)
    clock.advance(60)
    metrics = Metrics()
    report = await cleanup_once(store, AuditLog(store, clock), metrics=metrics, batch=10)
    assert await live_keys(store) == {f"live-{i}" for i in range(10)}
    if reclaims_by_sweep(store):
        assert report == CleanupReport(records=25, audit_events=0, batches=3, complete=True)
        assert metrics.registry.get_sample_value(
            "authstate_cleanup_removed_total", {"what": "records"}) == 25
    else:
        assert report.records == 0 and report.complete
    again = await cleanup_once(store, AuditLog(store, clock), batch=10)
    assert again.records == 0 and again.batches == 1
    assert len(await store.list_by_user("session", "u1")) == 3


async def test_a_pass_stops_at_max_batches_and_the_next_finishes(store: Store, clock: FrozenClock) -> None:
    if not reclaims_by_sweep(store):
        pytest.skip("Redis reclaims by TTL")
    await fill(store, clock.now(), live=4, expired=25)
    clock.advance(60)
    audit = AuditLog(store, clock)
    first = await cleanup_once(store, audit, batch=5, max_batches=2)
    assert (first.records, first.batches, first.complete) == (10, 2, False)
    rest = await cleanup_once(store, audit, batch=5)
    assert (rest.records, rest.complete) == (15, True)
    assert len(await live_keys(store)) == 4


async def test_cleanup_applies_audit_retention(store: Store, clock: FrozenClock) -> None:
    audit = AuditLog(store, clock, retention_days=30)
    await audit.record("login_succeeded", user_id="old")
    clock.advance(31 * DAY)
    await audit.record("login_succeeded", user_id="new")
    report = await cleanup_once(store, audit)
    assert report.audit_events == 1
    assert [e.user_id for e in (await audit.query()).events] == ["new"]


async def test_sweeper_runs_passes_in_the_background(store: Store, clock: FrozenClock) -> None:
    metrics = Metrics()
    sweeper = Sweeper(store, AuditLog(store, clock), interval=0.01, metrics=metrics, batch=7)
    sweeper.start()
    try:
        await asyncio.wait_for(sweeper.wait_passes(1), 5)
        await fill(store, clock.now(), live=3, expired=20)
        clock.advance(60)
        target = sweeper.passes + 2
        await asyncio.wait_for(sweeper.wait_passes(target), 5)
        assert await live_keys(store) == {"live-0", "live-1", "live-2"}
        if reclaims_by_sweep(store):
            assert metrics.registry.get_sample_value(
                "authstate_cleanup_removed_total", {"what": "records"}) == 20
        assert not sweeper.start().done()
    finally:
        await sweeper.stop()
    passes = sweeper.passes
    await asyncio.sleep(0.05)
    assert sweeper.passes == passes, "stopped means stopped"


async def test_sweeper_survives_a_store_outage(
    redis_server: RedisServer, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="authstate.cleanup")
    store = await open_store(redis_server.url, clock=clock, namespace="cleanup")
    metrics = Metrics()
    sweeper = Sweeper(store, AuditLog(store, clock), interval=0.01, metrics=metrics)
    try:
        sweeper.start()
        await asyncio.wait_for(sweeper.wait_passes(1), 5)
        assert sweeper.last is not None
        redis_server.stop()
        await asyncio.wait_for(sweeper.wait_passes(sweeper.passes + 3), 10)
        assert not sweeper.start().done(), "the loop keeps going through an outage"
        errors = metrics.registry.get_sample_value(
            "authstate_store_errors_total", {"operation": "sweep"})
        assert errors is not None and errors >= 3
        down = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(down) == 1, "an outage is logged once, not once per pass"
        redis_server.start()
        deadline = time.monotonic() + 10
        while not any("available again" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the sweeper did not recover"
            await asyncio.wait_for(sweeper.wait_passes(sweeper.passes + 1), 5)
    finally:
        await sweeper.stop()
        await store.close()


def test_cli_cleanup(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'authstate.db'}"

    async def setup() -> None:
        store = await open_store(url, clock=SystemClock())
        await fill(store, time.time() - 3600, live=0, expired=12)
        await fill(store, time.time(), live=5, expired=0)
        await store.close()

    asyncio.run(setup())
    result = CliRunner().invoke(app, ["cleanup", "--store", url, "--json", "--batch", "5"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"expired_records": 12, "audit_events": 0, "batches": 3}
    result = CliRunner().invoke(app, ["cleanup", "--store", url])
    assert result.exit_code == 0, result.output
    assert "removed 0 expired record(s)" in result.output
