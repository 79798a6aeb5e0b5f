"""authstate's sync face beside the WSGI peers: a protected ``GET /me`` on gunicorn.

    .venv/bin/python benchmarks/wsgi_peers.py [--rounds 3] [--duration 4] [--connections 8]
        [--workers 1] [--threads 4] [--json]

Two frameworks, three stacks each, every one the same gunicorn (``-k gthread``, the same
worker and thread counts) serving one view (``benchmarks/wsgi_peers_apps``):

- Flask: ``plain`` (no authentication: the floor), ``authstate`` (``authstate.flask``,
  ``@login_required``), ``flask-jwt-extended`` (``@jwt_required()``);
- Django REST framework: ``plain`` (``AllowAny``, no authentication class),
  ``authstate`` (``AuthstateAuthentication`` + ``IsAuthenticated``), ``simplejwt``
  (``JWTStatelessUserAuthentication`` + ``IsAuthenticated``: no database read per
  request, like authstate's).

Same checks: each verifies a bearer JWT's signature and expiry on every request (the
peers' cache nothing); authstate also checks ``iss``, ``aud``, ``typ`` and revocation.
Deviations, named: the peers use HS256 (their default; a shared secret), authstate its
default asymmetric algorithm with the keys in the service's store; authstate runs as a
deployment does, on the Redis store with push revocation (the token's verification is
cached, revocation checked in memory), which the peers do not have at all. Each stack
first answers 200 with its token and 401 without; ``plain`` is sent the same header.

Load: ``wrk`` (Debian's package) for ``--duration`` seconds per target, the order
rotating each round; with ``taskset`` the server runs on CPU 0 and wrk on CPU 1. The
table gives the median req/s, the cost against ``plain`` of the same framework, and the
server's CPU time per request (``/proc/PID/task/*/schedstat`` of the master and its
workers), which swings far less than throughput on a shared machine.

Goal (issue 14): at least the peers' throughput with revocation on, and at most 15 %
cost over the unprotected endpoint with a cached token.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
APPS = Path(__file__).resolve().parent / "wsgi_peers_apps"
sys.path.insert(0, str(ROOT / "src"))

from authstate.config import Settings  # noqa: E402
from authstate.sync import Portal, SyncAuthState  # noqa: E402

REDIS_URL = os.environ.get("AUTHSTATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


@dataclass
class Target:
    framework: str
    stack: str
    target: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    header: str = ""
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start(target: Target, workers: int, threads: int) -> None:
    command = [*pin(0), sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", str(workers),
               "--threads", str(threads), "-b", f"127.0.0.1:{target.port}", "--chdir", str(APPS),
               "--log-level", "warning", target.target]
    target.process = subprocess.Popen(command, env={**os.environ, **target.env},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(target.url + "/me", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{target.framework} {target.stack} did not start")


def stop(target: Target) -> None:
    if target.process is not None and target.process.poll() is None:
        os.kill(target.process.pid, signal.SIGTERM)
        target.process.wait(20)


def pids(root: int) -> list[int]:
    found = [root]
    for task in Path(f"/proc/{root}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            found += pids(int(child))
    return found


def cpu_ns(root: int) -> int:
    total = 0
    for pid in pids(root):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += int((task / "schedstat").read_text().split()[0])
    return total


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(target: Target, duration: float, connections: int) -> tuple[float, float, int, int]:
    command = [*pin(1), "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency",
               "-H", f"Authorization: {target.header}", target.url + "/me"]
    out = subprocess.run(command, capture_output=True, text=True, check=True,
                         timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)",  # type: ignore[union-attr]
                                re.search(r"\s99%\s+(\S+)", out).group(1)).groups()  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:(.*)", out)
    errors = int(bad.group(1)) if bad else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, float(number) * _UNITS[unit], errors, requests


def authstate_token(settings: Settings, portal: Portal) -> str:
    sync = SyncAuthState(settings, portal=portal)
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    sync.add_user(email, "correct horse battery staple", via="bench")
    login = sync.login(email, "correct horse battery staple", ip=None, user_agent=None)
    token, _ = sync.issue_for_session(login.session)
    sync.close()
    return token


def check(target: Target) -> None:
    """200 with the credential, 401 without (``plain``: 200 either way)."""
    ok = httpx.get(target.url + "/me", headers={"Authorization": target.header}, timeout=10)
    anonymous = httpx.get(target.url + "/me", timeout=10)
    expected_anonymous = 200 if target.stack == "plain" else 401
    if ok.status_code != 200 or anonymous.status_code != expected_anonymous:
        raise RuntimeError(f"{target.framework} {target.stack}: {ok.status_code} with the token, "
                           f"{anonymous.status_code} without: {ok.text[:200]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed (apt-get install wrk)")

    namespace = "bench" + uuid.uuid4().hex[:10]
    values: dict[str, Any] = {"store": REDIS_URL, "namespace": namespace, "dev": True,
                              "issuer": "http://127.0.0.1:9", "password_time_cost": 1,
                              "password_memory_kib": 1024}
    env = {f"AUTHSTATE_{k.upper()}": str(v) for k, v in values.items()}
    targets = [
        Target("flask", "plain", "flask_bench:plain_app()", {}),
        Target("flask", "authstate", "flask_bench:authstate_app()", env),
        Target("flask", "flask-jwt-extended", "flask_bench:fje_app()", {}),
        Target("drf", "plain", "wsgi_django:application", {"BENCH_STACK": "plain"}),
        Target("drf", "authstate", "wsgi_django:application", {"BENCH_STACK": "authstate", **env}),
        Target("drf", "simplejwt", "wsgi_django:application", {"BENCH_STACK": "simplejwt"}),
    ]
    with Portal() as portal:
        token = authstate_token(Settings(**values), portal)
    try:
        for target in targets:
            start(target, args.workers, args.threads)
        fje = httpx.get(targets[2].url + "/token", timeout=10).json()["token"]
        simple = httpx.get(targets[5].url + "/token", timeout=10).json()["token"]
        for target in targets:
            target.header = "Bearer " + {"flask-jwt-extended": fje, "simplejwt": simple}.get(
                target.stack, token)
            check(target)
        for round_ in range(args.rounds):
            shift = round_ % len(targets)
            for target in targets[shift:] + targets[:shift]:
                assert target.process is not None
                before = cpu_ns(target.process.pid)
                rps, p99, errors, requests = wrk(target, args.duration, args.connections)
                used = cpu_ns(target.process.pid) - before
                target.rps.append(rps)
                target.p99_ms.append(p99)
                target.cpu_us.append(used / 1000 / max(1, requests))
                target.errors += errors
    finally:
        for target in targets:
            stop(target)
    report(targets, args)


def report(targets: list[Target], args: argparse.Namespace) -> None:
    rows = []
    for target in targets:
        floor = next(t for t in targets if t.framework == target.framework and t.stack == "plain")
        rps, base = statistics.median(target.rps), statistics.median(floor.rps)
        cpu, base_cpu = statistics.median(target.cpu_us), statistics.median(floor.cpu_us)
        rows.append({
            "framework": target.framework, "stack": target.stack, "rps": round(rps),
            "rps_min": round(min(target.rps)), "rps_max": round(max(target.rps)),
            "cost_rps_pct": round(100 * (1 - rps / base), 1),
            "cpu_us_per_request": round(cpu), "cost_cpu_pct": round(100 * (cpu / base_cpu - 1), 1),
            "p99_ms": round(statistics.median(target.p99_ms), 2), "errors": target.errors,
        })
    machine = {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
               "gunicorn": f"gthread, {args.workers} worker(s) x {args.threads} threads",
               "wrk": f"1 thread, {args.connections} connections, {args.duration:g} s x "
                      f"{args.rounds} rounds"}
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows}, indent=2))
        return
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}")
    print(f"server: gunicorn {machine['gunicorn']}; load: wrk {machine['wrk']}")
    print(f"{'framework':<8} {'stack':<20} {'req/s':>7} {'(min-max)':>13} {'cost':>7} "
          f"{'CPU us/req':>10} {'CPU cost':>8} {'p99 ms':>7} {'errors':>6}")
    for row in rows:
        print(f"{row['framework']:<8} {row['stack']:<20} {row['rps']:>7} "
              f"{'(' + str(row['rps_min']) + '-' + str(row['rps_max']) + ')':>13} "
              f"{row['cost_rps_pct']:>6}% {row['cpu_us_per_request']:>10} "
              f"{row['cost_cpu_pct']:>7}% {row['p99_ms']:>7} {row['errors']:>6}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
