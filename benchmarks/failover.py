"""What a primary's death costs behind Redis Sentinel and a PostgreSQL multi-host URL.

    .venv/bin/python benchmarks/failover.py [--engine sentinel|postgres|both] [--trials 3]
        [--sessions 200] [--down-after-ms 1000] [--promote-after 0]

Per trial, a fresh throwaway topology on loopback ports (never the shared servers):

- ``sentinel``: a primary, a replica and three sentinels (``tests/stores/cluster.py``,
  ``down-after-milliseconds`` as given, ``failover-timeout`` 10 s), opened as
  ``redis+sentinel://``; the primary is SIGKILLed.
- ``postgres``: a primary and a ``pg_basebackup -R`` streaming standby
  (``tests/stores/postgres_clusters.py``), opened as ``postgresql://standby,primary/...
  ?target_session_attrs=read-write``; the primary is stopped with ``pg_ctl stop -m
  immediate`` and the standby promoted with ``pg_ctl promote`` ``--promote-after``
  seconds later (0: at once), as an operator's tooling would (authstate never promotes).

The store is opened with its default settings, and sessions go through
``SessionManager``: ``--sessions`` sessions are created and replicated (the "baseline"),
then four readers look them up in turn (one lookup every 4 ms each) while a writer creates
a session every 20 ms, before and after the kill. Reported, in seconds after the kill:
the first refused request, when reads and when writes succeed again for good (the first
success after the last refusal), the longest single request; the requests refused
(``StoreUnavailable``: the fail-closed answer, a 503), the wrong answers (a baseline
session read as absent, or any other error: there must be none); and, once recovered,
the sessions lost: baseline ones, and ones whose creation was acknowledged before the kill
(asynchronous replication may lose the last of those).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' topology helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tests.stores.cluster import FAILOVER_TIMEOUT_MS, RedisSentinelSet, started
from tests.stores.postgres_clusters import Pair, pg_bin

from authstate.errors import StoreUnavailable
from authstate.sessions import SessionManager
from authstate.stores import open_store
from authstate.stores.base import Store

READERS = 4
READ_EVERY = 0.004  # seconds between one reader's lookups
WRITE_EVERY = 0.02  # seconds between session creations
REFUSED_PAUSE = 0.01  # a refused caller waits this long before its next request
STABLE = 2.0  # recovered when reads and writes have succeeded this long with no refusal
STALLED = 0.1  # a request slower than this counts as part of the outage (normal: ~1 ms)
BOUND = 60.0  # seconds after the kill before a trial gives up


@dataclass
class Log:
    """Every request of a trial: (start, end) monotonic times per outcome."""

    ok_reads: list[tuple[float, float]] = field(default_factory=list)
    ok_writes: list[tuple[float, float]] = field(default_factory=list)
    refused_reads: list[tuple[float, float]] = field(default_factory=list)
    refused_writes: list[tuple[float, float]] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)  # what went wrong, never a secret
    written: list[tuple[str, str, float]] = field(default_factory=list)  # id, user, acked at


async def traffic(manager: SessionManager, baseline: list[tuple[str, str]], log: Log,
                  stop: asyncio.Event) -> None:
    async def reader(first: int) -> None:
        i = first
        while not stop.is_set():
            sid, user = baseline[i % len(baseline)]
            i += READERS
            started_at = time.monotonic()
            try:
                session = await manager.lookup(sid)
            except StoreUnavailable:
                log.refused_reads.append((started_at, time.monotonic()))
                await asyncio.sleep(REFUSED_PAUSE)
                continue
            except Exception as error:  # counted, not hidden: any other error is a wrong answer
                log.wrong.append(f"read raised {type(error).__name__}")
                await asyncio.sleep(REFUSED_PAUSE)
                continue
            log.ok_reads.append((started_at, time.monotonic()))
            if session is None or session.user_id != user:
                log.wrong.append("a baseline session read as absent")
            await asyncio.sleep(READ_EVERY)

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            user = f"w{n}"
            n += 1
            started_at = time.monotonic()
            try:
                sid, _ = await manager.create(user)
            except StoreUnavailable:
                log.refused_writes.append((started_at, time.monotonic()))
                await asyncio.sleep(REFUSED_PAUSE)
                continue
            except Exception as error:
                log.wrong.append(f"write raised {type(error).__name__}")
                await asyncio.sleep(REFUSED_PAUSE)
                continue
            now = time.monotonic()
            log.ok_writes.append((started_at, now))
            log.written.append((sid, user, now))
            await asyncio.sleep(WRITE_EVERY)

    await asyncio.gather(*(reader(i) for i in range(READERS)), writer())


def _back(ok: list[tuple[float, float]], refused: list[tuple[float, float]],
          killed: float) -> float:
    """When requests of a kind succeeded again for good, in seconds after the kill: the
    end of the last one that was refused or stalled (slower than ``STALLED``), or of the
    first success after it; NaN when none was refused or stalled."""
    last_refused = max((end for _, end in refused if end >= killed), default=None)
    stalled = max((end for start, end in ok if end >= killed and end - start > STALLED),
                  default=None)
    back = stalled
    if last_refused is not None:
        first_ok = min((end for _, end in ok if end > last_refused), default=float("nan"))
        back = first_ok if stalled is None else max(first_ok, stalled)
    return float("nan") if back is None else back - killed


async def _lost(manager: SessionManager, sessions: list[tuple[str, str]]) -> int:
    lost = 0
    for sid, user in sessions:
        for _ in range(100):  # bounded: the store answered moments ago
            try:
                session = await manager.lookup(sid)
                break
            except StoreUnavailable:
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the store stopped answering after recovery")
        lost += session is None or session.user_id != user
    return lost


async def trial(store: Store, sessions: int, replicated: Callable[[], Awaitable[None]],
                kill: Callable[[float], Awaitable[dict[str, float]]]) -> dict[str, float]:
    """Baseline, traffic, kill, wait for recovery (bounded), then count what was lost."""
    manager = SessionManager(store)
    baseline = []
    for i in range(sessions):
        sid, _ = await manager.create(f"b{i}")
        baseline.append((sid, f"b{i}"))
    await replicated()
    log, stop = Log(), asyncio.Event()
    task = asyncio.create_task(traffic(manager, baseline, log, stop))
    await asyncio.sleep(1.0)
    killed = time.monotonic()
    marks = await kill(killed)
    while time.monotonic() < killed + BOUND:
        await asyncio.sleep(0.1)
        now = time.monotonic()
        last_refused = max((end for _, end in log.refused_reads + log.refused_writes),
                           default=killed)
        reads_since = any(end > last_refused for _, end in log.ok_reads)
        writes_since = any(end > last_refused for _, end in log.ok_writes)
        if now - last_refused >= STABLE and reads_since and writes_since:
            break
    stop.set()
    await task
    for what in sorted(set(log.wrong)):
        print(f"wrong answer: {what} ({log.wrong.count(what)}x)", file=sys.stderr)
    before = [(sid, user) for sid, user, acked in log.written if acked < killed]
    after = [(sid, user) for sid, user, acked in log.written if acked >= killed]
    refused = [end for _, end in log.refused_reads + log.refused_writes if end >= killed]
    nan = float("nan")
    during = [(s, e) for s, e in log.ok_reads + log.ok_writes + log.refused_reads
              + log.refused_writes if e >= killed]
    return {
        **marks,
        "first_refused": (min(refused) - killed) if refused else nan,
        "reads_back": _back(log.ok_reads, log.refused_reads, killed),
        "writes_back": _back(log.ok_writes, log.refused_writes, killed),
        "longest": max((e - s for s, e in during), default=nan),
        "stalled": sum(e - s > STALLED for s, e in during),
        "reads_refused": len(log.refused_reads),
        "writes_refused": len(log.refused_writes),
        "reads_ok": len(log.ok_reads),
        "writes_ok": len(log.ok_writes),
        "wrong": len(log.wrong),
        "baseline_lost": await _lost(manager, baseline),
        "acked_before": len(before),
        "acked_before_lost": await _lost(manager, before),
        "acked_after_lost": await _lost(manager, after),
    }


async def sentinel_trial(topology: RedisSentinelSet, sessions: int) -> dict[str, float]:
    store = await open_store(topology.url(), namespace="fo_" + uuid.uuid4().hex[:8])

    async def replicated() -> None:
        await asyncio.to_thread(topology.wait_replicated)

    promoted: list[float] = []

    async def promotion(killed: float) -> None:
        await asyncio.to_thread(topology.wait_promoted, topology.replica)
        promoted.append(time.monotonic() - killed)

    watching: list[asyncio.Task[None]] = []

    async def kill(killed: float) -> dict[str, float]:
        await asyncio.to_thread(topology.kill, topology.primary)
        watching.append(asyncio.create_task(promotion(killed)))
        return {}

    try:
        result = await trial(store, sessions, replicated, kill)
        await asyncio.gather(*watching)  # the sentinels' view, polled beside the traffic
        return {**result, "promoted": promoted[0]}
    finally:
        await store.close()


async def postgres_trial(pair: Pair, sessions: int, promote_after: float) -> dict[str, float]:
    store = await open_store(pair.url(), namespace="failover")

    async def kill(killed: float) -> dict[str, float]:
        await asyncio.to_thread(pair.primary.stop)
        stopped = time.monotonic() - killed
        await asyncio.sleep(promote_after)  # the failover tooling's detection delay
        await asyncio.to_thread(pair.promote)
        return {"stopped": stopped, "promoted": time.monotonic() - killed}

    try:
        return await trial(store, sessions, pair.wait_replayed, kill)
    finally:
        await store.close()


def run_postgres(sessions: int, promote_after: float) -> dict[str, float]:
    bin_dir = pg_bin()
    if bin_dir is None or not (bin_dir / "pg_basebackup").exists():
        raise SystemExit("initdb/pg_ctl/pg_basebackup not installed")
    root = Path(tempfile.mkdtemp(prefix="authstate-pgfailover-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    pair = Pair(root, bin_dir)
    try:
        pair.start()
        return asyncio.run(postgres_trial(pair, sessions, promote_after))
    finally:
        pair.stop()
        shutil.rmtree(root, ignore_errors=True)


def run_sentinel(sessions: int, down_after_ms: int) -> dict[str, float]:
    with started(RedisSentinelSet(down_after_ms=down_after_ms)) as topology:
        return asyncio.run(sentinel_trial(topology, sessions))


def report(title: str, results: list[dict[str, float]], marks: list[str]) -> None:
    print(title)
    columns = [*marks, "first_refused", "reads_back", "writes_back", "longest",
               "stalled", "reads_refused", "writes_refused", "wrong", "baseline_lost", "acked_before",
               "acked_before_lost", "acked_after_lost"]
    print("trial " + " ".join(f"{c:>{max(len(c), 6)}}" for c in columns))
    for n, r in enumerate(results, 1):
        cells = []
        for c in columns:
            v = r.get(c, float("nan"))
            text = f"{v:.2f}" if isinstance(v, float) else str(v)
            cells.append(f"{text:>{max(len(c), 6)}}")
        print(f"{n:<5} " + " ".join(cells))
    for c in ("reads_back", "writes_back"):
        print(f"median {c}: {statistics.median(r[c] for r in results):.2f} s")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("sentinel", "postgres", "both"), default="both")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--down-after-ms", type=int, default=1000,
                        help="the sentinels' down-after-milliseconds")
    parser.add_argument("--promote-after", type=float, default=0.0,
                        help="seconds between the PostgreSQL primary's stop and the promotion")
    args = parser.parse_args()
    print(f"store settings: defaults; {READERS} readers (a lookup every {READ_EVERY * 1000:.0f} ms"
          f" each), a session created every {WRITE_EVERY * 1000:.0f} ms; times in s after the kill")
    if args.engine in ("sentinel", "both"):
        results = [run_sentinel(args.sessions, args.down_after_ms) for _ in range(args.trials)]
        report(f"Redis Sentinel: 1 primary, 1 replica, 3 sentinels (quorum 2, "
               f"down-after-milliseconds {args.down_after_ms}, failover-timeout "
               f"{FAILOVER_TIMEOUT_MS}); primary SIGKILLed", results, ["promoted"])
    if args.engine in ("postgres", "both"):
        results = [run_postgres(args.sessions, args.promote_after) for _ in range(args.trials)]
        report("PostgreSQL: primary + pg_basebackup streaming standby, standby,primary URL "
               "with target_session_attrs=read-write; pg_ctl stop -m immediate, then "
               f"pg_ctl promote {args.promote_after:g} s later", results, ["stopped", "promoted"])


if __name__ == "__main__":
    main()
