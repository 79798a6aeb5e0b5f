"""``authstate cleanup``: reclaim expired state and old audit events now, in bounded batches."""

from __future__ import annotations

import json

import typer

from authstate.cleanup import BATCH, CleanupReport
from authstate.cli.runner import JsonOption, StoreOption, console, run, with_state
from authstate.state import AuthState


def cleanup_command(
    batch: int = typer.Option(
        BATCH, "--batch", min=1, max=100_000, help="Rows deleted per statement."
    ),
    store: str | None = StoreOption,
    as_json: bool = JsonOption,
) -> None:
    """Delete expired sessions, refresh families, denylist entries and throttle counters,
    and audit events past retention (`authstate serve` also does this in the background)."""

    async def action(state: AuthState) -> CleanupReport:
        return await state.cleanup(batch=batch)

    report = run(with_state(store, action))
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "expired_records": report.records,
                    "audit_events": report.audit_events,
                    "batches": report.batches,
                }
            )
        )
    else:
        console.print(
            f"removed {report.records} expired record(s) in {report.batches} batch(es) "
            f"and {report.audit_events} audit event(s) past retention",
            highlight=False,
        )
