"""A store outage is not a logout (issue 10, part 3).

Each test runs a server of its own, kills it for real and starts it again on the same
port with the same data: a redis-server writing every command to its append-only file
before acknowledging it, or a throwaway PostgreSQL cluster stopped with ``-m immediate``
(a crash: every connection of the store's pool is cut). While the store is down, every
authentication path answers 503 with ``Retry-After`` and never touches the session
cookie; once the server is back, the very same cookie and tokens work again, with no
restart of anything on our side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from authstate.errors import StoreUnavailable
from authstate.state import AuthState
from authstate.stores import Store, open_store
from authstate.stores.postgres import PostgresStore
from authstate.web.app import create_app
from authstate.web.dependencies import CurrentIdentity
from authstate.web.middleware import (
    Authenticator,
    AuthMiddleware,
    BearerJWT,
    BearerOpaque,
    Introspection,
    SessionCookie,
)
from tests.conftest import fresh_namespace
from tests.stores.postgres_clusters import Cluster
from tests.stores.test_sql_postgres import cluster  # noqa: F401 (the fixture)
from tests.support import RedisServer, bus_noticed, free_port
from tests.web.api import BASE, PASSWORD, api_settings

EMAIL = "alice@example.com"
COOKIE = "authstate_session"
RECOVERY_DEADLINE = 30.0  # seconds for a restarted server and the pool to answer again
PG_ACQUIRE = 0.5  # shorter than the default only to keep the test quick


class Server:
    """A store server of the test's own that it can kill and start again, data kept."""

    url: str
    kill: Callable[[], None]
    start: Callable[[], None]

    async def open(self) -> Store:
        raise NotImplementedError


class RedisBackend(Server):
    def __init__(self, server: RedisServer) -> None:
        self.url, self.kill, self.start = server.url, server.stop, server.start

    async def open(self) -> Store:
        return await open_store(self.url, namespace=fresh_namespace())


class PostgresBackend(Server):
    def __init__(self, pg: Cluster) -> None:
        self.url, self.kill, self.start = pg.url, pg.stop, pg.start

    async def open(self) -> Store:
        return await PostgresStore.open(
            self.url, namespace=fresh_namespace(), acquire_timeout=PG_ACQUIRE
        )


@pytest.fixture
def redis_backend(tmp_path: Path) -> Iterator[Server]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(free_port(), data_dir=tmp_path)
    server.start()
    try:
        yield RedisBackend(server)
    finally:
        server.stop()


@pytest.fixture
def postgres_backend(cluster: Cluster) -> Server:  # noqa: F811 (the imported fixture)
    """A throwaway PostgreSQL cluster (``test_sql_postgres``'s fixture, started and
    removed there) that the test stops and starts again."""
    return PostgresBackend(cluster)


@pytest.fixture(params=["redis", "postgres"])
def backend(request: pytest.FixtureRequest) -> Server:
    fixture = {"redis": "redis_backend", "postgres": "postgres_backend"}[request.param]
    server: Server = request.getfixturevalue(fixture)
    return server


@dataclass
class World:
    """The service, the apps that use the middleware, and a logged-in browser."""

    state: AuthState
    browser: httpx.AsyncClient  # holds the session cookie
    api: httpx.AsyncClient  # no cookies: for bearer tokens
    starlette: httpx.AsyncClient
    fastapi: httpx.AsyncClient
    remote: httpx.AsyncClient  # another service: Introspection at ours
    session_id: str
    jwt: str
    opaque: str
    client: tuple[str, str]  # id and secret of an OAuth client, for /oauth/introspect


def starlette_app(authenticators: list[Authenticator]) -> Starlette:
    @requires("authenticated", status_code=401)
    async def protected(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"hello {request.user.display_name}")

    app = Starlette(routes=[Route("/protected", protected)])
    app.add_middleware(AuthMiddleware, authenticators=authenticators)
    return app


def fastapi_app(authenticators: list[Authenticator]) -> FastAPI:
    app = FastAPI()

    @app.get("/me")
    async def me(identity: CurrentIdentity) -> dict[str, str]:
        return {"user": identity.user_id, "method": identity.method}

    app.add_middleware(AuthMiddleware, authenticators=authenticators)
    return app


