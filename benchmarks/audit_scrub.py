"""``Store.scrub_audit`` on 10k audit events: what deleting a user costs each store.

The deleted user's events are every 10th of ``--events`` (1,000 of 10,000), the oldest at
the head of the log, so on Redis the rewritten tail is the whole stream (its worst case:
the script that rewrites it blocks Redis while it runs). Reported: the whole call, and a
second call, which finds nothing left to change (the scan alone, on Redis: the part that
does not block the server).

    .venv/bin/python benchmarks/audit_scrub.py [--events 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from authstate.audit import PERSONAL_FIELDS
from authstate.stores import Store, open_store

URLS = {
    "memory": "memory://",
    "sqlite": "sqlite:///{tmp}/audit.db",
    "redis": "redis://127.0.0.1:6379/0",
    "postgres": "postgresql://postgres@127.0.0.1:5432/test",
}


async def fill(store: Store, events: int) -> None:
    for start in range(0, events, 20):
        await asyncio.gather(*(
            store.append_event({
                "ts": 1_800_000_000.0 + i, "type": "login",
                "user_id": "gone" if i % 10 == 0 else f"u{i % 97}",
                "ip": f"198.51.100.{i % 250}", "user_agent": f"Mozilla/5.0 bench {i}",
                "detail": {"n": i},
            })
            for i in range(start, min(events, start + 20))
        ))


async def main(events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, url in URLS.items():
            store = await open_store(url.format(tmp=tmp), namespace="b" + uuid.uuid4().hex[:10])
            try:
                await fill(store, events)
                start = time.perf_counter()
                changed = await store.scrub_audit("gone", PERSONAL_FIELDS)
                took = time.perf_counter() - start
                again = time.perf_counter()
                await store.scrub_audit("gone", PERSONAL_FIELDS)  # nothing left to change
                scan_only = time.perf_counter() - again
                print(f"{name:9} {events} events, {changed} scrubbed: {took * 1000:7.1f} ms"
                      f" (a second call, which finds nothing to rewrite: "
                      f"{scan_only * 1000:.1f} ms)")
            finally:
                drop = getattr(store, "drop_namespace", None)
                if drop is not None:
                    await drop()
                await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    asyncio.run(main(parser.parse_args().events))
