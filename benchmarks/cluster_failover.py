"""How long session reads fail (closed) when a Redis Cluster primary is killed.

    .venv/bin/python benchmarks/cluster_failover.py [--trials 3] [--sessions 300]

Per trial: a fresh throwaway cluster on loopback (3 primaries, 1 replica each,
``cluster-node-timeout`` as ``tests/stores/cluster.py`` sets it), ``--sessions`` sessions
written, a reader looping over them; then SIGKILL of the primary holding the first
session's slot. Reported: the seconds from the kill to the first refused read
(``StoreUnavailable``, the fail-closed answer: a 503, never a logout), to the last refused
read, and to every session read again through the same store object (no restart); and
whether any session ever read as absent (it must not).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' cluster helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tests.stores.cluster import NODE_TIMEOUT_MS, RedisClusterNodes

from authstate.errors import StoreUnavailable
from authstate.stores import open_store
from authstate.stores.redis_cluster import RedisClusterStore


async def trial(cluster: RedisClusterNodes, sessions: int) -> dict[str, float]:
    store = await open_store(cluster.url, namespace="fo_" + uuid.uuid4().hex[:8])
    assert isinstance(store, RedisClusterStore)
    keys = [f"{i:064x}" for i in range(sessions)]
    for i, key in enumerate(keys):
        await store.put("session", key, {"n": i}, expires_at=time.time() + 3600)
    slot = await store._cluster.execute_command(  # type: ignore[attr-defined]
        "CLUSTER KEYSLOT", store._prefix("session") + keys[0])
    nodes = store._cluster.nodes_manager.get_node_from_slot(slot)  # type: ignore[attr-defined]
    victim = int(nodes.port)
    refused_at: list[float] = []
    absent = 0
    stop = asyncio.Event()
    killed = 0.0

    async def reader() -> None:
        nonlocal absent
        i = 0
        while not stop.is_set():
            try:
                if await store.get("session", keys[i % sessions]) is None:
                    absent += 1
            except StoreUnavailable:
                refused_at.append(time.monotonic())
                await asyncio.sleep(0.01)
            i += 1
            await asyncio.sleep(0)

    await asyncio.to_thread(cluster.wait_replicated, victim)  # as the failover test does
    task = asyncio.create_task(reader())
    await asyncio.sleep(0.3)
    killed = time.monotonic()
    cluster.kill(victim)
    deadline = killed + 60
    missing = len(keys)
    while time.monotonic() < deadline:
        try:
            missing = sum([await store.get("session", k) is None for k in keys])
            if not missing:
                break
        except StoreUnavailable:
            pass
        await asyncio.sleep(0.05)
    back = time.monotonic() - killed
    stop.set()
    await task
    await store.close()
    return {"first_refused": (refused_at[0] - killed) if refused_at else float("nan"),
            "last_refused": (refused_at[-1] - killed) if refused_at else float("nan"),
            "all_read_again": back, "absent": absent, "missing": missing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=300)
    args = parser.parse_args()
    results = []
    for _ in range(args.trials):
        cluster = RedisClusterNodes(primaries=3, replicas=1)
        try:
            cluster.start()
            results.append(asyncio.run(trial(cluster, args.sessions)))
        finally:
            cluster.stop()
    print(f"Redis Cluster, 3 primaries + 3 replicas, cluster-node-timeout {NODE_TIMEOUT_MS} ms; "
          f"{args.trials} trials, one primary SIGKILLed under reads")
    print(f"{'trial':<7}{'first refused s':>16}{'last refused s':>16}{'all read s':>12}"
          f"{'absent':>8}{'lost':>6}")
    for n, r in enumerate(results, 1):
        print(f"{n:<7}{r['first_refused']:>16.2f}{r['last_refused']:>16.2f}"
              f"{r['all_read_again']:>12.2f}{int(r['absent']):>8}{int(r['missing']):>6}")
    print(f"median time to every session read again: "
          f"{statistics.median(r['all_read_again'] for r in results):.2f} s")


if __name__ == "__main__":
    main()