def over(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


@asynccontextmanager
async def world(server: Server) -> AsyncIterator[World]:
    store = await server.open()
    # push_revocation off: the revocation check of a JWT reads the store (store mode)
    settings = api_settings(store=server.url, push_revocation=False)
    state = AuthState(settings, store)
    clients: list[httpx.AsyncClient] = []
    try:
        await state.start()
        transport = httpx.ASGITransport(app=create_app(state))
        service = [httpx.AsyncClient(transport=transport, base_url=BASE) for _ in range(3)]
        browser, api, introspecting = service
        clients += service

        user = await state.users.create(EMAIL, PASSWORD)
        login = await browser.post("/auth/login", json={"email": EMAIL, "password": PASSWORD})
        assert login.status_code == 200, login.text
        csrf = login.json()["csrf_token"]
        issued = await browser.post("/auth/token", headers={"X-CSRF-Token": csrf})
        assert issued.status_code == 200, issued.text
        opaque, _ = await state.opaque.issue(user.id)
        client, secret = await state.clients.create("orders")

        local: list[Authenticator] = [
            SessionCookie(state), BearerJWT(state), BearerOpaque(state),
        ]
        introspection = Introspection(
            f"{BASE}/oauth/introspect", client_id=client.id, client_secret=secret,
            client=introspecting,
        )
        apps = [over(starlette_app(local)), over(fastapi_app(local)),
                over(starlette_app([introspection]))]
        clients += apps
        yield World(
            state, browser, api, *apps, session_id=browser.cookies[COOKIE],
            jwt=issued.json()["access_token"], opaque=opaque, client=(client.id, secret),
        )
    finally:
        for c in clients:
            await c.aclose()
        drop = getattr(store, "drop_namespace", None)
        if drop is not None:
            with contextlib.suppress(StoreUnavailable):
                await drop()
        await state.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cookie(session_id: str) -> dict[str, str]:
    """The session cookie as another app on the same site receives it."""
    return {"Cookie": f"{COOKIE}={session_id}"}


async def every_path(w: World) -> dict[str, httpx.Response]:
    """One request by each authentication path, each with its credential."""
    return {
        "cookie /auth/me": await w.browser.get("/auth/me"),
        "jwt /auth/me": await w.api.get("/auth/me", headers=bearer(w.jwt)),
        "opaque /auth/me": await w.api.get("/auth/me", headers=bearer(w.opaque)),
        "cookie /account": await w.browser.get("/account"),
        "cookie /": await w.browser.get("/"),
        "cookie /login": await w.browser.get("/login"),
        "starlette cookie": await w.starlette.get(
            "/protected", headers=cookie(w.session_id)),
        "starlette jwt": await w.starlette.get("/protected", headers=bearer(w.jwt)),
        "starlette opaque": await w.starlette.get("/protected", headers=bearer(w.opaque)),
        "fastapi cookie": await w.fastapi.get("/me", headers=cookie(w.session_id)),
        "fastapi jwt": await w.fastapi.get("/me", headers=bearer(w.jwt)),
        "introspection opaque": await w.remote.get("/protected", headers=bearer(w.opaque)),
        "introspection jwt": await w.remote.get("/protected", headers=bearer(w.jwt)),
    }


PAGES = {"cookie /account", "cookie /", "cookie /login", "cookie POST /logout"}


def assert_unavailable(path: str, answer: httpx.Response) -> None:
    assert answer.status_code == 503, (path, answer.status_code, answer.text)
    assert int(answer.headers["retry-after"]) > 0, path
    assert "set-cookie" not in answer.headers, (path, answer.headers["set-cookie"])
    if path in PAGES:
        assert answer.headers["content-type"].startswith("text/html"), path
        assert "still logged in" in answer.text, path
        return
    assert answer.headers["content-type"] == "application/problem+json", path
    problem = answer.json()
    assert problem["status"] == 503, path
    assert problem["code"] in ("store_unavailable", "upstream_unavailable"), (path, problem)
    assert problem["type"] == "urn:authstate:problem:" + problem["code"], path
    assert problem["title"], path


def assert_working(path: str, answer: httpx.Response) -> None:
    expected = {"cookie /": 303, "cookie /login": 303}.get(path, 200)
    assert answer.status_code == expected, (path, answer.status_code, answer.text)
    if expected == 303:
        assert answer.headers["location"] == "/account", path
    assert "set-cookie" not in answer.headers or COOKIE not in answer.headers["set-cookie"], path


async def websocket_by_cookie(w: World) -> list[dict[str, Any]]:
    """What the middleware sends to a WebSocket handshake carrying the session cookie
    (driven as an ASGI server would; the app behind must not be reached)."""
    sent: list[dict[str, Any]] = []
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["user"].display_name)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    middleware = AuthMiddleware(app, authenticators=[SessionCookie(w.state)])
    scope = {"type": "websocket", "path": "/ws", "headers": [
        (b"cookie", f"{COOKIE}={w.session_id}".encode())]}
    await middleware(scope, receive, send)
    return sent if not reached else [{"reached": reached}]


