"""PostgreSQL ``delete_by_user`` ("log out everywhere"): the REPEATABLE READ transaction
it runs now against the single READ COMMITTED statement it replaced, and the cost the
rejected alternative (a per-user advisory lock) would add to every ``rename``.

Why the change: under READ COMMITTED a ``rename`` committing while the ``DELETE`` waits
moves the record out of the ``DELETE``'s sight (see ``PostgresStore.delete_by_user``).
The fix could sit on either side; this measures both sides so the choice is a number:

- ``delete_by_user``: old single statement vs the new transaction (BEGIN, SET
  TRANSACTION, DELETE, COMMIT), each run deleting 5 sessions of one user;
- ``rename``: today's single statement vs the same statement preceded, in one
  transaction, by ``pg_advisory_xact_lock_shared`` on the user (what a lock-based fix
  would make every session rotation and, likewise, every refresh rotation pay).

    .venv/bin/python benchmarks/pg_delete_by_user.py [--url postgresql://postgres@127.0.0.1:5432/test] [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from psycopg.types.json import Jsonb

from authstate.stores.postgres import PostgresStore

LOCK = "SELECT pg_advisory_xact_lock_shared(hashtext(%s))"


async def main(url: str, rounds: int) -> None:
    store = await PostgresStore.open(url, namespace="b" + uuid.uuid4().hex[:12])
    old_delete = store._sql.delete_by_user  # the READ COMMITTED statement, unchanged
    timings: dict[str, list[float]] = {k: [] for k in (
        "delete_by_user RC (old, racy)", "delete_by_user RR txn (new)",
        "rename (today)", "rename + advisory lock txn")}
    try:
        for r in range(rounds):
            for name in ("delete_by_user RC (old, racy)", "delete_by_user RR txn (new)"):
                for i in range(5):
                    await store.put("session", f"{r}-{i}", {"i": i}, user_id="u")
                start = time.perf_counter()
                if name.startswith("delete_by_user RC"):
                    await store._query(old_delete, ("session", "u", ""), "a delete")
                else:
                    await store.delete_by_user("session", "u")
                timings[name].append(time.perf_counter() - start)
            await store.put("session", f"m{r}", {"i": r}, user_id="u")
            start = time.perf_counter()
            await store.rename("session", f"m{r}", f"n{r}")
            timings["rename (today)"].append(time.perf_counter() - start)
            start = time.perf_counter()
            async with store._pool.connection() as conn, conn.transaction():
                await conn.execute(LOCK, ("session:u",))
                await conn.execute(store._rename, {
                    "kind": "session", "old_key": f"n{r}", "new_key": f"o{r}",
                    "fields": Jsonb({}), "expires_at": None, "now": 0.0})
            timings["rename + advisory lock txn"].append(time.perf_counter() - start)
        for name, values in timings.items():
            ms = sorted(v * 1000 for v in values)
            print(f"{name:32} median {statistics.median(ms):.3f} ms"
                  f"  p90 {ms[int(len(ms) * 0.9)]:.3f} ms  (n={len(ms)})")
    finally:
        await store.drop_namespace()
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.rounds))
