"""authstate beside its ASGI peers: one protected ``GET /me`` on the same server (uvicorn
with uvloop and httptools, the same ``--workers``), loaded with wrk over loopback.

    .venv/bin/pip install -e '.[server,redis]' -r benchmarks/peers/requirements.txt
    .venv/bin/python benchmarks/peers/run.py [--workers 1,2] [--rounds 3] [--duration 5]
        [--connections 32] [--json FILE]

The peers are not authstate's dependencies (``requirements.txt`` here lists them); wrk
is Debian's package (``apt-get install wrk``); Redis on 127.0.0.1:6379 holds authstate's
state (the workers share it). The rows (``apps.py`` has the apps):

- ``none``: the FastAPI route with no authentication (sent the same header);
- ``floor``: a hand-written FastAPI + PyJWT dependency, RS256 (the floor a user writes);
- ``fastapi-users``: its ``JWTStrategy``, RS256 (changed from its HS256 default, to
  compare like for like) and HS256 (its default); it loads the user per request;
- ``authstate``: ``AuthMiddleware([BearerJWT(state)])`` + ``CurrentIdentity`` with the
  DEFAULT settings but the store (RS256 keys, metrics, the three revocation checks with
  push revocation, the verified-token cache); the run prints what it changed.

Two loads per JWT stack: ``one token`` (the same token on every request: authstate's
verified-token cache answers after the first) and ``fresh`` (a different token on every
request, taken in turn by a wrk Lua script from 12 000 per worker, more than each
worker's cache holds: every request pays the signature check). The peers cache nothing,
so for them the two loads should match.

Each worker count is one phase: its servers start together, each is checked (200 with
its token, 401 without; authstate's token is refused once its session is revoked, at the
end), warmed up, then loaded ``--rounds`` times for ``--duration`` seconds, the order
rotating each round. With one worker the server runs on CPU 0 and wrk on CPU 1
(``taskset``); with more, nothing is pinned. Figures: median req/s over the rounds, the
server's CPU time per request (``/proc/*/task/*/schedstat`` of uvicorn and its workers,
which swings far less than throughput on a shared machine), wrk's p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

import apps  # noqa: E402

REDIS_URL = os.environ.get("AUTHSTATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CACHE_SIZE = 10_000  # authstate's verified-token cache, per process
EMAIL = "bench@example.com"
PASSWORD = "correct horse battery staple 42"
LUA = """
local tokens = {}
for line in io.lines(os.getenv("PEERS_BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. tokens[i]})
end
"""


@dataclass(frozen=True)
class Stack:
    name: str
    factory: str  # in apps.py
    signature: str
    expiry: str
    revocation: str
    user_loaded: str


STACKS = (
    Stack("none", "none", "-", "-", "-", "-"),
    Stack("floor: FastAPI + PyJWT, RS256", "floor", "yes (RS256)", "yes", "no", "no"),
    Stack("fastapi-users JWT, RS256", "fastapi_users_rs256", "yes (RS256)", "yes", "no",
          "yes (dict DB)"),
    Stack("fastapi-users JWT, HS256 (its default)", "fastapi_users_hs256", "yes (HS256)", "yes",
          "no", "yes (dict DB)"),
    Stack("authstate, defaults", "authstate", "yes (RS256)", "yes",
          "yes: denylist, token version, session (in memory, pushed)", "no"),
)
# (stack, load): which rows run, in this order
ROWS = (("none", "one"), ("floor", "one"), ("floor", "fresh"),
        ("fastapi_users_rs256", "one"), ("fastapi_users_rs256", "fresh"),
        ("fastapi_users_hs256", "fresh"),
        ("authstate", "one"), ("authstate", "fresh"))


@dataclass
class Server:
    stack: Stack
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/me"


@dataclass
class Row:
    server: Server
    load: str  # "one" or "fresh"
    header: str
    tokens: Path | None = None
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def label(self) -> str:
        if self.server.stack.factory == "none":
            return "none (no authentication)"
        return f"{self.server.stack.name} [{'fresh token' if self.load == 'fresh' else 'one token'}]"


# --- keys and tokens ------------------------------------------------------------------------


def peer_keys() -> dict[str, Any]:
    """A throwaway RSA 2048 key pair for the floor and fastapi-users (RS256), an HMAC
    secret for fastapi-users' HS256."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key()
    return {
        "private": private,
        "private_pem": private.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode(),
        "public_pem": public.public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "public_jwk": jwt.algorithms.RSAAlgorithm.to_jwk(public),
        "users_secret": secrets.token_urlsafe(48),
    }


def floor_tokens(keys: dict[str, Any], count: int) -> list[str]:
    now = int(time.time())
    return [jwt.encode({"sub": "bench-user", "iss": apps.ISSUER, "aud": apps.AUDIENCE,
                        "iat": now, "exp": now + 600, "jti": secrets.token_urlsafe(12)},
                       keys["private"], algorithm="RS256") for _ in range(count)]


def users_tokens(keys: dict[str, Any], algorithm: str, count: int) -> list[str]:
    """What fastapi-users' ``JWTStrategy.write_token`` writes (``sub``, ``aud``, ``exp``),
    plus a ``jti`` so that no two are alike."""
    key = keys["private"] if algorithm == "RS256" else keys["users_secret"]
    exp = int(time.time()) + 600
    return [jwt.encode({"sub": str(apps.USER_ID), "aud": apps.USERS_AUDIENCE, "exp": exp,
                        "jti": secrets.token_urlsafe(12)}, key, algorithm=algorithm)
            for _ in range(count)]


async def authstate_tokens(namespace: str, count: int) -> tuple[list[str], str]:
    """A real account's live session and ``count`` access tokens bound to it (as the
    service issues them: ``sid`` and the user's token version), on the default settings.
    Returns the tokens and the session ID (to revoke it at the end)."""
    from authstate.state import AuthState

    state = await AuthState.open(apps.authstate_settings(REDIS_URL, namespace))
    try:
        user = await state.users.by_email(EMAIL)
        if user is None:
            user = await state.add_user(EMAIL, PASSWORD, via="bench")
        session_id, session = await state.sessions.create(user.id, user_agent="wrk")
        first, _ = await state.issue_for_session(session)
        ver = await state.revocation.version(user.id)
        return [first] + [state.tokens.issue(user.id, sid=session.sid, ver=ver)[0]
                          for _ in range(count - 1)], session_id
    finally:
        await state.close()


async def revoke_session(namespace: str, session_id: str) -> None:
    from authstate.state import AuthState

    state = await AuthState.open(apps.authstate_settings(REDIS_URL, namespace))
    try:
        await state.logout(session_id=session_id)
    finally:
        await state.close()


async def drop_namespace(namespace: str) -> None:
    from authstate.state import AuthState

    state = await AuthState.open(apps.authstate_settings(REDIS_URL, namespace))
    try:
        drop = getattr(state.store, "drop_namespace", None)
        if drop is not None:
            await drop()
    finally:
        await state.close()


def changed_settings(namespace: str) -> list[str]:
    """authstate's settings that differ from ``Settings()``, as dotted names."""
    from authstate.config import Settings

    def flat(value: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                out.update(flat(item, f"{prefix}{key}."))
            return out
        return {prefix.rstrip("."): value}

    ours = flat(apps.authstate_settings(REDIS_URL, namespace).model_dump())
    default = flat(Settings().model_dump())
    return [f"{name}={ours[name]} (default {default.get(name)})"
            for name in sorted(ours) if ours[name] != default.get(name)]


# --- servers and load -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(cpu: int, workers: int) -> list[str]:
    if workers == 1 and shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu)]
    return []


def uvicorn_command(factory: str, port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "--factory", f"apps:{factory}",
            "--app-dir", str(HERE), "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
            "--log-level", "warning", "--no-access-log"]


def start(stack: Stack, workers: int, env: dict[str, str]) -> Server:
    port = free_port()
    process = subprocess.Popen([*pin(0, workers), *uvicorn_command(stack.factory, port, workers)],
                               env=env, stdin=subprocess.DEVNULL)
    return Server(stack, port, process)


def wait_up(server: Server) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.stack.name}: uvicorn exited with {server.process.returncode}")
        try:
            httpx.get(server.url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{server.stack.name} did not start")


def check(row: Row) -> None:
    """200 with the row's token(s), 401 without (200 for ``none``): else the row lies."""
    headers = [row.header]
    if row.tokens is not None:
        lines = row.tokens.read_text().split()
        headers = [f"Authorization: Bearer {lines[0]}", f"Authorization: Bearer {lines[-1]}"]
    for header in headers:
        name, value = header.split(": ", 1)
        answer = httpx.get(row.server.url, headers={name: value}, timeout=10)
        if answer.status_code != 200:
            raise SystemExit(f"{row.label}: {answer.status_code} with its token")
    without = httpx.get(row.server.url, timeout=10).status_code
    expected = 200 if row.server.stack.factory == "none" else 401
    if without != expected:
        raise SystemExit(f"{row.label}: {without} without a token, expected {expected}")


def pids(root: int) -> list[int]:
    found = [root]
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in Path(f"/proc/{root}/task").iterdir():
            for child in (task / "children").read_text().split():
                found += pids(int(child))
    return found


def cpu_ns(root: int) -> int:
    total = 0
    for pid in pids(root):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    total += int((task / "schedstat").read_text().split()[0])
    return total


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if match is None:
        raise SystemExit(f"wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(row: Row, duration: float, connections: int, workers: int, record: bool = True) -> None:
    command = [*pin(1, workers), "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    env = None
    if row.tokens is not None:
        command += ["-s", str(row.tokens.with_suffix(".lua"))]
        env = {**os.environ, "PEERS_BENCH_TOKENS": str(row.tokens)}
    else:
        command += ["-H", row.header]
    before = cpu_ns(row.server.process.pid)
    out = subprocess.run([*command, row.server.url], capture_output=True, text=True, check=True,
                         timeout=duration + 30, env=env).stdout
    used = cpu_ns(row.server.process.pid) - before
    if not record:
        return
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    p50 = re.search(r"\s50%\s+(\S+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    if rate is None or count is None or p50 is None or p99 is None:
        raise SystemExit(f"wrk said: {out}")
    row.rps.append(float(rate.group(1)))
    row.cpu_us.append(used / 1000 / max(1, int(count.group(1))))
    row.p50_ms.append(_ms(p50.group(1)))
    row.p99_ms.append(_ms(p99.group(1)))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:(.*)", out)
    row.errors += int(bad.group(1)) if bad else 0
    if socket_errors:
        row.errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))


def revocation_seen(server: Server, token: str, namespace: str, session_id: str) -> str:
    """Log the session out through another AuthState (as another instance would), then
    send its token 8 times, each on a new connection (so spread over the workers): how
    many of those first requests are refused, and when all are."""
    asyncio.run(revoke_session(namespace, session_id))
    began = time.monotonic()
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    first: list[int] = []
    with httpx.Client(limits=no_reuse, timeout=5) as client:
        while time.monotonic() < began + 2:
            codes = [client.get(server.url, headers={"Authorization": f"Bearer {token}"})
                     .status_code for _ in range(8)]
            first = first or codes
            if all(code == 401 for code in codes):
                return (f"the first 8 requests after the logout returned: {first.count(401)}/8 "
                        f"refused (all refused {(time.monotonic() - began) * 1000:.0f} ms after)")
    raise SystemExit("authstate still accepted a logged-out session's token after 2 s")


def stop(servers: list[Server]) -> None:
    for server in servers:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
    for server in servers:
        try:
            server.process.wait(20)
        except subprocess.TimeoutExpired:
            server.process.kill()


# --- one phase (worker count) -----------------------------------------------------------


def phase(workers: int, args: argparse.Namespace, keys: dict[str, Any], namespace: str,
          tmp: Path) -> tuple[list[Row], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PEERS_BENCH": json.dumps({
        "public_jwk": keys["public_jwk"], "public_pem": keys["public_pem"],
        "private_pem": keys["private_pem"], "users_secret": keys["users_secret"],
        "redis": REDIS_URL, "namespace": namespace})}
    began = time.monotonic()
    # With N workers each sees about 1/N of a cycle, so a token comes back to the same
    # worker after about count/N others: more than its cache holds, for every request
    # to be a cache miss.
    count = args.tokens or int(CACHE_SIZE * 1.2) * workers
    tokens: dict[str, list[str]] = {
        "floor": floor_tokens(keys, count),
        "fastapi_users_rs256": users_tokens(keys, "RS256", count),
        "fastapi_users_hs256": users_tokens(keys, "HS256", count),
    }
    tokens["authstate"], session_id = asyncio.run(authstate_tokens(namespace, count))
    tokens["none"] = tokens["floor"][:1]
    print(f"[{workers} worker(s)] {count} tokens per stack minted in "
          f"{time.monotonic() - began:.0f} s", file=sys.stderr)
    files = {}
    for name, values in tokens.items():
        files[name] = tmp / f"{name}-{workers}.txt"
        files[name].write_text("\n".join(values) + "\n")
        files[name].with_suffix(".lua").write_text(LUA)
    servers = {s.factory: start(s, workers, env) for s in STACKS}
    try:
        for server in servers.values():
            wait_up(server)
        rows = [Row(servers[name], load, f"Authorization: Bearer {tokens[name][0]}",
                    files[name] if load == "fresh" else None) for name, load in ROWS]
        for row in rows:
            check(row)
        for row in rows:  # warm-up, not counted
            wrk(row, min(2.0, args.duration), args.connections, workers, record=False)
        for round_no in range(args.rounds):
            shift = round_no * len(rows) // max(1, args.rounds)
            for row in rows[shift:] + rows[:shift]:
                wrk(row, args.duration, args.connections, workers)
        revoked = revocation_seen(servers["authstate"], tokens["authstate"][0], namespace,
                                  session_id)
    finally:
        stop(list(servers.values()))
    return rows, revoked


