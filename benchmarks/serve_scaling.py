"""``authstate serve`` at 1 and 2 worker processes: requests/s of its own endpoints.

    .venv/bin/python benchmarks/serve_scaling.py [--rounds 2] [--duration 4]
        [--connections 64]

Starts ``authstate serve --dev --workers N`` (default settings otherwise: metrics and
push revocation on; the store is the shared Redis, a fresh namespace) for N = 1 and 2,
both at once on their own ports, and loads each in turn with wrk (2 threads), the order
rotating per round:

- ``GET /.well-known/jwks.json``: no authentication (the floor of the service itself);
- ``GET /auth/me`` with the session cookie: the session read, the user from ``UserCache``;
- ``GET /auth/me`` with a Bearer access token (the same token: a verified-token cache hit).

On a 2-core machine the workers, wrk and Redis share the two cores, so 2 workers cannot
double anything; the ratio says how much of the second core a second worker turns into
throughput here. Development mode is the one setting changed (plain HTTP on loopback).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from authstate.config import Settings
from authstate.state import AuthState

REDIS_URL = os.environ.get("AUTHSTATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
EMAIL, PASSWORD = "scale@example.com", "correct horse battery staple 42"
AUTHSTATE = str(Path(sys.executable).with_name("authstate"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def seed(namespace: str, issuer: str) -> dict[str, dict[str, str]]:
    settings = Settings.from_flat(store=REDIS_URL, namespace=namespace, dev=True, issuer=issuer)
    async with await AuthState.open(settings) as state:
        user = await state.add_user(EMAIL, PASSWORD, via="bench")
        login = await state.login(EMAIL, PASSWORD, ip="127.0.0.1", user_agent="wrk")
        token, _ = await state.issue_for_session(login.session)
    return {"anonymous": {}, "cookie": {"Cookie": f"authstate_session={login.session_id}"},
            "bearer": {"Authorization": f"Bearer {token}"}, "user": {"id": user.id}}


def start(workers: int, port: int, namespace: str, issuer: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AUTHSTATE_STORE": REDIS_URL, "AUTHSTATE_NAMESPACE": namespace,
           "AUTHSTATE_ISSUER": issuer, "AUTHSTATE_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([AUTHSTATE, "serve", "--dev", "--workers", str(workers),
                             "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"authstate serve --workers {workers} did not start")


def wrk(url: str, headers: dict[str, str], duration: float, connections: int) -> float:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration:g}s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if bad:
        raise SystemExit(f"{url}: {bad.group(1)} failed responses; the benchmark would lie")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    namespace = "scale_" + uuid.uuid4().hex[:10]
    ports = {1: free_port(), 2: free_port()}
    issuer = "http://127.0.0.1"
    creds = asyncio.run(seed(namespace, issuer))
    paths = {"anonymous": "/.well-known/jwks.json", "cookie": "/auth/me", "bearer": "/auth/me"}
    servers = {n: start(n, port, namespace, issuer) for n, port in ports.items()}
    rates: dict[tuple[int, str], list[float]] = {}
    try:
        targets = [(n, kind) for n in ports for kind in paths]
        for n, kind in targets:  # warm-up and a check that each answers 200
            wrk(f"http://127.0.0.1:{ports[n]}{paths[kind]}", creds[kind], 1, 8)
        for round_no in range(args.rounds):
            shift = round_no % len(targets)
            for n, kind in targets[shift:] + targets[:shift]:
                rates.setdefault((n, kind), []).append(
                    wrk(f"http://127.0.0.1:{ports[n]}{paths[kind]}", creds[kind],
                        args.duration, args.connections))
    finally:
        for proc in servers.values():
            proc.terminate()
        for proc in servers.values():
            proc.wait(15)

        async def drop() -> None:
            store_settings = Settings.from_flat(store=REDIS_URL, namespace=namespace)
            async with await AuthState.open(store_settings) as state:
                await state.store.drop_namespace()  # type: ignore[attr-defined]

        asyncio.run(drop())
    print(f"authstate serve --dev (else defaults), Redis store; wrk -t2 -c{args.connections}, "
          f"{args.rounds} rounds x {args.duration:g} s, medians; {os.cpu_count()} cores shared "
          "by the workers, wrk and Redis")
    print(f"{'endpoint':<34}{'1 worker':>10}{'2 workers':>11}{'2w/1w':>8}{'cost vs anon (1w, 2w)':>24}")
    anon = {n: statistics.median(rates[(n, "anonymous")]) for n in ports}
    for kind in paths:
        one, two = (statistics.median(rates[(n, kind)]) for n in ports)
        label = f"{paths[kind]} ({kind})"
        print(f"{label:<34}{one:>10.0f}{two:>11.0f}{two / one:>8.2f}"
              f"{1 - one / anon[1]:>12.1%}{1 - two / anon[2]:>12.1%}")


if __name__ == "__main__":
    main()
