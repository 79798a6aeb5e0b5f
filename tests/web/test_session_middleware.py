"""SessionMiddleware: ``request.session`` kept in authstate's store, under real Starlette and
FastAPI apps on every store: read/write/delete, the per-key merge of concurrent writes,
the size cap, no store write for an anonymous visitor who writes nothing, login keeping
the data with a new ID, revocation ending the app's session, and outages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authstate import appsessions
from authstate.clock import FrozenClock
from authstate.errors import AuthenticationFailed, InvalidInput, SessionTooLarge
from authstate.sessions import KIND, digest
from authstate.state import AuthState
from authstate.stores import Store, open_store
from authstate.web.middleware import AuthMiddleware, SessionCookie
from authstate.web.session_middleware import AppSession, SessionMiddleware
from tests.conftest import fresh_namespace
from tests.support import RedisServer, bus_noticed
from tests.web.api import BASE, PASSWORD, api_settings

COOKIE = "authstate_session"
EMAIL = "vera@example.com"


@pytest.fixture
async def state(store: Store, clock: FrozenClock) -> AsyncIterator[AuthState]:
    s = AuthState(api_settings(dev=True), store, clock=clock)
    await s.start()
    yield s
    await s.revocation.close()  # the store fixture closes the store


async def count_sessions(store: Store) -> int:
    return len(await store.scan(KIND, limit=10_000))


class Barrier:
    """Holds each request until ``parties`` have arrived: both have read the session
    before either writes it back, so a whole-object write would lose one's keys."""

    def __init__(self, parties: int) -> None:
        self.parties, self.arrived, self.event = parties, 0, asyncio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived >= self.parties:
            self.event.set()
        await asyncio.wait_for(self.event.wait(), 5)


def starlette_app(state: AuthState, barrier: Barrier | None = None) -> Starlette:
    async def read(request: StarletteRequest) -> Response:
        return JSONResponse(dict(request.session))

    async def write(request: StarletteRequest) -> Response:
        body: dict[str, Any] = await request.json()
        for key, value in body.items():
            request.session[key] = value
        if barrier is not None and "together" in request.query_params:
            await barrier.wait()
        return JSONResponse(dict(request.session))

    async def delete(request: StarletteRequest) -> Response:
        del request.session[request.path_params["key"]]
        return JSONResponse(dict(request.session))

    async def append(request: StarletteRequest) -> Response:
        request.session["cart"].append(request.path_params["item"])  # mutated in place
        return JSONResponse(dict(request.session))

    async def clear(request: StarletteRequest) -> Response:
        request.session.clear()
        return JSONResponse({})

    async def nothing(request: StarletteRequest) -> Response:
        return JSONResponse({"ok": True})

    async def too_big(request: StarletteRequest) -> Response:
        try:
            request.session["blob"] = "x" * appsessions.MAX_BYTES
        except SessionTooLarge as error:
            return JSONResponse({"error": error.code}, status_code=413)
        return JSONResponse({"error": None})

    async def login(request: StarletteRequest) -> Response:
        body = await request.json()
        try:
            await request.session.login(body["email"], body["password"])
        except AuthenticationFailed:
            return JSONResponse({"error": "bad"}, status_code=401)
        return JSONResponse({"user": request.session.user_id})

    async def logout(request: StarletteRequest) -> Response:
        await request.session.logout()
        return JSONResponse({})

    async def me(request: StarletteRequest) -> Response:
        return JSONResponse({"user": request.user.display_name, "data": dict(request.session)})

    app = Starlette(routes=[
        Route("/read", read), Route("/write", write, methods=["POST"]),
        Route("/delete/{key}", delete, methods=["POST"]),
        Route("/append/{item}", append, methods=["POST"]),
        Route("/clear", clear, methods=["POST"]), Route("/nothing", nothing),
        Route("/too-big", too_big, methods=["POST"]),
        Route("/login", login, methods=["POST"]), Route("/logout", logout, methods=["POST"]),
        Route("/me", me),
    ])
    app.add_middleware(SessionMiddleware, state=state)
    app.add_middleware(AuthMiddleware, authenticators=[SessionCookie(state, csrf=False)])
    return app


