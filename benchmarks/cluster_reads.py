"""Session reads on a Redis Cluster beside one Redis server, in one run.

    .venv/bin/python benchmarks/cluster_reads.py [--sessions 2000] [--duration 3]
        [--rounds 3] [--concurrency 64]

Starts a throwaway Redis Cluster on loopback (3 primaries, 1 replica each; the test
suite's ``tests/stores/cluster.py``), and uses the shared single Redis beside it. On each,
``--sessions`` sessions are created, then ``SessionManager.lookup`` is measured two ways,
alternating cluster and single per round:

- latency: one lookup at a time, median and p99 in us;
- throughput: ``--concurrency`` tasks looking up random sessions for ``--duration`` s
  (one process, one event loop: what one worker of ``authstate serve`` can drive).

On a 2-core machine the six cluster nodes share the cores with everything else, so the
cluster cannot show its scale-out here: the figures show the per-read cost of the
cluster client (slot routing, one connection per node) against the single server's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' cluster helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tests.stores.cluster import RedisClusterNodes

from authstate.sessions import SessionManager
from authstate.stores import open_store

REDIS_URL = os.environ.get("AUTHSTATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


async def prepare(url: str, count: int) -> tuple[object, SessionManager, list[str]]:
    store = await open_store(url, namespace="bench_" + uuid.uuid4().hex[:10])
    sessions = SessionManager(store, touch_interval=3600)
    ids = [(await sessions.create(f"u_{i:016d}", user_agent="bench"))[0] for i in range(count)]
    return store, sessions, ids


async def latency(sessions: SessionManager, ids: list[str], n: int = 2000) -> list[float]:
    out = []
    for _ in range(n):
        sid = random.choice(ids)
        began = time.perf_counter()
        assert await sessions.lookup(sid) is not None
        out.append((time.perf_counter() - began) * 1e6)
    return out


async def throughput(sessions: SessionManager, ids: list[str], duration: float,
                     concurrency: int) -> float:
    done = 0
    stop = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            assert await sessions.lookup(random.choice(ids)) is not None
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - began)


async def run(args: argparse.Namespace, cluster_url: str) -> None:
    targets = {"single": await prepare(REDIS_URL, args.sessions),
               "cluster": await prepare(cluster_url, args.sessions)}
    lat: dict[str, list[float]] = {k: [] for k in targets}
    rps: dict[str, list[float]] = {k: [] for k in targets}
    try:
        for name, (_, sessions, ids) in targets.items():  # warm-up
            await latency(sessions, ids, 200)
        for round_no in range(args.rounds):
            order = list(targets) if round_no % 2 == 0 else list(reversed(targets))
            for name in order:
                _, sessions, ids = targets[name]
                lat[name] += await latency(sessions, ids)
                rps[name].append(await throughput(sessions, ids, args.duration,
                                                  args.concurrency))
    finally:
        for store, _, _ in targets.values():
            await store.drop_namespace()  # type: ignore[attr-defined]
            await store.close()  # type: ignore[attr-defined]
    print(f"SessionManager.lookup, {args.sessions} sessions, {args.rounds} rounds; cluster: "
          "3 primaries + 3 replicas on loopback; both on this 2-core machine")
    print(f"{'store':<9}{'median us':>10}{'p99 us':>9}{'lookups/s':>11}  (x{args.concurrency} "
          "concurrent, rounds)")
    for name in targets:
        ordered = sorted(lat[name])
        print(f"{name:<9}{statistics.median(ordered):>10.0f}"
              f"{ordered[int(len(ordered) * 0.99)]:>9.0f}{statistics.median(rps[name]):>11.0f}"
              f"  {[round(r) for r in rps[name]]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    cluster = RedisClusterNodes(primaries=3, replicas=1)
    try:
        cluster.start()
        asyncio.run(run(args, cluster.url))
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
