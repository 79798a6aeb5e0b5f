"""Cold start of a verify-only service (a function, an edge worker): import, then first verify.

    .venv/bin/python benchmarks/verify_cold_start.py [--runs 21] [--alg EdDSA] [--json]

Every sample is a fresh interpreter (``python -E -c ...``), as a new Lambda instance is.
Import rows time the import statement inside the child, elapsed (``perf_counter``) and in
CPU time (``process_time``: on a shared machine, time spent descheduled while other jobs
run is not the import's cost), and, separately, the whole child process from the parent
(interpreter start-up included);
contenders are interleaved run by run so a busy shared machine weighs on all alike. The
floors are ``pass`` (the interpreter alone) and ``import jwt`` (PyJWT with its
``cryptography`` algorithms, which any verifier on PyJWT pays for).

The first-verification rows run in one fresh child each: ``import authstate.verifier``,
``Verifier.from_url`` (imports httpx), the first ``averify`` (fetches the JWK Set from a
real HTTP server on 127.0.0.1 in this process, then verifies), and a second ``averify``
(keys cached); and, for a JWK Set shipped with the code, ``Verifier.from_jwks`` and its
first ``verify``. The page cache is warm after the first run (the .pyc files are read
from memory), as on a warm host; a truly cold disk is slower.

Target (issue 11): ``import authstate.verifier`` under 100 ms on this machine's class of
CPU with the core install.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from authstate.clock import SystemClock
from authstate.keystore import KeySet
from authstate.tokens.access import AccessTokens

ISSUER, AUDIENCE = "https://issuer.example", "api"

IMPORTS = {
    "python -c pass (floor)": "pass",
    "import jwt (PyJWT + cryptography, floor)": "import jwt",
    "import authstate.verifier": "import authstate.verifier",
    "import authstate (lazy package)": "import authstate",
    "import authstate.state (full core, for scale)": "import authstate.state",
}

IMPORT_CHILD = """
import time
c0, t0 = time.process_time(), time.perf_counter()
{statement}
t1, c1 = time.perf_counter(), time.process_time()
print((t1 - t0) * 1000, (c1 - c0) * 1000)
"""

FIRST_VERIFY_CHILD = """
import asyncio, json, sys, time
t0 = time.perf_counter()
import authstate.verifier
from authstate.verifier import Verifier
t1 = time.perf_counter()
url, token, jwks = sys.argv[1], sys.argv[2], sys.argv[3]
static = Verifier.from_jwks(jwks, issuer={issuer!r}, audience={audience!r})
t2 = time.perf_counter()
assert static.verify(token)["sub"] == "alice"
t3 = time.perf_counter()
fetching = Verifier.from_url(url, issuer={issuer!r}, audience={audience!r})
t4 = time.perf_counter()

async def main():
    a = time.perf_counter()
    assert (await fetching.averify(token))["sub"] == "alice"
    b = time.perf_counter()
    assert (await fetching.averify(token))["sub"] == "alice"
    c = time.perf_counter()
    await fetching.aclose()
    return a, b, c

a, b, c = asyncio.run(main())
ms = lambda x, y: (y - x) * 1000
print(json.dumps({{
    "import authstate.verifier": ms(t0, t1),
    "from_jwks (static set)": ms(t1, t2),
    "first verify (static set)": ms(t2, t3),
    "from_url (imports httpx)": ms(t3, t4),
    "first averify (JWKS fetch + verify)": ms(a, b),
    "second averify (cached keys)": ms(b, c),
    "import to first verified token (URL)": ms(t0, b),
}}))
"""


class JWKSServer:
    """The issuer's JWK Set on 127.0.0.1, served by this process; counts fetches."""

    def __init__(self, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        owner = self
        self.hits = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def child(code: str, *args: str) -> tuple[str, float]:
    """Run ``code`` in a fresh interpreter; its stdout and the process's wall time (ms)."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-E", "-c", code, *args], check=True,
                         capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    return out.stdout, (time.perf_counter() - start) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--alg", default="EdDSA")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    keys = KeySet.generate(args.alg, now=SystemClock().now())
    tokens = AccessTokens(keys, issuer=ISSUER, audience=AUDIENCE, clock=SystemClock())
    token, _ = tokens.issue("alice")
    jwks = json.dumps(keys.public_jwks())
    server = JWKSServer(keys.public_jwks())

    inside: dict[str, list[float]] = {name: [] for name in IMPORTS}
    cpu: dict[str, list[float]] = {name: [] for name in IMPORTS}
    process: dict[str, list[float]] = {name: [] for name in IMPORTS}
    phases: dict[str, list[float]] = {}
    verify_code = FIRST_VERIFY_CHILD.format(issuer=ISSUER, audience=AUDIENCE)
    try:
        for name, statement in IMPORTS.items():  # one unmeasured run each: write the .pyc
            child(IMPORT_CHILD.format(statement=statement))
        child(verify_code, server.url, token, jwks)
        for _ in range(args.runs):
            for name, statement in IMPORTS.items():
                out, wall = child(IMPORT_CHILD.format(statement=statement))
                elapsed, spent = map(float, out.split())
                inside[name].append(elapsed)
                cpu[name].append(spent)
                process[name].append(wall)
            out, _ = child(verify_code, server.url, token, jwks)
            for phase, ms in json.loads(out).items():
                phases.setdefault(phase, []).append(ms)
    finally:
        server.close()

    result = {
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "runs": args.runs,
        "alg": args.alg,
        "jwks_fetches": server.hits,
        "load_average": os.getloadavg(),
        "import_ms": {n: statistics.median(v) for n, v in inside.items()},
        "import_cpu_ms": {n: statistics.median(v) for n, v in cpu.items()},
        "process_ms": {n: statistics.median(v) for n, v in process.items()},
        "first_verify_ms": {n: statistics.median(v) for n, v in phases.items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    load = ", ".join(f"{x:.1f}" for x in result["load_average"])
    print(f"Python {result['python']}, {result['cpus']} CPUs (load average {load}), "
          f"{args.runs} fresh interpreters per row, medians in ms, {args.alg} token")
    print(f"\n{'import (fresh interpreter)':48} {'import':>9} {'cpu':>9} {'process':>9}")
    for name in IMPORTS:
        print(f"{name:48} {result['import_ms'][name]:9.1f} "
              f"{result['import_cpu_ms'][name]:9.1f} {result['process_ms'][name]:9.1f}")
    print(f"\n{'first verification (fresh interpreter)':48} {'ms':>9}")
    for name, ms in result["first_verify_ms"].items():
        print(f"{name:48} {ms:9.2f}")
    wall = result["import_ms"]["import authstate.verifier"]
    spent = result["import_cpu_ms"]["import authstate.verifier"]
    print(f"\nimport authstate.verifier: {wall:.1f} ms elapsed, {spent:.1f} ms CPU "
          f"(target < 100 ms: {'met' if wall < 100 else 'not met'} elapsed, "
          f"{'met' if spent < 100 else 'not met'} in CPU time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