def fastapi_app(state: AuthState) -> FastAPI:
    app = FastAPI()

    @app.get("/read")
    async def read(request: Request) -> dict[str, Any]:
        return dict(request.session)

    @app.post("/write")
    async def write(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        request.session.update(body)
        return dict(request.session)

    @app.post("/delete/{key}")
    async def delete(request: Request, key: str) -> dict[str, Any]:
        request.session.pop(key, None)
        return dict(request.session)

    app.add_middleware(SessionMiddleware, state=state)
    return app


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


async def test_read_write_delete_under_starlette(state: AuthState) -> None:
    async with client_for(starlette_app(state)) as client:
        assert (await client.get("/read")).json() == {}
        written = await client.post("/write", json={"cart": ["apple"], "step": 2})
        assert written.json() == {"cart": ["apple"], "step": 2}
        cookie = written.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
        assert (await client.get("/read")).json() == {"cart": ["apple"], "step": 2}
        appended = await client.post("/append/pear")
        assert "set-cookie" not in appended.headers  # the same session: no new cookie
        assert (await client.get("/read")).json() == {"cart": ["apple", "pear"], "step": 2}
        await client.post("/delete/step")
        assert (await client.get("/read")).json() == {"cart": ["apple", "pear"]}
        # the data lives in the store, under the digest of the cookie's ID
        session_id = client.cookies[COOKIE]
        record = await state.store.get(KIND, digest(session_id))
        assert record is not None and record.value["data"] == {"cart": ["apple", "pear"]}
        assert session_id not in repr(record)


async def test_read_write_delete_under_fastapi(state: AuthState) -> None:
    async with client_for(fastapi_app(state)) as client:
        assert (await client.post("/write", json={"a": 1, "b": {"c": [1, 2]}})).status_code == 200
        assert (await client.get("/read")).json() == {"a": 1, "b": {"c": [1, 2]}}
        await client.post("/delete/a")
        assert (await client.get("/read")).json() == {"b": {"c": [1, 2]}}


async def test_anonymous_without_write_creates_nothing(state: AuthState) -> None:
    before = await count_sessions(state.store)
    async with client_for(starlette_app(state)) as client:
        for path in ("/read", "/nothing", "/read"):
            response = await client.get(path)
            assert "set-cookie" not in response.headers
        assert await count_sessions(state.store) == before
        await client.post("/write", json={"flash": "hi"})
        assert await count_sessions(state.store) == before + 1
        # reads of an existing session write nothing either
        record = await state.store.get(KIND, digest(client.cookies[COOKIE]))
        for _ in range(3):
            await client.get("/read")
        assert await state.store.get(KIND, digest(client.cookies[COOKIE])) == record


async def test_emptied_anonymous_session_is_deleted(state: AuthState) -> None:
    async with client_for(starlette_app(state)) as client:
        await client.post("/write", json={"flash": "hi"})
        assert await count_sessions(state.store) == 1
        cleared = await client.post("/clear")
        assert 'authstate_session=""' in cleared.headers["set-cookie"]
        assert await count_sessions(state.store) == 0


async def test_concurrent_writes_of_different_keys_both_land(state: AuthState) -> None:
    barrier = Barrier(2)
    async with client_for(starlette_app(state, barrier)) as client:
        await client.post("/write", json={"seed": 0})
        first, second = await asyncio.gather(
            client.post("/write?together", json={"a": 1}),
            client.post("/write?together", json={"b": 2}),
        )
        # each request saw only its own change (both loaded before either wrote)
        assert first.json() == {"seed": 0, "a": 1} and second.json() == {"seed": 0, "b": 2}
        assert (await client.get("/read")).json() == {"seed": 0, "a": 1, "b": 2}


async def test_concurrent_writes_of_one_key_last_writer_wins(state: AuthState) -> None:
    barrier = Barrier(2)
    async with client_for(starlette_app(state, barrier)) as client:
        await client.post("/write", json={"seed": 0})
        await asyncio.gather(
            client.post("/write?together", json={"k": "one", "x": 1}),
            client.post("/write?together", json={"k": "two", "y": 2}),
        )
        data = (await client.get("/read")).json()
        assert data["k"] in ("one", "two") and data["x"] == 1 and data["y"] == 2


async def test_size_cap_at_assignment(state: AuthState) -> None:
    async with client_for(starlette_app(state)) as client:
        await client.post("/write", json={"keep": "me"})
        response = await client.post("/too-big")
        assert response.status_code == 413 and response.json() == {"error": "session_too_large"}
        assert (await client.get("/read")).json() == {"keep": "me"}  # nothing half-written


async def test_size_cap_over_concurrent_writers_is_a_problem_not_a_500(
    state: AuthState,
) -> None:
    big = "x" * 3000  # each fits alone; together they are past the cap
    barrier = Barrier(2)
    async with client_for(starlette_app(state, barrier)) as client:
        await client.post("/write", json={"seed": 0})
        first, second = await asyncio.gather(
            client.post("/write?together", json={"a": big}),
            client.post("/write?together", json={"b": big}),
        )
        statuses = sorted([first.status_code, second.status_code])
        assert statuses == [200, 422]
        refused = first if first.status_code == 422 else second
        assert refused.json()["code"] == "session_too_large"
        assert len((await client.get("/read")).json()) == 2  # the seed and one of the two


async def test_bad_values_and_reserved_keys(state: AuthState) -> None:
    session = AppSession(state, {"type": "http", "headers": []}, None, None)
    with pytest.raises(InvalidInput):
        session["when"] = object()
    with pytest.raises(InvalidInput):
        session["csrf"] = "planted"
    session["gone"] = 1
    session["gone"] = None  # the merge rule: None deletes
    assert "gone" not in session


async def test_login_rotates_the_id_and_keeps_the_data(state: AuthState) -> None:
    user = await state.users.create(EMAIL, PASSWORD)
    async with client_for(starlette_app(state)) as client:
        await client.post("/write?together", json={"cart": ["book"]})
        visitor_id = client.cookies[COOKIE]
        assert (await client.get("/me")).json()["user"] == ""  # a visitor's session logs no one in
        logged = await client.post("/login", json={"email": EMAIL, "password": PASSWORD})
        assert logged.json() == {"user": user.id}
        new_id = client.cookies[COOKIE]
        assert new_id != visitor_id
        assert await state.sessions.lookup(visitor_id) is None  # fixation: the old ID is dead
        me = (await client.get("/me")).json()
        assert me == {"user": user.id, "data": {"cart": ["book"]}}
        session = await state.sessions.lookup(new_id)
        assert session is not None and session.data["csrf"]  # a fresh CSRF token, hidden
        assert [s.handle for s in await state.sessions.for_user(user.id)] == [session.handle]
        await client.post("/logout")
        assert await state.sessions.lookup(new_id) is None
        assert (await client.get("/read")).json() == {}


async def test_failed_login_keeps_the_visitor_session(state: AuthState) -> None:
    await state.users.create(EMAIL, PASSWORD)
    async with client_for(starlette_app(state)) as client:
        await client.post("/write?together", json={"cart": ["book"]})
        response = await client.post("/login", json={"email": EMAIL, "password": "wrong"})
        assert response.status_code == 401
        assert (await client.get("/read")).json() == {"cart": ["book"]}


async def test_revocation_ends_the_app_session_at_once(state: AuthState) -> None:
    user = await state.users.create(EMAIL, PASSWORD)
    async with client_for(starlette_app(state)) as client:
        await client.post("/login", json={"email": EMAIL, "password": PASSWORD})
        await client.post("/write?together", json={"cart": ["book"]})
        [device] = await state.sessions.for_user(user.id)
        assert await state.end_session(user.id, device.handle) is not None
        assert (await client.get("/me")).json() == {"user": "", "data": {}}
        # a write after revocation does not resurrect the user's session
        await client.post("/write?together", json={"cart": ["again"]})
        assert await state.sessions.for_user(user.id) == []


async def test_secure_cookie_outside_dev_mode(store: Store, clock: FrozenClock) -> None:
    state = AuthState(api_settings(dev=False), store, clock=clock)
    await state.start()
    try:
        app = starlette_app(state)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            response = await client.post("/write?together", json={"a": 1})
            cookie = response.headers["set-cookie"]
            assert cookie.startswith(f"__Host-{COOKIE}=") and "Secure" in cookie
            assert (await client.get("/read")).json() == {"a": 1}
    finally:
        await state.revocation.close()


async def test_store_outage_is_503_never_an_empty_session(
    redis_server: RedisServer, clock: FrozenClock,
) -> None:
    """A real Redis of the test's own, killed: a request with the session cookie answers
    503 with Retry-After and no Set-Cookie (never an empty session); one without the
    cookie needs no store and is served."""
    store = await open_store(redis_server.url, clock=clock, namespace=fresh_namespace())
    state = AuthState(api_settings(dev=True, store=redis_server.url), store, clock=clock)
    await state.start()
    try:
        async with client_for(starlette_app(state)) as client:
            await client.post("/write", json={"cart": ["book"]})
            redis_server.stop()
            await bus_noticed(state)  # until then the hot session's copy answers
            for response in (await client.get("/read"), await client.post("/write", json={})):
                assert response.status_code == 503
                assert response.headers["retry-after"] and "set-cookie" not in response.headers
            fresh = client_for(starlette_app(state))
            async with fresh:  # a visitor with no cookie reads nothing from the store
                assert (await fresh.get("/nothing")).status_code == 200
    finally:
        await state.close()
