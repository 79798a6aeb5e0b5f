"""``AuthState.authenticate_session`` in process, per store, this code beside an older one.

    .venv/bin/python benchmarks/authenticate_session.py --base DIR [--rounds 3] [--calls 2000]

Issue 13 made every session request read the user record (median us per call, then:
SQLite 14 -> 24, Redis 98 -> 259, PostgreSQL 230 -> 406). This measures the call as an
app makes it, one at a time, with the default settings (push revocation on Redis and
PostgreSQL, whose ``UserCache`` then spares the user read; SQLite has no bus and reads
both records), for the code in this checkout and the code in ``--base DIR`` (a directory
holding an older ``src/authstate``, e.g. ``git archive b5defb2 src | tar -x -C DIR``).
Each (code, store) runs in its own process; the rounds alternate them, so the noise of a
shared machine falls on all alike. The session belongs to a real account.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

STORES = {"sqlite": None, "redis": "redis://127.0.0.1:6379/0",
          "postgres": "postgresql://postgres@127.0.0.1:5432/test"}


async def child(url: str, calls: int) -> list[float]:
    from authstate.config import Settings
    from authstate.state import AuthState

    namespace = "as_" + uuid.uuid4().hex[:10]
    settings = Settings.from_flat(store=url, namespace=namespace, password_time_cost=1,
                                  password_memory_kib=1024)
    state = await AuthState.open(settings)
    try:
        for _ in range(200):  # the bus connects and resyncs in the background
            if state.revocation.local or state.bus is None:
                break
            await asyncio.sleep(0.01)
        user = await state.add_user("bench@example.com", "correct horse battery 42", via="b")
        session_id, _ = await state.sessions.create(user.id)
        for _ in range(200):
            assert await state.authenticate_session(session_id) is not None
        out = []
        for _ in range(calls):
            began = time.perf_counter()
            await state.authenticate_session(session_id)
            out.append((time.perf_counter() - began) * 1e6)
        return out
    finally:
        drop = getattr(state.store, "drop_namespace", None)
        if drop is not None:
            await drop()
        await state.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, args.child[0])
        print(json.dumps(asyncio.run(child(args.child[1], args.calls))))
        return
    here = str(Path(__file__).resolve().parents[1] / "src")
    codes = {"this": here, "base": str(Path(args.base) / "src")}
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(args.rounds):
            for store, url in STORES.items():
                order = list(codes) if round_no % 2 == 0 else list(reversed(codes))
                for code in order:
                    target = url or f"sqlite:///{Path(tmp) / f'{code}{round_no}.db'}"
                    out = subprocess.run(
                        [sys.executable, __file__, "--base", args.base, "--calls",
                         str(args.calls), "--child", codes[code], target],
                        capture_output=True, text=True, check=True).stdout
                    times.setdefault((store, code), []).extend(
                        json.loads(out.strip().splitlines()[-1]))
    print(f"AuthState.authenticate_session, in process, one call at a time; {args.rounds} "
          f"rounds x {args.calls} calls per (store, code); us")
    print(f"{'store':<10}{'this p50':>9}{'p99':>8}{'base p50':>10}{'p99':>8}{'this/base':>11}")
    for store in STORES:
        this = sorted(times[(store, "this")])
        base = sorted(times[(store, "base")])
        p50, b50 = statistics.median(this), statistics.median(base)
        print(f"{store:<10}{p50:>9.1f}{this[int(len(this) * .99)]:>8.1f}{b50:>10.1f}"
              f"{base[int(len(base) * .99)]:>8.1f}{p50 / b50:>11.2f}")


if __name__ == "__main__":
    main()
