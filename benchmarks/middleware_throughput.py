"""Throughput of a protected endpoint behind AuthMiddleware, beside no authentication.

    .venv/bin/python benchmarks/middleware_throughput.py [--rounds 5] [--duration 4]
        [--connections 32] [--base DIR] [--json]

One plain Starlette app, one route (``/protected``: 200 with the caller's ID, 401 for
the anonymous), served by uvicorn with one worker (every variant alike), each variant its
own process on its own 127.0.0.1 port. Every server runs authstate's DEFAULT settings
(metrics on, push revocation with all three policies, the user-record cache) except
what the run prints as changed (plain HTTP on loopback needs development mode, and the
store is the variant's):

- ``none``: the same route with no middleware and no check (the floor), sent the same
  request bytes as the ``jwt`` run (the Authorization header, ignored);
- ``jwt``: ``AuthMiddleware([BearerJWT(state)])``, one access token (the default key
  algorithm of a new key set: RS256) bound to a
  session, sent on every request: after the first, a verified-token cache hit, with the
  revocation check in memory (the state on Redis, push revocation over its pub/sub);
- ``jwt-fresh``: the same middleware, a different token on every request (more tokens
  than the verified-token cache holds, taken in turn by a wrk Lua script): each request
  pays the signature check, the floor being ``cryptography``'s RSA-2048 verify;
- ``session-redis``: ``AuthMiddleware([SessionCookie(state)])`` on the Redis store: the
  session and the user record (scopes, disabled) from the per-process copies
  (``SessionCache``, ``UserCache``) that the bus keeps honest while push revocation is
  live, the store read when they miss;
- ``session-redis-nocache``: named deviation, ``AUTHSTATE_SESSION_CACHE_SECONDS=0``:
  the session read from Redis on every request (what the copy saves);
- ``session-sqlite``: the session path on the embedded SQLite store (no bus: both
  records read per request);
- ``fastapi-pyjwt`` / ``fastapi-authstate`` (and ``-fresh``: a new token per request):
  the honest peer on FastAPI, ``benchmarks/peers/fastapi_floor.py``: the dependency a
  user writes by hand with PyJWT (signature and claims, NO revocation, no cache) beside
  authstate's ``AuthMiddleware`` + ``CurrentIdentity`` (signature, claims, the three
  revocation checks, its verified-token cache), on the same server and worker count.

The session belongs to a real account (``add_user``), so the user-record read is
measured: a user ID that is not an account's is never looked up.

``--base DIR`` (a directory holding an older ``src/authstate``, for instance
``git archive MERGE_BASE src | tar -x -C DIR``) also serves every authenticated variant
from that code (``variant@base``), in the same run, on the same store and in the same
rotation, so a before/after comparison shares the machine's noise.

Every server is checked first: 200 with the credential, 401 without. Then ``wrk``
(Debian's package) loads each in turn for ``--duration`` seconds, the order rotating
each round so the machine's noise falls on all of them alike; with ``taskset`` the
server runs on CPU 0 and wrk on CPU 1. The table gives the median over rounds and the
throughput cost against ``none``. Without wrk, an httpx load client stands in (slower,
and it shares the machine, so its ratios are gentler than wrk's).

Targets (issue 5): JWT costs at most 10 % of the no-auth throughput; a Redis-backed
session at most 25 %. Besides the throughput (which swings with whatever else runs on a
shared machine) the table gives the server's CPU time per request, read from
``/proc/PID/task/*/schedstat`` around each run, and the cost computed from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, sys.argv[sys.argv.index("--src") + 1] if "--src" in sys.argv  # --base
                else str(Path(__file__).resolve().parents[1] / "src"))

from authstate.config import Settings
from authstate.state import AuthState

REDIS_URL = os.environ.get("AUTHSTATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
VARIANTS = ("none", "jwt", "jwt-fresh", "session-redis", "session-redis-nocache",
            "session-sqlite", "fastapi-pyjwt", "fastapi-authstate", "fastapi-pyjwt-fresh",
            "fastapi-authstate-fresh")
# The FastAPI rows: a hand-written PyJWT dependency (checks NO revocation) beside
# authstate's middleware + dependency (all revocation checks), both on FastAPI.
PEERS = ("fastapi-pyjwt", "fastapi-authstate", "fastapi-pyjwt-fresh", "fastapi-authstate-fresh")
TARGETS = {"jwt": 0.10, "session-redis": 0.25}
COOKIE = "authstate_session"
EMAIL = "bench@example.com"
PASSWORD = "correct horse battery staple 42"
FRESH_TOKENS = 25_000  # > the verified-token cache (10 000): taken in turn, every one a miss
# What differs from Settings() on every server; the store and namespace are the variant's.
CHANGED = {"dev": True, "issuer": "http://127.0.0.1"}
LUA = """
local tokens = {}
for line in io.lines(os.getenv("AUTHSTATE_BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. tokens[i]})
end
"""


# --- the server side ----------------------------------------------------------------------


def settings_for(variant: str, store: str, namespace: str) -> Settings:
    deviation = {"session_cache_seconds": 0} if variant.endswith("-nocache") else {}
    return Settings.from_flat(store=store, namespace=namespace, **CHANGED, **deviation)


async def serve(variant: str, port: int, store: str, namespace: str) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from authstate.web.middleware import AuthMiddleware, BearerJWT, SessionCookie

    async def protected(request: Request) -> PlainTextResponse:
        if variant == "none":
            return PlainTextResponse("anonymous")
        if not request.user.is_authenticated:
            return PlainTextResponse("authentication required", status_code=401)
        return PlainTextResponse(request.user.display_name)

    app: Any = Starlette(routes=[Route("/protected", protected)])
    state = None
    if variant.startswith("fastapi-"):
        sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
        import fastapi_floor

        state = await AuthState.open(settings_for(variant, store, namespace))
        app = (fastapi_floor.floor(state) if "pyjwt" in variant
               else fastapi_floor.authstate(state))
    elif variant != "none":
        state = await AuthState.open(settings_for(variant, store, namespace))
        authenticator: Any = (
            BearerJWT(state) if variant.startswith("jwt") else SessionCookie(state)
        )
        app.add_middleware(AuthMiddleware, authenticators=[authenticator])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, workers=1, log_level="warning",
                            access_log=False, lifespan="off")
    try:
        await uvicorn.Server(config).serve()
    finally:
        if state is not None:
            await state.close()


# --- the driver ---------------------------------------------------------------------------


@dataclass
class Server:
    variant: str
    port: int
    headers: dict[str, str]
    process: subprocess.Popen[bytes]
    tokens: str | None = None  # a file of tokens, one a line, sent in turn (jwt-fresh)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/protected"


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_us: float = 0.0  # the server's CPU time per request


def cpu_ns(pid: int) -> int:
    """CPU time the process has run for (Linux schedstat, ns; all threads)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[0])
    return total


def measured(load: Any, server: Server, duration: float, connections: int) -> Run:
    """One load run, with the server's CPU time per request: on a shared machine the
    throughput swings with the neighbours, the CPU a request costs much less."""
    before = cpu_ns(server.process.pid)
    run: Run = load(server, duration, connections)
    used = cpu_ns(server.process.pid) - before
    run.cpu_us = used / 1000 / max(1, run.requests)
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_up() -> bool:
    """Whether Redis answers (three tries: a busy shared machine can be slow to accept)."""
    for _ in range(3):
        try:
            with socket.create_connection(("127.0.0.1", 6379), 2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


async def seed(
    store: str, namespace: str, *, token: bool, fresh: Path | None = None
) -> dict[str, str]:
    """A real account's live session (and session-bound access tokens) for the load's
    requests; ``fresh``: write ``FRESH_TOKENS`` distinct tokens there, one a line."""
    state = await AuthState.open(settings_for("seed", store, namespace))
    try:
        user = await state.users.by_email(EMAIL)
        if user is None:
            user = await state.add_user(EMAIL, PASSWORD, via="bench")
        session_id, session = await state.sessions.create(user.id, user_agent="wrk")
        if not token:
            return {"Cookie": f"{COOKIE}={session_id}"}
        access, _ = await state.issue_for_session(session)
        if fresh is not None:
            ver = await state.revocation.version(user.id)
            fresh.write_text("\n".join(
                state.tokens.issue(user.id, sid=session.sid, ver=ver)[0]
                for _ in range(FRESH_TOKENS)) + "\n")
        return {"Authorization": f"Bearer {access}"}
    finally:
        await state.close()


async def drop_namespace(store: str, namespace: str) -> None:
    state = await AuthState.open(settings_for("drop", store, namespace))
    try:
        drop = getattr(state.store, "drop_namespace", None)
        if drop is not None:
            await drop()
    finally:
        await state.close()


def pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() else []


def start(
    variant: str, store: str, namespace: str, headers: dict[str, str],
    *, src: str | None = None, label: str | None = None, tokens: str | None = None,
) -> Server:
    port = free_port()
    command = [*pin(0), sys.executable, __file__, "--serve", variant, "--port", str(port),
               "--store", store, "--namespace", namespace]
    if src is not None:
        command += ["--src", src]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    server = Server(label or variant, port, headers, process, tokens)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the {variant} server exited with {process.returncode}")
        try:
            with_credential = httpx.get(server.url, headers=headers, timeout=1)
            without = httpx.get(server.url, timeout=1)
        except httpx.HTTPError:
            time.sleep(0.1)
            continue
        expected_without = 200 if variant == "none" else 401
        if with_credential.status_code != 200 or without.status_code != expected_without:
            raise SystemExit(f"{variant}: {with_credential.status_code} with the credential, "
                             f"{without.status_code} without; the benchmark would lie")
        return server
    raise SystemExit(f"the {variant} server did not start")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def load_wrk(server: Server, duration: float, connections: int) -> Run:
    command = [*pin(1), "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    env = None
    if server.tokens is not None:
        command += ["-s", str(Path(server.tokens).with_suffix(".lua"))]
        env = {**os.environ, "AUTHSTATE_BENCH_TOKENS": server.tokens}
    else:
        for name, value in server.headers.items():
            command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, server.url], capture_output=True, text=True, check=True,
                         timeout=duration + 30, env=env).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:(.*)", out)
    errors = int(bad.group(1)) if bad else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return Run(rps, p50, p99, errors, requests)


def load_httpx(server: Server, duration: float, connections: int) -> Run:
    async def main() -> Run:
        latencies: list[float] = []
        errors = 0
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(headers=server.headers, limits=limits) as http:
            stop = time.perf_counter() + duration

            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < stop:
                    began = time.perf_counter()
                    response = await http.get(server.url)
                    latencies.append((time.perf_counter() - began) * 1000)
                    errors += response.status_code != 200

            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(connections)))
            elapsed = time.perf_counter() - began
        latencies.sort()
        return Run(len(latencies) / elapsed, latencies[len(latencies) // 2],
                   latencies[int(len(latencies) * 0.99)], errors, len(latencies))

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per load run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--base", help="a directory with an older src/authstate: also "
                        "serve each authenticated variant from it (variant@base)")
    parser.add_argument("--only", help="comma-separated variants to run (besides none)")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        # The loop uvicorn's "auto" (and ``authstate serve``) would pick: uvloop when
        # installed. ``asyncio.run`` alone would give every variant the slower stdlib loop.
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(serve(args.serve, args.port, args.store, args.namespace))
        return

    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (apt-get install wrk): jwt-fresh sends a new token "
                         "per request through its Lua script")
    load = load_wrk
    wanted = VARIANTS if not args.only else ("none", *args.only.split(","))
    up = redis_up()
    variants = [v for v in wanted
                if up or not (v.startswith(("jwt", "fastapi")) or "redis" in v)]
    if len(variants) < len(wanted):
        print(f"redis not reachable at {REDIS_URL}: skipping the Redis variants", file=sys.stderr)
    namespace = "bench_" + uuid.uuid4().hex[:10]
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="authstate-bench-") as tmp:
        sqlite = f"sqlite:///{Path(tmp) / 'bench.db'}"
        stores = {"none": "memory://", "jwt": REDIS_URL, "jwt-fresh": REDIS_URL,
                  "session-redis": REDIS_URL, "session-redis-nocache": REDIS_URL,
                  "session-sqlite": sqlite, **{peer: REDIS_URL for peer in PEERS}}
        tokens = Path(tmp) / "tokens.txt"
        tokens.with_suffix(".lua").write_text(LUA)
        try:
            headers = {v: asyncio.run(seed(stores[v], namespace,
                                           token=v.startswith(("jwt", "fastapi")),
                                           fresh=tokens if v.endswith("fresh") else None))
                       for v in variants if v != "none"}
            # the floor gets the same request bytes as the JWT run (it ignores them)
            headers["none"] = headers.get("jwt", {})
            for variant in variants:
                fresh = str(tokens) if variant.endswith("fresh") else None
                servers.append(start(variant, stores[variant], namespace, headers[variant],
                                     tokens=fresh))
                if (args.base and variant != "none" and variant not in PEERS
                        and not variant.endswith("-nocache")):  # the old code has no copy
                    servers.append(start(variant, stores[variant], namespace,
                                         headers[variant], src=str(Path(args.base) / "src"),
                                         label=f"{variant}@base", tokens=fresh))
            for server in servers:  # warm-up, not counted
                load(server, min(2.0, args.duration), args.connections)
            runs: dict[str, list[Run]] = {s.variant: [] for s in servers}
            for round_no in range(args.rounds):
                shift = round_no % len(servers)
                for server in servers[shift:] + servers[:shift]:
                    runs[server.variant].append(
                        measured(load, server, args.duration, args.connections))
        finally:
            for server in servers:
                server.process.terminate()
            for server in servers:
                try:
                    server.process.wait(10)
                except subprocess.TimeoutExpired:
                    server.process.kill()
            if redis_up():
                asyncio.run(drop_namespace(REDIS_URL, namespace))
    report(runs, load.__name__.removeprefix("load_"), args)


def loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def server_stack() -> str:
    """What uvicorn's "auto" picks here: the HTTP parser and the event loop."""
    import importlib.util

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"{http}, {loop}"


def report(runs: dict[str, list[Run]], driver: str, args: argparse.Namespace) -> None:
    floor_rps = statistics.median(r.rps for r in runs["none"])
    floor_cpu = statistics.median(r.cpu_us for r in runs["none"])
    rows = []
    for variant, measured_runs in runs.items():
        rps = statistics.median(r.rps for r in measured_runs)
        cpu = statistics.median(r.cpu_us for r in measured_runs)
        cost = 1 - rps / floor_rps
        cpu_cost = 1 - floor_cpu / cpu
        target = TARGETS.get(variant.removesuffix("@base"))
        rows.append({
            "variant": variant,
            "rps": round(rps),
            "rps_rounds": [round(r.rps) for r in measured_runs],
            "p50_ms": round(statistics.median(r.p50_ms for r in measured_runs), 2),
            "p99_ms": round(statistics.median(r.p99_ms for r in measured_runs), 2),
            "cost": round(cost, 3),
            "cpu_us": round(cpu, 1),
            "cpu_rounds": [round(r.cpu_us) for r in measured_runs],
            "cpu_cost": round(cpu_cost, 3),
            "target": target,
            "met": None if target is None else max(cost, cpu_cost) <= target,
            "errors": sum(r.errors for r in measured_runs),
        })
    if args.json:
        print(json.dumps({"driver": driver, "server": server_stack(), "rounds": args.rounds,
                          "duration": args.duration, "connections": args.connections,
                          "changed": CHANGED, "rows": rows}, indent=2))
        return
    print("settings changed from the defaults on every server: "
          + ", ".join(f"{k}={v}" for k, v in CHANGED.items())
          + "; store: Redis for jwt* and session-redis*, SQLite for session-sqlite; "
          "session-redis-nocache also sets session_cache_seconds=0")
    print(f"protected endpoint, uvicorn 1 worker ({server_stack()}), load by {driver}: "
          f"{args.rounds} rounds x {args.duration:g} s, {args.connections} connections; "
          "medians over rounds")
    print("cost = throughput lost against 'none'; cpu cost = the same from the server's CPU "
          "time per request")
    print(f"{'variant':<20}{'req/s':>8}{'cost':>8}{'cpu µs/req':>12}{'cpu cost':>10}"
          f"{'p50 ms':>9}{'p99 ms':>9}  {'target':<12}rounds (req/s)")
    for row in rows:
        verdict = "" if row["target"] is None else (
            f"<={row['target']:.0%} {'ok' if row['met'] else 'MISSED'}")
        errors = f"  ERRORS {row['errors']}" if row["errors"] else ""
        print(f"{row['variant']:<20}{row['rps']:>8}{row['cost']:>8.1%}{row['cpu_us']:>12}"
              f"{row['cpu_cost']:>10.1%}{row['p50_ms']:>9}{row['p99_ms']:>9}  {verdict:<12}"
              f"{row['rps_rounds']}{errors}")


if __name__ == "__main__":
    main()
