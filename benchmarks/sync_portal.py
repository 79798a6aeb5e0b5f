"""What a call through the portal (``authstate.sync``) costs beside calling directly.

    .venv/bin/python benchmarks/sync_portal.py [--calls 20000] [--threads 1 4]

The same verification of a cached, session-bound access token
(``AuthState.authenticate_bearer`` on the memory store, push revocation), four ways:
awaited on the loop itself (the floor, what the ASGI middleware pays); through
``Portal.call`` from one or several threads (the hop every sync call to the core pays);
``SyncAuthState.authenticate_bearer`` (the hop skipped for a JWT already verified,
``AuthState.authenticate_cached``); and ``asyncio.run`` per call (what the issue's user
tried: a new loop per call, which breaks once a connection outlives its loop). Then the
bare hop, an empty coroutine, through ``Portal.call`` and through anyio's
``BlockingPortal.call`` (the ready-made alternative). Medians
over 3 runs of wall time per call in µs, and the process's CPU time per call.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from anyio.from_thread import start_blocking_portal  # httpx, a core dependency, brings anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from authstate.config import Settings
from authstate.state import AuthState
from authstate.sync import Portal, SyncAuthState


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 4])
    args = parser.parse_args()
    settings = Settings(store="memory://", issuer="http://127.0.0.1:9", dev=True,
                        password_time_cost=1, password_memory_kib=1024)
    with Portal() as portal:
        sync = SyncAuthState(settings, portal=portal)
        sync.add_user("bench@example.com", "correct horse battery staple", via="bench")
        login = sync.login("bench@example.com", "correct horse battery staple", ip=None,
                           user_agent=None)
        token, _ = sync.issue_for_session(login.session)
        state = sync.state
        n = args.calls

        async def on_loop() -> float:
            start = time.perf_counter()
            for _ in range(n):
                await state.authenticate_bearer(token)
            return time.perf_counter() - start

        rows = [("awaited on the loop (floor)", *timed(lambda: portal.call(on_loop), n))]
        for threads in args.threads:
            def hop(threads: int = threads) -> float:
                start = time.perf_counter()
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(lambda _: portal.call(state.authenticate_bearer, token),
                                  range(n)))
                return time.perf_counter() - start

            def fast(threads: int = threads) -> float:
                start = time.perf_counter()
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(lambda _: sync.authenticate_bearer(token), range(n)))
                return time.perf_counter() - start

            rows.append((f"Portal.call hop, {threads} thread(s)", *timed(hop, n)))
            rows.append((f"SyncAuthState (cached), {threads} th.", *timed(fast, n)))

        def asyncio_run() -> float:  # memory store: nothing bound to a loop, so it runs
            start = time.perf_counter()
            for _ in range(n // 10):
                asyncio.run(_verify(state, token))
            return time.perf_counter() - start

        rows.append(("asyncio.run per call", *timed(asyncio_run, n // 10)))

        def empty_hops(call: Any) -> float:
            start = time.perf_counter()
            for i in range(n):
                call(_echo, i)
            return time.perf_counter() - start

        rows.append(("no-op: Portal.call", *timed(lambda: empty_hops(portal.call), n)))
        with start_blocking_portal() as anyio_portal:
            rows.append(("no-op: anyio BlockingPortal.call",
                         *timed(lambda: empty_hops(anyio_portal.call), n)))
        sync.close()
    print(f"{n} calls each; wall and CPU per call, median of 3")
    for name, wall, cpu in rows:
        print(f"{name:<32} {wall:8.1f} µs wall {cpu:8.1f} µs CPU")


async def _echo(value: int) -> int:
    return value


async def _verify(state: AuthState, token: str) -> None:
    await state.authenticate_bearer(token)


def timed(run: object, n: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(3):
        cpu0 = time.process_time()
        wall = run()  # type: ignore[operator]
        cpus.append((time.process_time() - cpu0) / n * 1e6)
        walls.append(wall / n * 1e6)
    return statistics.median(walls), statistics.median(cpus)


if __name__ == "__main__":
    main()
