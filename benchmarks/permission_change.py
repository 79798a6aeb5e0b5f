"""Permission change → refused: from an account change made through one process to the
first refusal of the user's JWT at another, over Redis pub/sub and PostgreSQL
LISTEN/NOTIFY.

    .venv/bin/python benchmarks/permission_change.py [--trials 100]

The admin process and one verifier process each hold an ``AuthState`` on the same store
(the bus derived from it: push revocation, the default). Per trial the admin re-enables
the user and gives back ``orders:read`` (both untimed), issues a fresh access token with
that scope for a new session and hands it to the verifier, which authenticates it (must
be accepted), then keeps authenticating it every 0.5 ms and reports the
``time.monotonic()`` of its first refusal (CLOCK_MONOTONIC is one clock for every
process on the machine). The admin then makes the change, alternating between
``disable_user`` (suspension) and ``set_scopes`` dropping ``orders:read`` (a permission
change); both reach JWTs through the user's token version, pushed like any revocation.
The delay is measured from the call returning and from the call starting (a disable
first ends the user's sessions, refresh families and opaque tokens, then bumps the
version: the second figure includes that work). A negative delay from the call
returning means the verifier refused before the call had returned.

Target (issue 13): p99 under 100 ms, over at least 50 trials per change and engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
NAMESPACE = "bench_permission"
POLL = 0.0005
SCOPE = "orders:read"


def settings(url: str) -> Settings:
    return Settings(store=url, namespace=NAMESPACE, access_token_ttl=600,
                    password_time_cost=1, password_memory_kib=1024, password_parallelism=1)


async def verifier(url: str) -> None:
    """The other instance: ``<token>`` lines in, refusal times out."""
    state = await AuthState.open(settings(url))
    loop = asyncio.get_running_loop()
    print("ready " + state.revocation.mode, flush=True)
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            token = line.strip()
            identity = await state.authenticate_bearer(token)
            assert SCOPE in identity.scope
            print("accepted", flush=True)
            while True:
                try:
                    await state.authenticate_bearer(token)
                except InvalidToken:
                    break
                await asyncio.sleep(POLL)
            print(repr(time.monotonic()), flush=True)
    finally:
        await state.close()


async def readline(proc: asyncio.subprocess.Process, timeout: float = 20) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode().strip()


Delays = dict[str, dict[str, list[float]]]


async def measure(engine: str, url: str, trials: int) -> Delays | None:
    try:
        state = await AuthState.open(settings(url))
    except Exception as error:  # a benchmark skips an engine it cannot reach
        print(f"skipping {engine}: {error}", file=sys.stderr)
        return None
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", url,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    delays: Delays = {c: {"returned": [], "started": []} for c in ("disable", "scopes")}
    try:
        # a plain (not admin) account, so that disabling it is never the last admin
        user = await state.add_user(f"bench-{time.time_ns()}@example.com",
                                    "a long benchmark passphrase", via="bench")
        assert await readline(proc) == "ready push"
        for trial in range(2 * trials):
            change = "disable" if trial % 2 == 0 else "scopes"
            await state.enable_user(user.id)
            await state.set_scopes(user.id, [SCOPE])
            _, session = await state.sessions.create(user.id)
            token, _ = await state.issue_for_session(session, scope=(SCOPE,))
            proc.stdin.write(token.encode() + b"\n")
            await proc.stdin.drain()
            assert await readline(proc) == "accepted"
            await asyncio.sleep(0.005)
            started = time.monotonic()
            if change == "disable":
                await state.disable_user(user.id, reason="bench")
            else:
                await state.set_scopes(user.id, [])
            returned = time.monotonic()
            refused = float(await readline(proc, 5))
            delays[change]["returned"].append(refused - returned)
            delays[change]["started"].append(refused - started)
            await state.sessions.revoke_all(user.id, reason="bench")
    finally:
        proc.stdin.close()
        await proc.wait()
        drop = getattr(state.store, "drop_namespace", None)
        if drop is not None:
            await drop()
        await state.close()
    return delays


def row(engine: str, change: str, frm: str, values: list[float]) -> str:
    ms = sorted(v * 1e3 for v in values)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, round(p / 100 * (len(ms) - 1)))]

    return (f"| {engine:8} | {change:8} | {frm:8} | {len(ms):6} | {ms[0]:7.2f} | "
            f"{statistics.median(ms):7.2f} | {pct(90):7.2f} | {pct(99):7.2f} | {ms[-1]:7.2f} |")


async def main(trials: int) -> None:
    print("| engine   | change   | from the call | trials | min ms | p50 ms | p90 ms | "
          "p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for engine, url in ENGINES.items():
        measured = await measure(engine, url, trials)
        if measured is None:
            continue
        for change, series in measured.items():
            for frm, values in series.items():
                print(row(engine, change, frm, values), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=100,
                        help="trials per change and engine (>= 50 for a p99)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(verifier(args.serve))
    else:
        print(json.dumps({"trials": args.trials, "poll_ms": POLL * 1e3}))
        asyncio.run(main(args.trials))
