"""Expired-state cleanup: what the store does not reclaim by itself, reclaimed in small bites.

Redis drops expired records by TTL; SQL and memory stores hide them on read and reclaim
them through ``Store.sweep``, which deletes at most ``batch`` rows per call, found by an
expiry index, so a pass costs what expired rather than what is alive and never holds one
long lock over the table. A pass sweeps batch after batch (yielding to the event loop
between them) until a short batch says nothing expired is left, or until ``max_batches``,
leaving the rest for the next pass; then it prunes audit events past their retention.

``cleanup_once`` is the on-demand form (``authstate cleanup``); ``Sweeper`` runs passes in
the background every ``interval`` seconds for ``authstate serve``, and survives a store
outage (it logs the outage once and tries again at the next interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from authstate.audit import AuditLog
from authstate.errors import StoreError
from authstate.outage import OutageLog
from authstate.stores.base import Store

if TYPE_CHECKING:
    from authstate.metrics import Metrics
    from authstate.state import AuthState

logger = logging.getLogger("authstate.cleanup")

BATCH = 1000
MAX_BATCHES_PER_PASS = 100


@dataclass(frozen=True, slots=True)
class CleanupReport:
    """What one pass removed; ``complete`` is False when it stopped at ``max_batches``
    with expired records still left."""

    records: int
    audit_events: int
    batches: int
    complete: bool


async def cleanup_once(
    store: Store,
    audit: AuditLog,
    *,
    metrics: Metrics | None = None,
    batch: int = BATCH,
    max_batches: int | None = None,
    pause: float = 0.0,
) -> CleanupReport:
    """One pass: sweep expired records in batches of ``batch`` (all of them unless
    ``max_batches``), sleeping ``pause`` seconds between batches, then prune old audit
    events."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    removed = batches = 0
    complete = False
    while max_batches is None or batches < max_batches:
        n = await store.sweep(batch=batch)
        batches += 1
        removed += n
        if n < batch:
            complete = True
            break
        await asyncio.sleep(pause)
    pruned = await audit.prune()
    if metrics is not None:
        metrics.observe_cleanup(records=removed, audit_events=pruned)
    if removed or pruned:
        logger.info(
            "cleanup removed %d expired records in %d batches and %d audit events",
            removed, batches, pruned,
        )
    return CleanupReport(removed, pruned, batches, complete)


class Sweeper:
    """Runs ``cleanup_once`` every ``interval`` seconds until stopped."""

    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        *,
        interval: float,
        metrics: Metrics | None = None,
        batch: int = BATCH,
        max_batches: int = MAX_BATCHES_PER_PASS,
        pause: float = 0.0,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.store = store
        self.audit = audit
        self.interval = interval
        self.metrics = metrics
        self.batch = batch
        self.max_batches = max_batches
        self.pause = pause
        self.passes = 0
        self.last: CleanupReport | None = None
        self._task: asyncio.Task[None] | None = None
        self._pass_done = asyncio.Condition()
        self._outage = OutageLog(logger, "store (cleanup)")

    @classmethod
    def for_state(cls, state: AuthState, *, interval: float | None = None) -> Sweeper:
        """A sweeper on ``state``'s store, every ``settings.service.cleanup_interval`` seconds."""
        return cls(
            state.store, state.audit, metrics=state.metrics,
            interval=state.settings.service.cleanup_interval if interval is None else interval,
        )

    async def run_pass(self) -> CleanupReport | None:
        """One pass; None when the store failed (counted, logged once per outage)."""
        try:
            report = await cleanup_once(
                self.store, self.audit, metrics=self.metrics, batch=self.batch,
                max_batches=self.max_batches, pause=self.pause,
            )
        except StoreError as error:
            self._outage.failed(error)
            if self.metrics is not None:
                self.metrics.store_error("sweep")
            report = None
        else:
            self._outage.recovered()
            self.last = report
        async with self._pass_done:
            self.passes += 1
            self._pass_done.notify_all()
        return report

    async def run(self) -> None:
        while True:
            await self.run_pass()
            await asyncio.sleep(self.interval)

    def start(self) -> asyncio.Task[None]:
        """Start the background loop on the running event loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name="authstate-cleanup"
            )
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def wait_passes(self, n: int) -> None:
        """Wait until at least ``n`` passes have finished (for tests and shutdown)."""
        async with self._pass_done:
            await self._pass_done.wait_for(lambda: self.passes >= n)
