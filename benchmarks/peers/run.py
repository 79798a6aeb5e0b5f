"""authstate beside its peers: the same protected ``GET /me`` behind fastapi-users (JWT
strategy, Redis strategy), Flask-JWT-Extended (JWT) and authstate's middleware in the same
modes, on one machine, in one run, loaded with wrk over loopback.

    .venv/bin/pip install -e '.[peers]'      # once; not part of the default test run
    .venv/bin/python benchmarks/peers/run.py [--duration 5] [--rounds 3] [--connections 8]

Every server is one process (uvicorn for the ASGI apps, gunicorn with one gthread worker
for Flask) so that, on a 2-core machine, the server has one core and wrk (one thread) the
other. All servers start before measuring; the order of targets rotates every round and
each figure is the median of the rounds, with the spread beside it. The modes:

- ``jwt``: an HS256 Bearer JWT (the peers' default algorithm), verified per request;
- ``redis``: a random Bearer token whose record lives in Redis, one read per request
  (fastapi-users' RedisStrategy; authstate's opaque access token on the Redis store).

Target (issue 7): authstate at least 1.2x each peer's requests/s in the same mode.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
WRK = shutil.which("wrk") or "/usr/bin/wrk"
TARGET_RATIO = 1.2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Target:
    stack: str
    mode: str
    command: list[str]
    port: int
    process: subprocess.Popen[bytes] | None = None
    header: str = ""
    rates: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def name(self) -> str:
        return f"{self.stack} ({self.mode})"


def targets() -> list[Target]:
    gunicorn = str(Path(PY).with_name("gunicorn"))

    def asgi(script: str, mode: str) -> tuple[list[str], int]:
        port = free_port()
        return [PY, str(HERE / script), mode, str(port)], port

    out = []
    for stack, script, mode in (
        ("fastapi-users", "fastapi_users_app.py", "jwt"),
        ("fastapi-users", "fastapi_users_app.py", "redis"),
        ("authstate", "authstate_app.py", "jwt"),
        ("authstate", "authstate_app.py", "jwt-nocache"),
        ("authstate", "authstate_app.py", "redis"),
    ):
        command, port = asgi(script, mode)
        out.append(Target(stack, mode, command, port))
    port = free_port()
    out.append(
        Target(
            "flask-jwt-extended", "jwt",
            [gunicorn, "--chdir", str(HERE), "-k", "gthread", "-w", "1", "--threads", "4",
             "-b", f"127.0.0.1:{port}", "--log-level", "warning", "flask_jwt_app:app"],
            port,
        )
    )
    return out


def get(url: str, header: tuple[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=dict([header]) if header else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # loopback only
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def start(target: Target) -> None:
    target.process = subprocess.Popen(target.command, cwd=HERE.parent.parent, env=os.environ.copy())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            status, body = get(f"http://127.0.0.1:{target.port}/token")
            if status == 200:
                answer = json.loads(body)
                target.header = f"{answer['header']}: {answer['value']}"
                name, value = target.header.split(": ", 1)
                status, _ = get(f"http://127.0.0.1:{target.port}/me", (name, value))
                if status != 200:
                    raise SystemExit(f"{target.name}: /me answered {status} to its own token")
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{target.name} did not start")


LATENCY = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(target: Target, seconds: float, connections: int) -> None:
    result = subprocess.run(
        [WRK, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-H", target.header,
         f"http://127.0.0.1:{target.port}/me"],
        capture_output=True, text=True, check=True,
    )
    rate = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    if rate is None:
        raise SystemExit(f"wrk said: {result.stdout}{result.stderr}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", result.stdout)
    target.errors += int(non_2xx.group(1)) if non_2xx else 0
    target.rates.append(float(rate.group(1)))
    for pct, value, unit in LATENCY.findall(result.stdout):
        (target.p50_ms if pct == "50" else target.p99_ms).append(float(value) * UNIT[unit])


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per target per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not Path(WRK).exists():
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    all_targets = targets()
    try:
        for target in all_targets:
            start(target)
        for target in all_targets:  # warm-up, same for all
            wrk(target, 1, args.connections)
            target.rates.clear(), target.p50_ms.clear(), target.p99_ms.clear()
            target.errors = 0
        for round_ in range(args.rounds):
            shift = round_ * len(all_targets) // args.rounds
            for target in all_targets[shift:] + all_targets[:shift]:
                wrk(target, args.duration, args.connections)
    finally:
        for target in all_targets:
            if target.process is not None:
                target.process.terminate()
                target.process.wait(10)
        forget_redis_keys()
    report(all_targets, args)


def forget_redis_keys() -> None:
    """Remove what the Redis modes wrote (every key this benchmark writes starts so)."""
    import redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    keys = list(client.scan_iter(match="peersbench*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def report(all_targets: list[Target], args: argparse.Namespace) -> None:
    versions = {
        "authstate": version("authstate"),
        "fastapi-users": version("fastapi-users"),
        "flask-jwt-extended": version("flask-jwt-extended"),
    }
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), "?",
    )
    print(f"\n{cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]}; wrk -t1 "
          f"-c{args.connections}, {args.rounds} rounds x {args.duration:g} s, interleaved")
    print(f"fastapi {version('fastapi')}, uvicorn {version('uvicorn')}, flask {version('flask')}, "
          f"gunicorn {version('gunicorn')}, pyjwt {version('pyjwt')}, redis-py {version('redis')}\n")
    header = f"| {'stack (mode)':<30} | {'version':>8} | {'req/s (median)':>14} | {'spread':>6} | {'p50 ms':>6} | {'p99 ms':>6} | {'non-2xx':>7} | {'authstate x':>16} |"
    print("authstate x = authstate's req/s over the peer's, same mode (jwt: its verified-token"
          " cache on / off)\n")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    figures = []
    for t in all_targets:
        median = statistics.median(t.rates)
        spread = (max(t.rates) - min(t.rates)) / median * 100 if median else 0.0
        ours = [x for x in all_targets if x.stack == "authstate" and x.mode.split("-")[0] == t.mode]
        ratios = [] if t.stack == "authstate" else [statistics.median(x.rates) / median for x in ours]
        mark = " / ".join(f"{r:.2f}" for r in ratios) + (" ✓" if ratios and min(ratios) >= TARGET_RATIO else " ✗" if ratios else "")
        print(f"| {t.name:<30} | {versions[t.stack]:>8} | {median:>14,.0f} | {spread:>5.0f}% | "
              f"{statistics.median(t.p50_ms):>6.2f} | {statistics.median(t.p99_ms):>6.2f} | "
              f"{t.errors:>7} | {mark:>16} |")
        figures.append({"stack": t.stack, "mode": t.mode, "version": versions[t.stack],
                        "rates": t.rates, "median_rps": median, "spread_pct": spread,
                        "p50_ms": statistics.median(t.p50_ms), "p99_ms": statistics.median(t.p99_ms),
                        "non_2xx": t.errors, "authstate_ratios": ratios})
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "cores": os.cpu_count(), "targets": figures}, indent=2))


if __name__ == "__main__":
    main()
