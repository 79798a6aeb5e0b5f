"""Refresh-token rotation throughput on each store.

    .venv/bin/python benchmarks/refresh_rotation.py [--rotations 300] [--families 8]

For each store: ``AuthState.refresh_tokens`` end to end (format check, read the token and
its family, read the user's token version, sign an EdDSA access token, seal the successor
with HKDF + AES-GCM, one atomic ``store.spend``, one audit event), beside its floor, the
bare ``store.spend`` of a one-time record. Two shapes:

- sequential: one client rotating its own chain, one rotation after another (latency);
- concurrent: ``--families`` independent clients rotating at once (throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from authstate.config import Settings
from authstate.state import AuthState
from authstate.stores import Store
from authstate.tokens.refresh import TokenPair

URLS = {
    "memory": "memory://",
    "sqlite": "sqlite:///{tmp}/bench_refresh.db",
    "redis": "redis://127.0.0.1:6379/0",
    "postgres": "postgresql://postgres@127.0.0.1:5432/test",
}
NAMESPACE = "bench_refresh"


async def chain(state: AuthState, pair: TokenPair, n: int, latencies: list[float]) -> TokenPair:
    for _ in range(n):
        start = time.perf_counter()
        pair = await state.refresh_tokens(pair.refresh_token)
        latencies.append(time.perf_counter() - start)
    return pair


async def spend_floor(store: Store, n: int) -> float:
    await store.put("refresh", "floor-0", {"x": 1}, expires_at=time.time() + 3600)
    start = time.perf_counter()
    for i in range(n):
        await store.spend(
            "refresh", f"floor-{i}", fields={"spent_at": 1.0}, new_key=f"floor-{i + 1}",
            new_value={"x": 1}, new_expires_at=time.time() + 3600,
        )
    return (time.perf_counter() - start) / n


async def bench(name: str, url: str, rotations: int, families: int) -> tuple[str, ...] | None:
    settings = Settings.from_flat(store=url, namespace=NAMESPACE, push_revocation=False)
    try:
        state = await AuthState.open(settings)
    except Exception as error:  # a benchmark skips an engine it cannot reach
        print(f"skipping {name}: {error}", file=sys.stderr)
        return None
    try:
        _, session = await state.sessions.create("bench-user")
        pair = await state.login_tokens("bench-user", session)
        await chain(state, pair, 20, [])
        latencies: list[float] = []
        start = time.perf_counter()
        await chain(state, pair := await state.login_tokens("bench-user", session),
                    rotations, latencies)
        sequential = rotations / (time.perf_counter() - start)
        pairs = [await state.login_tokens("bench-user", session) for _ in range(families)]
        start = time.perf_counter()
        await asyncio.gather(*(chain(state, p, rotations // families, []) for p in pairs))
        concurrent = (rotations // families * families) / (time.perf_counter() - start)
        floor = await spend_floor(state.store, rotations)
        latencies.sort()
        p50 = statistics.median(latencies) * 1e3
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1e3
        return (name, f"{sequential:,.0f}", f"{p50:.2f}", f"{p99:.2f}", f"{concurrent:,.0f}",
                f"{floor * 1e3:.3f}", f"{p50 / (floor * 1e3):.1f}x")
    finally:
        drop = getattr(state.store, "drop_namespace", None)
        if drop is not None:
            await drop()
        await state.close()


async def main(rotations: int, families: int, tmp: str) -> None:
    header = ("store", "seq rot/s", "p50 ms", "p99 ms", f"{families} clients rot/s",
              "spend ms", "p50/spend")
    rows = [header]
    for name, url in URLS.items():
        row = await bench(name, url.format(tmp=tmp), rotations, families)
        if row is not None:
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--rotations", type=int, default=300)
    parser.add_argument("--families", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(args.rotations, args.families, tmp))
