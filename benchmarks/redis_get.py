"""RedisStore.get (the per-request session read) against its floor, a raw redis-py read.

The floor is ``HGETALL`` of the same key through a plain pooled ``redis.asyncio`` client
with redis-py's defaults: the same round trip without authstate's decoding. (The store
speaks RESP2, so the same read over RESP2 is shown too.) Rounds alternate the order of the
contenders and the ratio is taken per round, so machine noise hits both alike; the
minimum over rounds and this process's CPU time per call are shown too, because on a
busy machine the wall-clock median moves with whatever else runs.

    .venv/bin/python benchmarks/redis_get.py [--url redis://127.0.0.1:6379/0] [--rounds 41] [--calls 500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from authstate.clock import SystemClock
from authstate.sessions import KIND, SessionManager, digest
from authstate.stores.redis import RedisStore

Op = Callable[[], Awaitable[object]]


async def per_call_us(op: Op, n: int) -> tuple[float, float]:
    """Wall-clock and this process's CPU microseconds per call."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await op()
    return (
        (time.perf_counter() - start) / n * 1e6,
        (time.process_time() - cpu) / n * 1e6,
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()

    namespace = "bench" + uuid.uuid4().hex[:8]
    store = await RedisStore.open(args.url, clock=SystemClock(), namespace=namespace)
    raw = aioredis.Redis.from_url(args.url)  # redis-py's defaults (RESP3 since 8.0)
    raw2 = aioredis.Redis.from_url(args.url, protocol=2)
    try:
        sessions = SessionManager(store, touch_interval=3600)
        session_id, _ = await sessions.create(
            "user-1234", ip="203.0.113.9", user_agent="Mozilla/5.0 (X11; Linux x86_64)",
            data={"role": "reader", "theme": "dark"},
        )
        key = digest(session_id)
        redis_key = f"{namespace}:r:{KIND}:{key}"
        blob_key = f"{namespace}:blob"
        record = await store.get(KIND, key)
        assert record is not None
        await raw.set(blob_key, str(record.value).encode())

        contenders: dict[str, Op] = {
            "raw HGETALL (floor)": lambda: raw.hgetall(redis_key),
            "raw HGETALL, RESP2": lambda: raw2.hgetall(redis_key),
            "raw GET of a string": lambda: raw.get(blob_key),
            "RedisStore.get": lambda: store.get(KIND, key),
            "SessionManager.lookup": lambda: sessions.lookup(session_id),
        }
        names = list(contenders)
        for op in contenders.values():  # warm pools, scripts and caches
            await per_call_us(op, 200)
        results: dict[str, list[float]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                wall, used = await per_call_us(contenders[name], args.calls)
                results[name].append(wall)
                cpu[name].append(used)
    finally:
        await store.drop_namespace()
        await store.close()
        await raw.aclose()
        await raw2.aclose()

    floor = results["raw HGETALL (floor)"]
    cpu_floor = statistics.median(cpu["raw HGETALL (floor)"])
    print(f"{args.rounds} rounds x {args.calls} sequential calls, interleaved\n")
    print(
        f"{'':24} {'wall med µs':>11} {'wall min µs':>11} {'ratio med':>9} {'ratio min':>9}"
        f" {'client CPU µs':>13} {'CPU ratio':>9}"
    )
    for name in names:
        ratios = [a / b for a, b in zip(results[name], floor, strict=True)]
        used = statistics.median(cpu[name])
        print(
            f"{name:24} {statistics.median(results[name]):11.1f} {min(results[name]):11.1f}"
            f" {statistics.median(ratios):9.3f} {min(results[name]) / min(floor):9.3f}"
            f" {used:13.1f} {used / cpu_floor:9.3f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
