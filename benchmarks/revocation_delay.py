"""Revocation delay: from the revoking call returning to the first rejected request at
other verifier processes, over Redis pub/sub and over PostgreSQL LISTEN/NOTIFY.

    .venv/bin/python benchmarks/revocation_delay.py [--verifiers 2] [--trials 200]

The revoker and ``--verifiers`` verifier processes each hold an ``AuthState`` on the same
store (with its bus derived from it: push revocation). Per trial the revoker issues a
fresh session-bound access token and hands it to every verifier; each authenticates it
(must be accepted), then keeps authenticating it every 0.5 ms and reports the
``time.monotonic()`` of its first rejection (CLOCK_MONOTONIC is one clock for every
process on the machine). The revoker then revokes the token (RFC 7009 path, denylist),
notes the monotonic time the call returned, and the delay is the difference. A negative
delay means a verifier rejected the token before the revoking call had even returned.
Revocations alternate between the denylist (one token) and ending the session (its sid).

``--load N`` (issue 15: the delay under load, not idle): every verifier also runs N
tasks that authenticate without pause (a session cookie read from the store, then a
session-bound JWT from the verified-token cache), so the bus event competes with a busy
event loop and a busy store; the verifiers report the authentications per second they
sustained meanwhile.

Target (issue 4): p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from authstate.config import Settings
from authstate.errors import InvalidToken
from authstate.state import AuthState

ENGINES = {
    "redis": "redis://127.0.0.1:6379/0",
    "postgres": "postgresql://postgres@127.0.0.1:5432/test",
}
NAMESPACE = "bench_delay"
POLL = 0.0005


def settings(url: str) -> Settings:
    return Settings.from_flat(store=url, namespace=NAMESPACE, access_token_ttl=600)


async def verifier(url: str, load: int) -> None:
    """A verifier process: ``watch <token>`` lines in, rejection times out."""
    state = await AuthState.open(settings(url))
    loop = asyncio.get_running_loop()
    done = 0
    began = time.monotonic()

    async def busy(session_id: str, token: str) -> None:
        nonlocal done
        while True:
            assert await state.authenticate_session(session_id) is not None
            await state.authenticate_bearer(token)
            done += 2

    tasks = []
    if load:
        user = await state.add_user(f"load{os.getpid()}@example.com",
                                    "correct horse battery 42", via="bench")
        session_id, session = await state.sessions.create(user.id)
        token, _ = await state.issue_for_session(session)
        tasks = [asyncio.create_task(busy(session_id, token)) for _ in range(load)]
    print("ready " + state.revocation.mode, flush=True)
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            token = line.strip()
            await state.authenticate_bearer(token)
            print("accepted", flush=True)
            while True:
                try:
                    await state.authenticate_bearer(token)
                except InvalidToken:
                    break
                await asyncio.sleep(POLL)
            print(repr(time.monotonic()), flush=True)
        print(f"load {done / (time.monotonic() - began):.0f}", flush=True)
    finally:
        for task in tasks:
            task.cancel()
        await state.close()


async def readline(proc: asyncio.subprocess.Process, timeout: float = 20) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode().strip()


async def measure(
    engine: str, url: str, verifiers: int, trials: int, load: int
) -> tuple[list[float], list[float], list[float]] | None:
    try:
        state = await AuthState.open(settings(url))
    except Exception as error:  # a benchmark skips an engine it cannot reach
        print(f"skipping {engine}: {error}", file=sys.stderr)
        return None
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", url, "--load", str(load),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(verifiers)
    ]
    delays: list[float] = []
    from_start: list[float] = []
    rates: list[float] = []
    try:
        for proc in procs:
            ready = await readline(proc)
            assert ready == "ready push", ready
        for trial in range(trials):
            session_id, session = await state.sessions.create("bench-user")
            token, _ = await state.issue_for_session(session)
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(token.encode() + b"\n")
                await proc.stdin.drain()
            for proc in procs:
                assert await readline(proc) == "accepted"
            await asyncio.sleep(0.005)
            started = time.monotonic()
            if trial % 2:
                await state.sessions.revoke(session_id)
            else:
                await state.revoke_token(token)
            returned = time.monotonic()
            for proc in procs:
                rejected = float(await readline(proc, 5))
                delays.append(rejected - returned)
                from_start.append(rejected - started)
            if trial % 2 == 0:
                await state.sessions.revoke(session_id)
    finally:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
            with contextlib.suppress(TimeoutError, ValueError):
                rates.append(float((await readline(proc, 5)).removeprefix("load ")))
            await proc.wait()
        drop = getattr(state.store, "drop_namespace", None)
        if drop is not None:
            await drop()
        await state.close()
    return delays, from_start, rates


def describe(title: str, delays: list[float]) -> None:
    ms = sorted(d * 1e3 for d in delays)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, round(p / 100 * (len(ms) - 1)))]

    print(f"\n{title}, {len(ms)} rejections, ms")
    print(f"  min {ms[0]:.2f}  p50 {statistics.median(ms):.2f}  p90 {pct(90):.2f}  "
          f"p99 {pct(99):.2f}  max {ms[-1]:.2f}  (negative: {sum(m < 0 for m in ms)})")
    edges = [-float("inf"), 0, 1, 2, 5, 10, 20, 50, 100, float("inf")]
    for low, high in itertools.pairwise(edges):
        count = sum(low <= m < high for m in ms)
        label = f"[{low:>4g}, {high:>4g}) ms"
        print(f"  {label} {count:>5} {'#' * round(60 * count / len(ms))}")


async def main(verifiers: int, trials: int, load: int) -> None:
    for engine, url in ENGINES.items():
        measured = await measure(engine, url, verifiers, trials, load)
        if measured:
            delays, from_start, rates = measured
            under = (f", each under load: {load} tasks, "
                     f"{' + '.join(f'{r:.0f}' for r in rates)} authentications/s")
            describe(f"{engine}, {verifiers} verifier processes{under if load else ''}: "
                     "from the call returning", delays)
            describe(f"{engine}: from the call starting", from_start)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--verifiers", type=int, default=2)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--load", type=int, default=0,
                        help="authenticating tasks per verifier, running throughout")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(verifier(args.serve, args.load))
    else:
        print(json.dumps({"verifiers": args.verifiers, "trials": args.trials,
                          "load": args.load}))
        asyncio.run(main(args.verifiers, args.trials, args.load))
