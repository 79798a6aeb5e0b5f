"""SessionMiddleware's lazy loading, under real Starlette and FastAPI apps on every store:
a route that never touches the session reads nothing from the store, ``await
request.session.load()`` / ``load_session`` read it once, reading before the load raises
``SessionNotLoaded`` naming the fix, ``autoload`` paths keep the drop-in where listed,
writes without a load merge with no read, ``prefetch`` changes latency but not
behaviour, and login, logout, the shared read with ``AuthMiddleware`` and outages keep
their rules.

Store reads are counted by the store itself: the test's store object is switched to a
subclass of its own class whose ``get`` and ``merge`` count the session records they
touch before doing the real work (no mock: every call reaches the real backend)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authstate import appsessions
from authstate.clock import FrozenClock
from authstate.errors import ConfigurationError, SessionNotLoaded, SessionTooLarge
from authstate.sessions import KIND
from authstate.state import AuthState
from authstate.stores import Store, open_store
from authstate.stores.base import JSON, Record
from authstate.web.middleware import AuthMiddleware, SessionCookie
from authstate.web.session_middleware import AppSession, Autoload, SessionMiddleware, load_session
from tests.conftest import fresh_namespace
from tests.support import RedisServer
from tests.web.api import BASE, PASSWORD, api_settings

COOKIE = "authstate_session"
EMAIL = "lena@example.com"


class Counts:
    """How many session records the store read (``get``) and merged into (``merge``)."""

    def __init__(self) -> None:
        self.reads = 0
        self.merges = 0

    def reset(self) -> None:
        self.reads = self.merges = 0


def counting(store: Store) -> Counts:
    """Make ``store`` count its session reads and merges: its class becomes a subclass of
    its own class that counts, then calls the real method."""
    counts = Counts()
    base: Any = type(store)

    class CountingStore(base):  # type: ignore[misc]
        async def get(self, kind: str, key: str) -> Record | None:
            if kind == KIND:
                counts.reads += 1
            result: Record | None = await super().get(kind, key)
            return result

        async def merge(self, kind: str, key: str, field: str, data: JSON,
                        **options: Any) -> Record | None:
            if kind == KIND:
                counts.merges += 1
            result: Record | None = await super().merge(kind, key, field, data, **options)
            return result

    store.__class__ = CountingStore
    return counts


@pytest.fixture
async def state(store: Store, clock: FrozenClock) -> AsyncIterator[AuthState]:
    # the per-process session copy off: the reads counted here are the middleware's own
    # (when it reads), which the copy would otherwise answer once the session is hot
    s = AuthState(api_settings(dev=True, session_cache_seconds=0), store, clock=clock)
    await s.start()
    yield s
    await s.revocation.close()  # the store fixture closes the store


@pytest.fixture
def counts(store: Store) -> Counts:
    return counting(store)


def app_for(state: AuthState, *, autoload: Autoload = False, prefetch: Autoload = False,
            auth: bool = False) -> Starlette:
    async def nothing(request: StarletteRequest) -> Response:
        return JSONResponse({"ok": True})

    async def read(request: StarletteRequest) -> Response:  # the drop-in's sync access
        return JSONResponse(dict(request.session))

    async def load(request: StarletteRequest) -> Response:
        session = await request.session.load()
        await request.session.load()  # twice: still one read
        return JSONResponse({"data": dict(session), "handle": session.handle})

    async def load_together(request: StarletteRequest) -> Response:
        await asyncio.gather(request.session.load(), request.session.load(),
                             load_session(request), load_session(request.scope))
        return JSONResponse(dict(request.session))

    async def peek(request: StarletteRequest) -> Response:
        session: AppSession = request.session
        try:
            return JSONResponse({"data": dict(session)})
        except SessionNotLoaded as error:
            return JSONResponse({"code": error.code, "message": error.message,
                                 "loaded": session.is_loaded}, status_code=409)

    async def peek_then_load(request: StarletteRequest) -> Response:
        await asyncio.sleep(0)  # let a prefetch finish: access must still need the load
        for _ in range(20):
            await asyncio.sleep(0)
        try:
            dict(request.session)
            before = "read"
        except SessionNotLoaded:
            before = "not loaded"
        await request.session.load()
        return JSONResponse({"before": before, "data": dict(request.session)})

    async def set_keys(request: StarletteRequest) -> Response:  # writes, never loads
        request.session.update(await request.json())
        return JSONResponse({"loaded": request.session.is_loaded})

    async def set_then_load(request: StarletteRequest) -> Response:
        request.session.update(await request.json())
        await request.session.load()
        return JSONResponse(dict(request.session))

    async def write(request: StarletteRequest) -> Response:  # the loaded way
        await request.session.load()
        request.session.update(await request.json())
        return JSONResponse(dict(request.session))

    async def login(request: StarletteRequest) -> Response:
        await request.session.login(EMAIL, PASSWORD)
        return JSONResponse({"user": request.session.user_id, "data": dict(request.session)})

    async def logout(request: StarletteRequest) -> Response:
        await request.session.logout()
        return JSONResponse({})

    app = Starlette(routes=[
        Route("/nothing", nothing), Route("/read", read), Route("/load", load),
        Route("/load-together", load_together),
        Route("/peek", peek), Route("/peek-then-load", peek_then_load),
        Route("/account/read", read), Route("/accounting/read", peek),
        Route("/cart/{n}", read), Route("/cart-x/{n}", peek),
        Route("/set", set_keys, methods=["POST"]),
        Route("/set-then-load", set_then_load, methods=["POST"]),
        Route("/write", write, methods=["POST"]),
        Route("/login", login, methods=["POST"]), Route("/logout", logout, methods=["POST"]),
    ])
    app.add_middleware(SessionMiddleware, state=state, autoload=autoload, prefetch=prefetch)
    if auth:
        app.add_middleware(AuthMiddleware, authenticators=[SessionCookie(state, csrf=False)])
    return app


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


async def test_a_route_that_never_touches_the_session_reads_nothing(
    state: AuthState, counts: Counts,
) -> None:
    async with client_for(app_for(state, autoload=False)) as client:
        await client.post("/write", json={"cart": ["apple"]})
        assert client.cookies.get(COOKIE)
        counts.reset()
        for _ in range(3):
            response = await client.get("/nothing")
            assert response.status_code == 200 and "set-cookie" not in response.headers
        assert (counts.reads, counts.merges) == (0, 0)
        assert (await client.get("/load")).json()["data"] == {"cart": ["apple"]}
        assert counts.reads == 1


async def test_the_default_reads_before_the_app_as_the_drop_in(
    state: AuthState, counts: Counts,
) -> None:
    """The default (``autoload=True``) is the drop-in: sync access works anywhere, at one
    read per request carrying the cookie, used or not."""
    async with client_for(app_for(state, autoload=True)) as client:
        await client.post("/write", json={"step": 2})
        counts.reset()
        assert (await client.get("/read")).json() == {"step": 2}
        await client.get("/nothing")
        assert counts.reads == 2


async def test_load_on_await_reads_once(state: AuthState, counts: Counts) -> None:
    async with client_for(app_for(state)) as client:
        assert (await client.get("/load")).json() == {"data": {}, "handle": None}
        assert counts.reads == 0  # no cookie: nothing to read, even when loading
        await client.post("/write", json={"a": 1, "b": {"c": [1, 2]}})
        counts.reset()
        loaded = (await client.get("/load")).json()
        assert loaded["data"] == {"a": 1, "b": {"c": [1, 2]}} and loaded["handle"]
        assert counts.reads == 1
        # concurrent loads (and a prefetch-free gather) share the one read
        counts.reset()
        assert (await client.get("/load-together")).json() == {"a": 1, "b": {"c": [1, 2]}}
        assert counts.reads == 1


async def test_load_session_under_fastapi(state: AuthState, counts: Counts) -> None:
    app = FastAPI()

    async def session_of(request: Request) -> AppSession:
        return await load_session(request)

    @app.get("/read")
    async def read(session: AppSession = Depends(session_of)) -> dict[str, Any]:
        return dict(session)

    @app.post("/write")
    async def write(body: dict[str, Any], session: AppSession = Depends(session_of)) -> dict[str, Any]:
        session.update(body)
        return dict(session)

    @app.get("/nothing")
    async def nothing() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(SessionMiddleware, state=state, autoload=False)
    async with client_for(app) as client:
        assert (await client.post("/write", json={"a": 1})).json() == {"a": 1}
        counts.reset()
        assert (await client.get("/read")).json() == {"a": 1}
        await client.get("/nothing")
        assert counts.reads == 1


async def test_sync_access_before_load_raises_a_clear_error(
    state: AuthState, counts: Counts,
) -> None:
    async with client_for(app_for(state)) as client:
        assert (await client.get("/peek")).json() == {"data": {}}  # no cookie: loaded empty
        await client.post("/write", json={"a": 1})
        response = await client.get("/peek")
        assert response.status_code == 409
        body = response.json()
        assert body["code"] == "session_not_loaded" and body["loaded"] is False
        assert "await request.session.load()" in body["message"]
        assert "load_session(request)" in body["message"] and "autoload" in body["message"]
    # every read of the mapping, and what would otherwise answer a misleading None
    session = AppSession(state, {"type": "http", "headers": []}, "x" * 43, None, unread=True)
    reads: list[Callable[[], object]] = [
        lambda: session["a"], lambda: len(session), lambda: "a" in session,
        lambda: session.get("a"), lambda: list(session), lambda: session.pop("a", None),
        lambda: session.handle, lambda: session.user_id, lambda: session.csrf_token,
        session.clear,
    ]
    for read in reads:
        with pytest.raises(SessionNotLoaded):
            read()
    with pytest.raises(SessionNotLoaded):
        del session["a"]
    assert repr(session) == "AppSession(not loaded, set=[])"


async def test_autoload_paths_prefixes_patterns_and_predicates(
    state: AuthState, counts: Counts,
) -> None:
    rules: list[Autoload] = [
        ["/account", re.compile(r"/cart/[0-9]+$")],
        lambda scope: scope["path"].startswith("/account/") or scope["path"] == "/cart/7",
    ]
    for rule in rules:
        async with client_for(app_for(state, autoload=rule)) as client:
            await client.post("/write", json={"a": 1})
            counts.reset()
            assert (await client.get("/account/read")).json() == {"a": 1}  # sync, autoloaded
            assert (await client.get("/cart/7")).json() == {"a": 1}
            assert counts.reads == 2
            # a prefix matches the path and those under it, not a longer name
            assert (await client.get("/accounting/read")).status_code == 409
            assert (await client.get("/cart-x/7")).status_code == 409
            await client.get("/nothing")
            assert counts.reads == 2


async def test_autoload_rules_that_cannot_mean_what_was_meant(state: AuthState) -> None:
    for rule in ("/account", ["account"], [b"/account"]):
        with pytest.raises(ConfigurationError):
            SessionMiddleware(app_for(state), state=state, autoload=rule)  # type: ignore[arg-type]


async def test_writes_without_a_load_merge_with_no_read(
    state: AuthState, counts: Counts,
) -> None:
    async with client_for(app_for(state)) as client:
        await client.post("/write", json={"a": 1, "b": 2})
        counts.reset()
        response = await client.post("/set", json={"b": 3, "c": 4, "a": None})
        assert response.json() == {"loaded": False} and "set-cookie" not in response.headers
        assert (counts.reads, counts.merges) == (0, 1)
        assert (await client.get("/load")).json()["data"] == {"b": 3, "c": 4}
        # keys set before a load show over the stored data
        assert (await client.post("/set-then-load", json={"d": 5, "b": None})).json() == {
            "c": 4, "d": 5}
        assert (await client.get("/load")).json()["data"] == {"c": 4, "d": 5}
        # a blind write that empties a visitor's session deletes it, as a loaded one does
        emptied = await client.post("/set", json={"c": None, "d": None})
        assert 'authstate_session=""' in emptied.headers["set-cookie"]
        assert await state.store.scan(KIND) == []


async def test_a_blind_write_to_a_dead_cookie_starts_a_new_visitor_session(
    state: AuthState, counts: Counts,
) -> None:
    async with client_for(app_for(state)) as client:
        await client.post("/write", json={"a": 1})
        old = client.cookies[COOKIE]
        assert await state.sessions.revoke(old) is not None
        only_deletes = await client.post("/set", json={"a": None})
        assert "set-cookie" not in only_deletes.headers  # nothing to keep: nothing created
        assert await state.store.scan(KIND) == []
        response = await client.post("/set", json={"fresh": True})
        new = client.cookies[COOKIE]
        assert new != old and response.headers["set-cookie"].startswith(f"{COOKIE}=")
        assert await state.sessions.lookup(old) is None
        assert (await client.get("/load")).json()["data"] == {"fresh": True}


async def test_concurrent_blind_writes_follow_the_merge_rule(state: AuthState) -> None:
    async with client_for(app_for(state)) as client:
        await client.post("/write", json={"seed": 0})
        await asyncio.gather(
            client.post("/set", json={"a": 1, "k": "one"}),
            client.post("/set", json={"b": 2, "k": "two"}),
            client.post("/write", json={"c": 3}),
        )
        data = (await client.get("/load")).json()["data"]
        assert {k: data[k] for k in ("seed", "a", "b", "c")} == {"seed": 0, "a": 1, "b": 2, "c": 3}
        assert data["k"] in ("one", "two")


async def test_blind_writes_keep_the_size_cap(state: AuthState) -> None:
    async with client_for(app_for(state)) as client:
        await client.post("/write", json={"big": "x" * 3000})
        session = AppSession(state, {"type": "http", "headers": []}, client.cookies[COOKIE],
                             None, unread=True)
        with pytest.raises(SessionTooLarge):
            session["blob"] = "x" * appsessions.MAX_BYTES  # its own keys, at assignment
        assert repr(session) == "AppSession(not loaded, set=[])"
        # each fits alone, with the stored data it does not: the store's merge refuses
        response = await client.post("/set", json={"more": "y" * 3000})
        assert response.status_code == 422 and response.json()["code"] == "session_too_large"
        assert (await client.get("/load")).json()["data"] == {"big": "x" * 3000}


async def test_prefetch_changes_latency_not_behaviour(state: AuthState, counts: Counts) -> None:
    async with client_for(app_for(state, prefetch=["/peek-then-load", "/nothing"])) as client:
        await client.post("/write", json={"a": 1})
        counts.reset()
        response = (await client.get("/peek-then-load")).json()
        assert response == {"before": "not loaded", "data": {"a": 1}}
        assert counts.reads == 1  # the prefetch's read served the load
        await client.get("/peek")  # not prefetched, not loaded: nothing read
        assert counts.reads == 1
        # a prefetch nobody awaits is cancelled when the response is sent (whether its
        # read reached the store by then depends on timing: at most one)
        await client.get("/nothing")
        assert counts.reads in (1, 2)


async def test_login_and_logout_without_a_load(state: AuthState) -> None:
    user = await state.users.create(EMAIL, PASSWORD)
    async with client_for(app_for(state)) as client:
        await client.post("/set", json={"cart": ["book"]})  # no cookie yet: creates one
        visitor = client.cookies[COOKIE]
        await client.post("/set", json={"step": 3})  # a blind write, then the login
        logged = (await client.post("/login")).json()
        assert logged == {"user": user.id, "data": {"cart": ["book"], "step": 3}}
        assert client.cookies[COOKIE] != visitor and await state.sessions.lookup(visitor) is None
        assert [s.user_id for s in await state.sessions.for_user(user.id)] == [user.id]
        await client.post("/logout")
        assert await state.sessions.for_user(user.id) == []
        assert (await client.get("/load")).json()["data"] == {}


async def test_the_read_auth_middleware_made_is_shared(state: AuthState, counts: Counts) -> None:
    await state.users.create(EMAIL, PASSWORD)
    async with client_for(app_for(state, auth=True)) as client:
        await client.post("/login")
        await client.post("/write", json={"a": 1})
        counts.reset()
        assert (await client.get("/read")).json() == {"a": 1}  # already loaded: no raise
        assert (await client.get("/load")).json()["data"] == {"a": 1}
        assert counts.reads == 2  # AuthMiddleware's one read per request, and no other


async def test_lazy_outage_is_503_only_where_the_session_is_loaded(
    redis_server: RedisServer, clock: FrozenClock,
) -> None:
    store = await open_store(redis_server.url, clock=clock, namespace=fresh_namespace())
    state = AuthState(api_settings(dev=True, store=redis_server.url), store, clock=clock)
    await state.start()
    try:
        async with client_for(app_for(state)) as client:
            await client.post("/write", json={"cart": ["book"]})
            redis_server.stop()
            for response in (await client.get("/load"), await client.post("/set", json={"a": 1}),
                             await client.get("/peek-then-load")):
                assert response.status_code == 503
                assert response.headers["retry-after"] and "set-cookie" not in response.headers
            # a route that never touches the session needs no store, cookie or not
            assert (await client.get("/nothing")).status_code == 200
            cookie = client.cookies[COOKIE]
        # a WebSocket whose load meets the outage is closed with 1013 (try again later)
        sent = await websocket_exchange(websocket_app(state), cookie)
        assert sent == [{"type": "websocket.accept", "subprotocol": None, "headers": []},
                        {"type": "websocket.close", "code": 1013}]
    finally:
        await state.close()


async def websocket_exchange(app: Any, cookie: str | None,
                             query: bytes = b"") -> list[dict[str, Any]]:
    """One WebSocket connection to ``app``, driven as an ASGI server drives it: connect,
    collect what the app sends until it closes, then disconnect."""
    headers = [(b"host", b"testserver")]
    if cookie is not None:
        headers.append((b"cookie", f"{COOKIE}={cookie}".encode()))
    scope = {"type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws",
             "path": "/ws", "raw_path": b"/ws", "query_string": query, "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
             "subprotocols": []}
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "websocket.connect"})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "websocket.close":
            await inbox.put({"type": "websocket.disconnect", "code": message.get("code", 1000)})

    await asyncio.wait_for(app(scope, receive, send), 10)
    return sent


def websocket_app(state: AuthState) -> Starlette:
    """A WebSocket that sends its session (``?x`` : one that never touches it)."""
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        if websocket.query_params.get("x") is None:
            session = await load_session(websocket)
            await websocket.send_json(dict(session))
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/ws", handler)])
    app.add_middleware(SessionMiddleware, state=state, autoload=False)
    return app


async def test_websockets_load_lazily_too(state: AuthState, counts: Counts) -> None:
    async with client_for(app_for(state)) as client:
        await client.post("/write", json={"a": 1})
        cookie = client.cookies[COOKIE]
    counts.reset()
    sent = await websocket_exchange(websocket_app(state), cookie)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == '{"a":1}' and counts.reads == 1
    sent = await websocket_exchange(websocket_app(state), cookie, b"x=1")
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
    assert counts.reads == 1  # never touched: never read