# --- report ---------------------------------------------------------------------------------


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def summary(rows: list[Row]) -> list[dict[str, Any]]:
    none_rps = statistics.median(rows[0].rps)
    none_cpu = statistics.median(rows[0].cpu_us)
    floor = {row.load: statistics.median(row.rps) for row in rows
             if row.server.stack.factory == "floor"}
    out = []
    for row in rows:
        rps = statistics.median(row.rps)
        stack = row.server.stack
        out.append({
            "row": row.label, "stack": stack.factory, "load": row.load,
            "signature": stack.signature, "expiry": stack.expiry,
            "revocation": stack.revocation, "user_loaded": stack.user_loaded,
            "rps": round(rps), "rps_rounds": [round(r) for r in row.rps],
            "vs_none": round(rps / none_rps, 3),
            "vs_floor": (round(rps / floor[row.load], 3)
                         if row.load in floor and stack.factory != "none" else None),
            "cpu_us": round(statistics.median(row.cpu_us), 1),
            "cpu_over_none_us": round(statistics.median(row.cpu_us) - none_cpu, 1),
            "p50_ms": round(statistics.median(row.p50_ms), 2),
            "p99_ms": round(statistics.median(row.p99_ms), 2),
            "errors": row.errors,
        })
    return out


def report(results: dict[int, dict[str, Any]], args: argparse.Namespace,
           changed: list[str], load_before: str) -> None:
    print(f"\n{cpu_model()}, {os.cpu_count()} cores, CPython {platform.python_version()}; "
          f"load average before: {load_before}, after: {loadavg()}")
    print(f"uvicorn {version('uvicorn')} (--loop uvloop {version('uvloop')}, --http httptools "
          f"{version('httptools')}, --no-access-log), fastapi {version('fastapi')}, "
          f"pyjwt {version('pyjwt')}, cryptography {version('cryptography')}, "
          f"fastapi-users {version('fastapi-users')}, authstate {version('authstate')}")
    print(f"wrk -t1 -c{args.connections}, {args.rounds} rounds x {args.duration:g} s per row, "
          f"order rotating; fresh = {args.tokens or f'{int(CACHE_SIZE * 1.2)} x workers'} tokens "
          "in turn; medians over rounds")
    print("authstate settings changed from the defaults: " + "; ".join(changed))
    print("peers' settings changed from their defaults: fastapi-users RS256 row "
          "(algorithm RS256, public_key); the HS256 row is its default")
    for workers, result in results.items():
        print(f"\n--workers {workers}" + (" (server on CPU 0, wrk on CPU 1)" if workers == 1
                                           else " (not pinned)"))
        print(f"authstate revocation: {result['revoked']}")
        print("| row | signature | expiry | revocation | user loaded per request | req/s | "
              "x none | x floor | CPU µs/req | p50 ms | p99 ms | rounds (req/s) |")
        print("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|")
        for r in result["rows"]:
            vs_floor = "" if r["vs_floor"] is None else f"{r['vs_floor']:.2f}"
            errors = f" ERRORS {r['errors']}" if r["errors"] else ""
            print(f"| {r['row']} | {r['signature']} | {r['expiry']} | {r['revocation']} | "
                  f"{r['user_loaded']} | {r['rps']} | {r['vs_none']:.2f} | {vs_floor} | "
                  f"{r['cpu_us']} | {r['p50_ms']} | {r['p99_ms']} | "
                  f"{', '.join(map(str, r['rps_rounds']))}{errors} |")


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", default="1", help="comma-separated worker counts: 1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per row per round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--tokens", type=int, help="tokens per stack for the fresh-token "
                        "rows (default 12 000 per worker: each worker's cache sees every "
                        "token again only after more than it holds)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (apt-get install wrk)")
    missing = [p for p in ("fastapi-users", "uvloop", "httptools", "redis")
               if version(p) == "not installed"]
    if missing:
        raise SystemExit(f"not installed: {', '.join(missing)}; run "
                         f"pip install -e '.[server,redis]' -r {HERE / 'requirements.txt'}")
    load_before = loadavg()
    namespace = "peersbench_" + secrets.token_hex(5)
    keys = peer_keys()
    results: dict[int, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="peers-bench-") as tmp:
            for workers in (int(w) for w in args.workers.split(",")):
                rows, revoked = phase(workers, args, keys, namespace, Path(tmp))
                results[workers] = {"rows": summary(rows), "revoked": revoked}
    finally:
        asyncio.run(drop_namespace(namespace))
    changed = changed_settings(namespace)
    report(results, args, changed, load_before)
    if args.json:
        args.json.write_text(json.dumps({
            "cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "rounds": args.rounds, "duration": args.duration, "connections": args.connections,
            "authstate_changed": changed, "results": results}, indent=2))


if __name__ == "__main__":
    main()
