"""Three ``authstate serve`` instances on one Redis behind a real HAProxy (Debian's
package), all on loopback: a logout through one instance refuses the session's token on
all three within 100 ms, and killing one instance under load fails only the requests it
had in flight.

HAProxy health-checks ``/healthz`` every 100 ms and re-dispatches a request whose
connection to a dead server fails, so after a kill the load balancer stops sending to it
within about one check interval.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from authstate.stores import open_store
from tests.conftest import REQUIRE_SERVICES, fresh_namespace, require_service
from tests.support import free_port
from tests.test_cli_serve_process import PASSWORD, Server, cli, environment

REFUSED_WITHIN = 0.1  # seconds, from the logout's answer to the last instance refusing
CONCURRENCY = 8
HAPROXY_CONFIG = """
global
    maxconn 512
defaults
    mode http
    timeout connect 500ms
    timeout client 10s
    timeout server 10s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response
    # a loaded machine answers health checks late: do not take a live instance out for it
    # (a killed one refuses connections at once, which retries and redispatch cover)
    timeout check 2s
frontend authstate
    bind 127.0.0.1:{port}
    default_backend instances
backend instances
    balance roundrobin
    option httpchk GET /healthz
{servers}
"""


class HAProxy:
    """``haproxy -db`` in the foreground, stopped by its PID."""

    def __init__(self, backends: list[int], root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        servers = "\n".join(
            f"    server i{n} 127.0.0.1:{port} check inter 100ms fall 3 rise 2"
            for n, port in enumerate(backends)
        )
        self.config = root / "haproxy.cfg"
        self.config.write_text(HAPROXY_CONFIG.format(port=self.port, servers=servers))
        self.proc = subprocess.Popen(
            ["haproxy", "-db", "-f", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("haproxy did not come up")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[tuple[list[Server], HAProxy, dict[str, str]]]:
    if shutil.which("haproxy") is None:
        message = "haproxy not installed (apt-get install haproxy)"
        if REQUIRE_SERVICES:
            pytest.fail(f"AUTHSTATE_REQUIRE_SERVICES=1 but {message}")
        pytest.skip(message)
    url = require_service("redis")
    env = environment(AUTHSTATE_STORE=url, AUTHSTATE_NAMESPACE=fresh_namespace())
    issuer = ["--issuer", "http://authstate.test", "--dev"]  # plain HTTP on loopback
    instances: list[Server] = []
    proxy: HAProxy | None = None
    try:
        instances = [Server(issuer, env, tmp_path) for _ in range(3)]
        for server in instances:
            server.wait_ready()
        proxy = HAProxy([s.port for s in instances], tmp_path)
        proxy.wait_ready()
        added = cli(["users", "add", "dana@example.com", "--password-stdin"], env, PASSWORD + "\n")
        assert added.exit_code == 0, added.output
        yield instances, proxy, env
    finally:
        if proxy is not None:
            proxy.stop()
        for server in instances:
            server.stop()

        async def drop() -> None:
            store = await open_store(url, namespace=env["AUTHSTATE_NAMESPACE"])
            await store.drop_namespace()  # type: ignore[attr-defined]
            await store.close()

        asyncio.run(drop())


def _login(base: str) -> tuple[httpx.Client, str, str]:
    http = httpx.Client(base_url=base, timeout=10)
    login = http.post("/auth/login", json={"email": "dana@example.com", "password": PASSWORD})
    assert login.status_code == 200
    csrf = login.json()["csrf_token"]
    token = http.post("/auth/token", headers={"X-CSRF-Token": csrf}).json()["access_token"]
    return http, csrf, token


@pytest.mark.slow
def test_logout_on_one_instance_is_refused_on_all_three_within_100ms(
    farm: tuple[list[Server], HAProxy, dict[str, str]],
) -> None:
    instances, proxy, _ = farm
    a, b, _ = instances
    http, csrf, token = _login(a.url)  # logged in through instance A
    bearer = {"Authorization": f"Bearer {token}"}
    clients = [httpx.Client(base_url=s.url, timeout=5) for s in instances]
    try:
        for client in clients:  # every instance accepts (and caches) the token
            assert client.get("/auth/me", headers=bearer).status_code == 200
        assert httpx.get(proxy.url + "/auth/me", headers=bearer).status_code == 200

        session = {"authstate_session": http.cookies["authstate_session"]}
        logout = httpx.post(  # logged out through instance B
            b.url + "/auth/logout", headers={"X-CSRF-Token": csrf}, cookies=session
        )
        assert logout.status_code == 204
        answered = time.monotonic()
        refused_after: list[float] = []
        for client in clients:
            while client.get("/auth/me", headers=bearer).status_code != 401:
                assert time.monotonic() - answered < 5, "an instance kept accepting the token"
            refused_after.append(time.monotonic() - answered)
        assert max(refused_after) < REFUSED_WITHIN, refused_after
        assert httpx.get(proxy.url + "/auth/me", headers=bearer).status_code == 401
    finally:
        http.close()
        for client in clients:
            client.close()


@pytest.mark.slow
async def test_killing_an_instance_under_load_fails_only_its_in_flight_requests(
    farm: tuple[list[Server], HAProxy, dict[str, str]],
) -> None:
    instances, proxy, _ = farm
    http, _, token = _login(proxy.url)
    http.close()
    bearer = {"Authorization": f"Bearer {token}"}
    victim = instances[2]
    ok = failed = 0
    stop = asyncio.Event()

    async def client() -> None:
        nonlocal ok, failed
        async with httpx.AsyncClient(base_url=proxy.url, timeout=5) as load:
            while not stop.is_set():
                try:
                    answer = await load.get("/auth/me", headers=bearer)
                    if answer.status_code == 200:
                        ok += 1
                    else:
                        failed += 1
                except httpx.TransportError:
                    failed += 1

    workers = [asyncio.create_task(client()) for _ in range(CONCURRENCY)]
    async with asyncio.timeout(10):  # the load is flowing through all three
        while ok < 100:
            await asyncio.sleep(0.01)
    served_before = ok
    os.kill(victim.proc.pid, signal.SIGKILL)
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*workers)
    assert served_before > 0 and ok > served_before, (served_before, ok, failed)
    assert failed <= CONCURRENCY, f"{failed} failed: more than the {CONCURRENCY} in flight"
    async with httpx.AsyncClient(base_url=proxy.url, timeout=5) as after:
        codes = [(await after.get("/auth/me", headers=bearer)).status_code for _ in range(30)]
    assert codes == [200] * 30
