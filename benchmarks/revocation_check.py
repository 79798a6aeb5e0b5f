"""The per-request revocation check: verify alone, verify + push check, verify + store read.

    .venv/bin/python benchmarks/revocation_check.py [--rounds 21] [--calls 2000]

(``--calls`` per round for the cached verify is ten times that, for the uncached a
quarter, and 50 for the store-read variants, so that each batch takes tens of ms.)

One EdDSA access token (authstate's claims) is authenticated in these ways, interleaved
round by round so machine noise falls on all alike; medians in µs per request:

- ``verify``        ``AccessTokens.verify`` with no revocation check (the floor);
- ``verify+push``   as ``AuthState`` wires it: a fresh token is checked against the local copy
                    (push mode) before it enters the verified-token cache, a cached one not
                    again (revocations evict it); the copy
                    holding 10,000 denied jtis, 1,000 ended sessions and 1,000 version
                    bumps (a memory lookup);
- ``verify+redis`` / ``verify+postgres``  plus the check in store mode (a read per policy).

Each is measured with the verified-token cache off (every request pays the signature) and
on (a repeated token skips it; the harder ratio for the check). Target (issue 4): push
costs at most 1.1x the no-check verify.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from authstate.bus.memory import MemoryBus
from authstate.clock import SystemClock
from authstate.keystore import KeySet
from authstate.revocation import Revocations
from authstate.stores import Store, open_store
from authstate.tokens.access import AccessTokens

REDIS = "redis://127.0.0.1:6379/0"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
NAMESPACE = "bench_revocation_check"


async def fill(r: Revocations, now: float) -> None:
    for i in range(10_000):
        await r.revoke_jti(f"denied-{i}", now + 3600)
    for i in range(1_000):
        await r.revoke_sid(f"ended-{i}")
    for i in range(1_000):
        await r.bump_version(f"user-{i}")


Runner = Callable[[int], Awaitable[None]]


def runner(tokens: AccessTokens, token: str, check: Revocations | None) -> Runner:
    verify = tokens.verify
    if check is None:
        async def run(n: int) -> None:
            for _ in range(n):
                verify(token)
    else:
        async def run(n: int) -> None:
            # exactly what AuthState.authenticate_bearer does after parsing the token
            for _ in range(n):
                claims = verify(token)
                if not check.local:
                    await check.check(claims)
    return run


async def open_or_none(url: str, clock: SystemClock) -> Store | None:
    try:
        return await open_store(url, clock=clock, namespace=NAMESPACE)
    except Exception as error:  # a benchmark skips an engine it cannot reach
        print(f"skipping {url.split(':')[0]}: {error}", file=sys.stderr)
        return None


async def main(rounds: int, calls: int) -> None:
    clock = SystemClock()
    keys = KeySet.generate("EdDSA", now=clock.now())
    memory = await open_store("memory://", clock=clock)
    push = Revocations(memory, clock=clock, lifetime=630, leeway=30, bus=MemoryBus())
    await push.start()
    await fill(push, clock.now())
    assert push.mode == "push" and push.size == 12_000
    checks: dict[str, Revocations | None] = {"verify": None, "verify+push": push}
    stores = []
    for name, url in (("redis", REDIS), ("postgres", POSTGRES)):
        store = await open_or_none(url, clock)
        if store is not None:
            stores.append(store)
            r = Revocations(store, clock=clock, lifetime=630, leeway=30)
            await r.bump_version("someone")
            checks[f"verify+{name}"] = r
    print(f"EdDSA token, {rounds} rounds, median µs per request (ratio to verify)\n")
    print(f"{'cache':<6}" + "".join(f"{name:>22}" for name in checks))
    for cache_size in (0, 10_000):
        def fresh(check: Revocations | None = None) -> AccessTokens:
            # as AuthState wires it: in push mode a token is checked against the local
            # copy once, before it is cached
            return AccessTokens(keys, issuer="https://as.example", audience="api",
                                clock=clock, cache_size=cache_size, revocation=check)

        token, _ = fresh().issue("alice", sid="live-session", ver=0, scope="read")
        # one AccessTokens (and so one cache) per variant, as each would be in its process
        runners = {name: runner(fresh(check), token, check) for name, check in checks.items()}
        samples: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(rounds):
            for name, run in runners.items():
                fast = name in ("verify", "verify+push")
                n = (calls * 10 if cache_size else calls // 4) if fast else 50
                start = time.perf_counter()
                await run(n)
                samples[name].append((time.perf_counter() - start) / n * 1e6)
        base = statistics.median(samples["verify"])
        row = f"{'on' if cache_size else 'off':<6}"
        for name in runners:
            med = statistics.median(samples[name])
            row += f"{med:>13.2f} ({med / base:>5.2f}x)"
        print(row)
    await push.close()
    for store in stores:
        drop = getattr(store, "drop_namespace", None)
        if drop is not None:
            await drop()
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.calls))