async def back(state: AuthState) -> None:
    """Wait for the restarted server to answer through the store's own pool (the same
    store object: nothing is reopened)."""
    deadline = time.monotonic() + RECOVERY_DEADLINE
    while True:
        try:
            await state.ping()
            return
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the store did not recover by itself"
            await asyncio.sleep(0.1)


def session_log(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "authstate.sessions" and r.getMessage().startswith(start)]


@pytest.mark.slow
async def test_a_store_outage_is_503_on_every_path_and_never_a_logout(
    backend: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with world(backend) as w:
        for path, answer in (await every_path(w)).items():
            assert_working(path, answer)

        backend.kill()
        await bus_noticed(w.state)  # until then a hot session's copy answers
        for path, answer in (await every_path(w)).items():
            assert_unavailable(path, answer)
        form = await w.browser.post("/logout", data={"csrf_token": "x"})
        assert_unavailable("cookie POST /logout", form)
        assert await websocket_by_cookie(w) == [{"type": "websocket.close", "code": 1013}]
        asked = await w.api.post("/oauth/introspect", data={"token": w.opaque}, auth=w.client)
        assert (asked.status_code, asked.json()["error"]) == (503, "temporarily_unavailable")
        assert int(asked.headers["retry-after"]) > 0
        assert w.browser.cookies[COOKIE] == w.session_id, "the cookie jar is untouched"
        assert len(session_log(caplog, "session store unavailable")) == 1, "the outage is logged once"
        assert w.session_id not in caplog.text

        backend.start()
        await back(w.state)
        for path, answer in (await every_path(w)).items():
            assert_working(path, answer)
        assert w.browser.cookies[COOKIE] == w.session_id
        assert "reached" in (await websocket_by_cookie(w))[0], "the WebSocket gets through"
        me = (await w.browser.get("/auth/me")).json()
        assert me["user"]["email"] == EMAIL and me["auth"]["method"] == "session"
        assert len(session_log(caplog, "session store unavailable")) == 1
        assert len(session_log(caplog, "session store available again")) == 1, "recovery is logged once"


@pytest.mark.slow
async def test_revoked_and_unknown_stay_a_401_around_an_outage(
    redis_backend: Server,
) -> None:
    """The outage answer is only for "cannot tell": a session the store says is gone
    is still the one 401 for unknown and revoked alike, before and after the outage."""
    async with world(redis_backend) as w:
        await w.state.sessions.revoke(w.session_id)
        revoked = await w.browser.get("/auth/me")
        async with over(create_app(w.state)) as stranger:
            unknown = await stranger.get("/auth/me", headers=cookie("A" * 43))
        assert revoked.status_code == unknown.status_code == 401
        assert revoked.json() == unknown.json()

        redis_backend.kill()
        await bus_noticed(w.state)
        assert_unavailable("cookie /auth/me", await w.browser.get("/auth/me"))
        redis_backend.start()
        await back(w.state)
        assert (await w.browser.get("/auth/me")).status_code == 401, "still revoked"
        assert (await w.starlette.get(
            "/protected", headers=cookie(w.session_id))).status_code == 401
