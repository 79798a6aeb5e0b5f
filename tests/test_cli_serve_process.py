"""A real ``authstate serve`` on a free port on 127.0.0.1, driven over HTTP, with the CLI
managing users and clients against the same store; and two instances on one Redis."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from authstate.cli import app
from authstate.stores import open_store
from tests.conftest import fresh_namespace, require_service
from tests.support import free_port

PASSWORD = "correct horse battery staple"
CLI = [sys.executable, "-c", "from authstate.cli import main; main()"]
FAST = {"AUTHSTATE_PASSWORD_TIME_COST": "1", "AUTHSTATE_PASSWORD_MEMORY_KIB": "1024"}
START_TIMEOUT = 30.0


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSTATE_")}
    return {**env, **FAST, **extra}


class Server:
    """One ``authstate serve`` subprocess, stopped by its PID."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"serve-{self.port}.log"
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [*CLI, "serve", "--port", str(self.port), *args],
            cwd=cwd, env=env, stdout=self._log_file, stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve did not come up:\n{self.output()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log_file.close()
        return self.proc.returncode

    def output(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text(errors="replace")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def cli(args: list[str], env: dict[str, str], stdin: str = "") -> Result:
    """The management CLI, in process (the server is the subprocess under test)."""
    cleared = {k: None for k in os.environ if k.startswith("AUTHSTATE_")}
    return CliRunner().invoke(app, args, input=stdin, env={**cleared, **{k: v for k, v in env.items() if k.startswith("AUTHSTATE_")}})


def test_serve_defaults_and_a_full_session_over_http(servers: list[Server], tmp_path: Path) -> None:
    env = environment()
    # defaults (./authstate.db, generated key) plus --dev, as `python3 run.py serve` asks
    server = Server(["--dev"], env, tmp_path)
    servers.append(server)
    server.wait_ready()
    assert (tmp_path / "authstate.db").exists()
    store = ["--store", f"sqlite:///{tmp_path / 'authstate.db'}"]
    added = cli(["users", "add", "alice@example.com", "--admin", "--password-stdin", *store], env, PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    secret_line = cli(["clients", "add", "gateway", "--json", *store], env)
    assert secret_line.exit_code == 0, secret_line.output
    client = json.loads(secret_line.stdout)

    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/auth/login", json={"email": "alice@example.com", "password": "wrong one!"}).status_code == 401
        login = http.post("/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
        assert login.status_code == 200
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "Path=/" in cookie and "SameSite=lax" in cookie
        assert "Secure" not in cookie  # development mode over plain HTTP
        csrf = login.json()["csrf_token"]
        session_id = http.cookies["authstate_session"]
        me = http.get("/auth/me")
        assert me.status_code == 200 and me.json()["auth"]["method"] == "session"
        token = http.post("/auth/token", headers={"X-CSRF-Token": csrf}).json()["access_token"]

        jwks = http.get("/.well-known/jwks.json").json()["keys"]
        assert jwks[0]["kty"] == "RSA" and jwks[0]["alg"] == "RS256"  # generated at first start
        meta = http.get("/.well-known/oauth-authorization-server").json()
        assert meta["issuer"] == server.url and meta["token_endpoint"] == server.url + "/oauth/token"

        basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
        active = http.post("/oauth/introspect", data={"token": token}, headers={"Authorization": f"Basic {basic}"})
        assert active.json()["active"] is True

        pair = http.post("/oauth/token", data={"grant_type": "password", "username": "alice@example.com",
                                               "password": PASSWORD}).json()
        assert http.post("/oauth/revoke", data={"token": pair["access_token"]}).status_code == 200
        assert httpx.get(server.url + "/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"}).status_code == 401

        assert http.post("/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
        assert httpx.get(server.url + "/auth/me", cookies={"authstate_session": session_id}).status_code == 401
        assert httpx.get(server.url + "/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401

    listed = cli(["users", "list", "--json", *store], env)
    assert "alice@example.com" in listed.stdout
    assert server.stop() == 0
    log = server.output()
    assert "development mode" in log and "Secure" in log
    assert "private signing keys are stored unencrypted" in log  # no KEK configured
    for secret in (PASSWORD, session_id, token, csrf, pair["access_token"], pair["refresh_token"], client["client_secret"]):
        assert secret not in log
    assert "Traceback" not in log


def test_serve_without_flags_is_production(servers: list[Server], tmp_path: Path) -> None:
    """Issue 11 §6: development mode is off unless asked for, so a service started with
    no flags sends ``Secure``, ``__Host-`` cookies and names an https issuer."""
    env = environment()
    server = Server([], env, tmp_path)
    servers.append(server)
    server.wait_ready()
    store = ["--store", f"sqlite:///{tmp_path / 'authstate.db'}"]
    added = cli(["users", "add", "carol@example.com", "--password-stdin", *store], env, PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    with httpx.Client(base_url=server.url, timeout=10) as http:
        login = http.post("/auth/login", json={"email": "carol@example.com", "password": PASSWORD})
        assert login.status_code == 200
        cookie = login.headers["set-cookie"]
        assert cookie.startswith("__Host-authstate_session=") and "Secure" in cookie
        meta = http.get("/.well-known/oauth-authorization-server").json()
        assert meta["issuer"] == f"https://127.0.0.1:{server.port}"
    assert server.stop() == 0
    assert "development mode" not in server.output()


def test_two_instances_on_one_redis_share_users_sessions_keys_and_revocation(
    servers: list[Server], tmp_path: Path
) -> None:
    url = require_service("redis")
    env = environment(AUTHSTATE_STORE=url, AUTHSTATE_NAMESPACE=fresh_namespace())
    args = ["--dev", "--issuer", "http://authstate.test"]  # plain HTTP: dev mode, asked for
    a, b = Server(args, env, tmp_path), Server(args, env, tmp_path)
    servers.extend([a, b])
    a.wait_ready()
    b.wait_ready()
    try:
        assert cli(["users", "add", "bob@example.com", "--password-stdin"], env, PASSWORD + "\n").exit_code == 0
        with httpx.Client(base_url=a.url, timeout=10) as on_a:
            csrf = on_a.post("/auth/login", json={"email": "bob@example.com", "password": PASSWORD}).json()["csrf_token"]
            session_id = on_a.cookies["authstate_session"]
            token = on_a.post("/auth/token", headers={"X-CSRF-Token": csrf}).json()["access_token"]
        on_b = {"cookies": {"authstate_session": session_id}}
        assert httpx.get(b.url + "/auth/me", **on_b).status_code == 200  # type: ignore[arg-type]
        assert httpx.get(b.url + "/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.get(a.url + "/.well-known/jwks.json").json() == httpx.get(b.url + "/.well-known/jwks.json").json()
        pair = httpx.post(a.url + "/oauth/token", data={"grant_type": "password", "username": "bob@example.com",
                                                        "password": PASSWORD}).json()
        assert httpx.get(b.url + "/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"}).status_code == 200
        assert httpx.post(b.url + "/oauth/revoke", data={"token": pair["access_token"]}).status_code == 200
        deadline = time.monotonic() + 5  # pushed over the bus, normally within milliseconds
        while time.monotonic() < deadline:
            if httpx.get(a.url + "/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"}).status_code == 401:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("instance A still accepts a token revoked on instance B")
        logout = httpx.post(b.url + "/auth/logout", headers={"X-CSRF-Token": csrf}, **on_b)  # type: ignore[arg-type]
        assert logout.status_code == 204
        assert httpx.get(a.url + "/auth/me", **on_b).status_code == 401  # type: ignore[arg-type]
        deadline = time.monotonic() + 5
        while httpx.get(a.url + "/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code != 401:
            assert time.monotonic() < deadline, "the session-bound token outlived its session on A"
            time.sleep(0.02)
    finally:
        async def drop() -> None:
            store = await open_store(url, namespace=env["AUTHSTATE_NAMESPACE"])
            await store.drop_namespace()  # type: ignore[attr-defined]
            await store.close()

        asyncio.run(drop())


def _pids_serving(server: Server, path: str, since: int = 0) -> set[int]:
    """Worker PIDs whose access log shows a request for ``path`` (from log line ``since``)."""
    pids = set()
    for line in server.output().splitlines()[since:]:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("logger") == "uvicorn.access" and f" {path} " in entry.get("message", ""):
                pids.add(int(entry["pid"]))
    return pids


def test_workers_share_the_store_and_push_revocation_between_them(
    servers: list[Server], tmp_path: Path
) -> None:
    url = require_service("redis")
    env = environment(AUTHSTATE_STORE=url, AUTHSTATE_NAMESPACE=fresh_namespace())
    server = Server(["--workers", "2", "--dev"], env, tmp_path)
    servers.append(server)
    server.wait_ready()
    try:
        assert cli(["users", "add", "carol@example.com", "--password-stdin"], env, PASSWORD + "\n").exit_code == 0
        with httpx.Client(base_url=server.url, timeout=10) as http:
            csrf = http.post("/auth/login", json={"email": "carol@example.com", "password": PASSWORD}).json()["csrf_token"]
            token = http.post("/auth/token", headers={"X-CSRF-Token": csrf}).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}

        def burst(n: int) -> list[int]:
            """``n`` requests, each on a new connection, so the kernel hands them to
            whichever worker accepts first."""
            return [httpx.get(server.url + "/auth/me", headers=bearer).status_code for _ in range(n)]

        assert burst(40) == [200] * 40  # every worker verified (and cached) the token
        served = _pids_serving(server, "/auth/me")
        assert len(served) == 2, f"requests did not reach both workers: {served}"

        assert httpx.post(server.url + "/oauth/revoke", data={"token": token}).status_code == 200
        deadline = time.monotonic() + 5  # pushed over the bus, normally within milliseconds
        while True:
            mark = len(server.output().splitlines())
            if (codes := burst(40)) == [401] * 40:
                break
            assert time.monotonic() < deadline, f"a worker still accepts the revoked token: {codes}"
        assert len(_pids_serving(server, "/auth/me", since=mark)) == 2  # refused by both
        log = server.output()
        assert '2 workers, event loop uvloop, http httptools' in log
        assert "Traceback" not in log and token not in log
    finally:
        assert server.stop() == 0

        async def drop() -> None:
            store = await open_store(url, namespace=env["AUTHSTATE_NAMESPACE"])
            await store.drop_namespace()  # type: ignore[attr-defined]
            await store.close()

        asyncio.run(drop())
