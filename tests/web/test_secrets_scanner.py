"""Security invariant 2: no secret in logs, audit rows or responses other than the one that
issues it (and, since secrets at rest are hashed, none in the database file either).

The scenario in ``tests/web/scenario.py`` drives the whole HTTP API with every logger at
DEBUG; then every secret it saw (passwords, the client secret, session IDs, access and
refresh tokens) is searched for in every captured log record (message, arguments, extras
and traceback), every audit row, every response (body and headers) except the one that
issued it, and the SQLite file with its write-ahead log. The expected number of hits is
zero; the scanner is first shown to find a planted one.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from authstate.clock import FrozenClock
from authstate.logs import JsonFormatter
from tests.web.api import running
from tests.web.scenario import REFRESHES, Run, Secret, dump, issued, run_scenario


class Capture(logging.Handler):
    """Keeps every record and what each would print, at every level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.names: set[str] = set()
        self.json = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.names.add(record.name)
        parts = [record.getMessage(), repr(record.args), repr(vars(record))]
        if record.exc_info:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
        parts.append(self.json.format(record))
        self.texts.append("\n".join(parts))


@pytest.fixture
def every_logger_at_debug() -> Iterator[Capture]:
    """DEBUG on the root and on every logger that exists, all propagating to a capture
    handler on the root; restored afterwards."""
    root = logging.getLogger()
    capture = Capture()
    saved = [(root, root.level, root.propagate, root.disabled)]
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate, logger.disabled))
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
        logger.disabled = False
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for logger, level, propagate, disabled in saved:
            logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = disabled


def leaks(run: Run, secret: Secret, logs: list[str], audit_rows: list[str], at_rest: bytes) -> list[str]:
    found = []
    for i, exchange in enumerate(run.exchanges):
        if i == secret.issued_by:
            continue
        if secret.value in exchange.body or secret.value in exchange.headers:
            found.append(f"response {i} ({exchange.label})")
    found += [f"log record: {text[:200]!r}" for text in logs if secret.value in text]
    found += [f"audit row: {row[:200]}" for row in audit_rows if secret.value in row]
    if secret.value.encode() in at_rest:
        found.append("the database file")
    return found


def database_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file())


async def test_no_secret_leaks_anywhere(every_logger_at_debug: Capture, tmp_path: Path) -> None:
    db = tmp_path / "authstate.db"
    clock = FrozenClock(time.time())
    async with running(clock=clock, store=f"sqlite:///{db}") as api:
        run = await run_scenario(api, clock)
        rows = await api.state.store.query_events(limit=10_000)
        audit_rows = [dump(row.event) for row in rows]
        at_rest = database_bytes(db)
    logs = every_logger_at_debug.texts

    # The scan is only worth something if it looked at a lot.
    assert len(issued(run, "session_id")) >= 8
    assert len(issued(run, "access_token")) >= REFRESHES + 3
    assert len(issued(run, "refresh_token")) >= REFRESHES + 3
    assert len(issued(run, "password")) == 3 and len(issued(run, "client_secret")) == 1
    assert all(s.issued_by is not None for s in run.secrets if s.kind.endswith(("_token", "_id")))
    assert len(run.exchanges) >= 60
    assert len(audit_rows) >= 50
    assert len(logs) >= len(audit_rows), "every audit event is also a log line"
    assert {"authstate.audit"} <= every_logger_at_debug.names
    assert len(at_rest) > 10_000

    planted = Secret("session_id", run.secrets[-1].value, None)
    assert leaks(run, planted, [f"oops {planted.value}"], [], b""), "the scanner finds a leak"

    report = {
        f"{s.kind} #{i}": hits
        for i, s in enumerate(run.secrets)
        if (hits := leaks(run, s, logs, audit_rows, at_rest))
    }
    assert report == {}
