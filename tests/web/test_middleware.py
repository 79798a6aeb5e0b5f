"""AuthMiddleware under plain Starlette, FastAPI and Litestar: sessions, CSRF, order,
anonymous pass-through, and the FastAPI dependencies' answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from authstate.clock import FrozenClock
from authstate.config import Settings
from authstate.identity import Identity
from authstate.state import AuthState
from authstate.stores import open_store
from authstate.web import csrf
from authstate.web.dependencies import CurrentIdentity, MaybeIdentity, require_scopes
from authstate.web.middleware import (
    ANONYMOUS,
    Authenticator,
    AuthMiddleware,
    BearerJWT,
    BearerOpaque,
    Credentials,
    SessionCookie,
)
from tests.conftest import fresh_namespace, require_service

COOKIE = "authstate_session"
HOST = "http://testserver"


def fast_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "store": "memory://", "dev": True, "issuer": HOST, "password_time_cost": 1,
        "password_memory_kib": 8, **overrides,
    }
    return Settings.from_flat(**values)


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest, clock: FrozenClock) -> AsyncIterator[AuthState]:
    if request.param == "memory":
        store = await open_store("memory://", clock=clock)
        settings = fast_settings()
    else:
        url = require_service("redis")
        namespace = fresh_namespace()
        store = await open_store(url, clock=clock, namespace=namespace)
        settings = fast_settings(store=url, namespace=namespace)
    s = AuthState(settings, store, clock=clock)
    await s.start()
    try:
        yield s
    finally:
        drop = getattr(store, "drop_namespace", None)
        if drop is not None:
            await drop()
        await s.close()


async def login(state: AuthState, user_id: str = "u_alice") -> tuple[str, str]:
    """A session (as the service's login makes it: with a CSRF token in its data)."""
    token = csrf.new_token()
    session_id, _ = await state.sessions.create(user_id, data={csrf.DATA_KEY: token})
    return session_id, token


def whoami(request: Request) -> JSONResponse:
    user, auth = request.user, request.auth
    return JSONResponse({
        "authenticated": user.is_authenticated,
        "user": user.display_name,
        "method": auth.method,
        "scopes": list(auth.scopes),
        "error": auth.error,
    })


@requires("authenticated", status_code=401)
async def protected(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"hello {request.user.display_name}")


def starlette_app(*authenticators: Authenticator) -> Starlette:
    app = Starlette(routes=[
        Route("/whoami", whoami, methods=["GET", "POST"]),
        Route("/protected", protected),
    ])
    app.add_middleware(AuthMiddleware, authenticators=list(authenticators))
    return app


def fastapi_app(*authenticators: Authenticator) -> FastAPI:
    app = FastAPI()

    @app.get("/me")
    async def me(identity: CurrentIdentity) -> dict[str, Any]:
        return {"user": identity.user_id, "method": identity.method}

    @app.post("/items")
    async def create_item(identity: CurrentIdentity) -> dict[str, str]:
        return {"created_by": identity.user_id}

    @app.get("/greeting")
    async def greeting(identity: MaybeIdentity) -> dict[str, str]:
        return {"hello": identity.user_id if identity else "stranger"}

    @app.get("/orders", dependencies=[Depends(require_scopes("orders:read"))])
    async def orders() -> list[str]:
        return []

    app.add_middleware(AuthMiddleware, authenticators=list(authenticators))
    return app


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=HOST)


def cookie(session_id: str) -> dict[str, str]:
    return {"Cookie": f"theme=dark; {COOKIE}={session_id}; other=1"}


# --- Starlette: request.user / request.auth ---------------------------------------------


async def test_starlette_anonymous_passes_through(state: AuthState) -> None:
    async with client(starlette_app(SessionCookie(state))) as http:
        answer = (await http.get("/whoami")).json()
        assert answer == {"authenticated": False, "user": "", "method": None, "scopes": [],
                          "error": None}
        assert (await http.get("/protected")).status_code == 401


async def test_starlette_session_cookie(state: AuthState) -> None:
    session_id, _ = await login(state, "u_alice")
    async with client(starlette_app(SessionCookie(state))) as http:
        answer = (await http.get("/whoami", headers=cookie(session_id))).json()
        assert answer == {"authenticated": True, "user": "u_alice", "method": "session",
                          "scopes": ["authenticated"], "error": None}
        protected_answer = await http.get("/protected", headers=cookie(session_id))
        assert (protected_answer.status_code, protected_answer.text) == (200, "hello u_alice")


async def test_revoked_unknown_and_expired_sessions_look_the_same(
    state: AuthState, clock: FrozenClock
) -> None:
    revoked, _ = await login(state)
    await state.sessions.revoke(revoked)
    expired, _ = await login(state)
    async with client(starlette_app(SessionCookie(state))) as http:
        answers = []
        clock.advance(state.settings.sessions.idle_timeout + 1)
        for session_id in (revoked, expired, "x" * 43, "not a cookie!"):
            answers.append((await http.get("/whoami", headers=cookie(session_id))).json())
        assert all(a == answers[0] for a in answers)
        assert answers[0]["authenticated"] is False
        assert answers[0]["error"] == "invalid_token"


async def test_first_cookie_of_a_name_wins_and_others_are_ignored(state: AuthState) -> None:
    session_id, _ = await login(state, "u_alice")
    async with client(starlette_app(SessionCookie(state))) as http:
        headers = {"Cookie": f"x{COOKIE}=nope; {COOKIE}={session_id}; {COOKIE}=later"}
        assert (await http.get("/whoami", headers=headers)).json()["user"] == "u_alice"
        headers = {"Cookie": f"{COOKIE}_old={session_id}"}
        assert (await http.get("/whoami", headers=headers)).json()["authenticated"] is False


async def test_unsafe_method_by_cookie_needs_the_csrf_token(state: AuthState) -> None:
    session_id, token = await login(state, "u_alice")
    async with client(starlette_app(SessionCookie(state))) as http:
        no_token = (await http.post("/whoami", headers=cookie(session_id))).json()
        assert (no_token["authenticated"], no_token["error"]) == (False, "csrf_failed")
        wrong = (await http.post(
            "/whoami", headers={**cookie(session_id), "X-CSRF-Token": ("y" if token[0] == "x" else "x") + token[1:]}
        )).json()
        assert wrong["error"] == "csrf_failed"
        good = (await http.post(
            "/whoami", headers={**cookie(session_id), "X-CSRF-Token": token}
        )).json()
        assert (good["authenticated"], good["user"]) == (True, "u_alice")
        same_origin = {**cookie(session_id), "X-CSRF-Token": token, "Origin": HOST,
                       "Sec-Fetch-Site": "same-origin"}
        assert (await http.post("/whoami", headers=same_origin)).json()["authenticated"]
        cross = {**cookie(session_id), "X-CSRF-Token": token, "Origin": "https://evil.example"}
        assert (await http.post("/whoami", headers=cross)).json()["error"] == "csrf_failed"
        cross_site = {**cookie(session_id), "X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"}
        assert (await http.post("/whoami", headers=cross_site)).json()["error"] == "csrf_failed"
        # a safe method needs no token
        assert (await http.get("/whoami", headers=cookie(session_id))).json()["authenticated"]


async def test_allowed_origin_and_csrf_off(state: AuthState) -> None:
    session_id, token = await login(state, "u_alice")
    partner = "https://app.example"
    headers = {**cookie(session_id), "X-CSRF-Token": token, "Origin": partner}
    async with client(starlette_app(SessionCookie(state, allowed_origins=[partner]))) as http:
        assert (await http.post("/whoami", headers=headers)).json()["authenticated"]
    async with client(starlette_app(SessionCookie(state, csrf=False))) as http:
        answer = (await http.post("/whoami", headers=cookie(session_id))).json()
        assert answer["authenticated"], "csrf=False leaves the check to the app"


async def test_cookie_name_follows_dev_mode(clock: FrozenClock) -> None:
    store = await open_store("memory://", clock=clock)
    state = AuthState(fast_settings(dev=False, issuer="https://auth.example"), store, clock=clock)
    session_id, _ = await login(state)
    async with client(starlette_app(SessionCookie(state))) as http:
        plain = {"Cookie": f"{COOKIE}={session_id}"}
        assert (await http.get("/whoami", headers=plain)).json()["authenticated"] is False
        prefixed = {"Cookie": f"__Host-{COOKIE}={session_id}"}
        assert (await http.get("/whoami", headers=prefixed)).json()["user"] == "u_alice"
    await state.close()


async def test_websocket_scope_is_authenticated(state: AuthState) -> None:
    session_id, _ = await login(state, "u_alice")
    seen: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["user"].display_name, scope["auth"].method))

    middleware = AuthMiddleware(inner, authenticators=[SessionCookie(state)])
    ws_scope = {"type": "websocket", "path": "/ws",
                "headers": [(b"cookie", f"{COOKIE}={session_id}".encode())]}
    await middleware(ws_scope, _never, _never)
    await middleware({"type": "websocket", "path": "/ws", "headers": []}, _never, _never)
    assert seen == [("u_alice", "session"), ("", None)]


async def test_lifespan_and_other_scopes_pass_untouched(state: AuthState) -> None:
    seen: list[dict[str, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(dict(scope))

    middleware = AuthMiddleware(inner, authenticators=[SessionCookie(state)])
    await middleware({"type": "lifespan"}, _never, _never)
    assert seen == [{"type": "lifespan"}]


async def _never(*args: Any) -> Any:
    raise AssertionError("not called")


def test_needs_an_authenticator() -> None:
    with pytest.raises(ValueError, match="at least one"):
        AuthMiddleware(_never, authenticators=[])


# --- the session cache (``sessions.SessionCache``) -----------------------------------------


async def test_session_cache_spares_the_store_but_not_revocation(
    state: AuthState, clock: FrozenClock
) -> None:
    from authstate.sessions import digest

    cache = state.sessions.cache
    assert cache is not None and state.revocation.mode == "push"
    async with client(starlette_app(SessionCookie(state))) as http:
        session_id, _ = await login(state, "u_alice")
        assert (await http.get("/whoami", headers=cookie(session_id))).json()["user"] == "u_alice"
        # the record vanishes behind authstate's back (no event): the copy answers until
        # AUTHSTATE_SESSION_CACHE_SECONDS have passed, and not after
        await state.store.delete("session", digest(session_id))
        assert (await http.get("/whoami", headers=cookie(session_id))).json()["user"] == "u_alice"
        clock.advance(cache.ttl)
        assert (await http.get("/whoami", headers=cookie(session_id))).json()["authenticated"] is False

        # every real way a session ends (its event drops the copy) is refused at once
        for end in ("revoke", "revoke_all", "revoke_user", "rotate"):
            session_id, _ = await login(state, "u_bob")
            for _ in range(2):  # the second answer comes from the copy
                assert (await http.get("/whoami", headers=cookie(session_id))).json()["user"] == "u_bob"
            if end == "revoke":
                await state.sessions.revoke(session_id)
            elif end == "revoke_all":
                await state.sessions.revoke_all("u_bob")
            elif end == "rotate":
                await state.sessions.rotate(session_id)
            else:
                await state.revoke_user("u_bob")
            answer = (await http.get("/whoami", headers=cookie(session_id))).json()
            assert answer["authenticated"] is False, end


async def test_session_cache_is_off_unless_revocation_is_pushed(clock: FrozenClock) -> None:
    from authstate.sessions import digest

    store = await open_store("memory://", clock=clock)
    state = AuthState(fast_settings(push_revocation=False), store, clock=clock)
    await state.start()
    assert state.revocation.mode != "push"
    async with client(starlette_app(SessionCookie(state))) as http:
        session_id, _ = await login(state, "u_alice")
        assert (await http.get("/whoami", headers=cookie(session_id))).json()["authenticated"]
        await state.store.delete("session", digest(session_id))
        assert (await http.get("/whoami", headers=cookie(session_id))).json()["authenticated"] is False
    with pytest.warns(DeprecationWarning, match="AUTHSTATE_SESSION_CACHE_SECONDS"):
        SessionCookie(state, cache_seconds=5)
    await state.close()


# --- bearer tokens ------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_bearer_jwt_with_local_keys(state: AuthState) -> None:
    session_id, _ = await login(state, "u_alice")
    session = (await state.authenticate_session(session_id))
    assert session is not None and session.session is not None
    token, claims = await state.issue_for_session(session.session, scope=("orders:read",))
    async with client(fastapi_app(BearerJWT(state))) as http:
        assert (await http.get("/me", headers=bearer(token))).json() == {
            "user": "u_alice", "method": "jwt"}
        assert (await http.get("/orders", headers=bearer(token))).status_code == 200
        # a bearer-authenticated change needs no CSRF token
        assert (await http.post("/items", headers=bearer(token))).status_code == 200
        tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        refused = await http.get("/me", headers=bearer(tampered))
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        await state.revoke_token(token)
        assert (await http.get("/me", headers=bearer(token))).status_code == 401


async def test_session_bound_jwt_dies_with_its_session(state: AuthState) -> None:
    session_id, _ = await login(state, "u_alice")
    identity = await state.authenticate_session(session_id)
    assert identity is not None and identity.session is not None
    token, _ = await state.issue_for_session(identity.session)
    async with client(fastapi_app(BearerJWT(state))) as http:
        assert (await http.get("/me", headers=bearer(token))).status_code == 200
        await state.sessions.revoke(session_id)
        assert (await http.get("/me", headers=bearer(token))).status_code == 401


async def test_bearer_opaque_from_the_store(state: AuthState) -> None:
    token, _ = await state.opaque.issue("u_dora", scope=("orders:read",))
    async with client(starlette_app(BearerOpaque(state))) as http:
        answer = (await http.get("/whoami", headers=bearer(token))).json()
        assert (answer["user"], answer["method"], answer["scopes"]) == (
            "u_dora", "opaque", ["authenticated", "orders:read"])
        await state.opaque.revoke(token)
        gone = (await http.get("/whoami", headers=bearer(token))).json()
        assert (gone["authenticated"], gone["error"]) == (False, "invalid_token")
    # an app that takes only JWTs does not look opaque tokens up, and says invalid_token
    fresh, _ = await state.opaque.issue("u_dora")
    async with client(fastapi_app(BearerJWT(state))) as http:
        refused = await http.get("/me", headers=bearer(fresh))
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]


async def test_session_and_jwt_in_the_configured_order(state: AuthState) -> None:
    alice_session, _ = await login(state, "u_alice")
    bob_session, _ = await login(state, "u_bob")
    bob = await state.authenticate_session(bob_session)
    assert bob is not None and bob.session is not None
    bob_token, _ = await state.issue_for_session(bob.session)
    both = {**cookie(alice_session), **bearer(bob_token)}
    async with client(fastapi_app(BearerJWT(state), SessionCookie(state))) as http:
        assert (await http.get("/me", headers=both)).json() == {"user": "u_bob", "method": "jwt"}
    async with client(fastapi_app(SessionCookie(state), BearerJWT(state))) as http:
        assert (await http.get("/me", headers=both)).json() == {
            "user": "u_alice", "method": "session"}


# --- order --------------------------------------------------------------------------------


class Fixed:
    """An authenticator that answers for one header, to observe the order."""

    def __init__(self, header: bytes, user: str) -> None:
        self.header, self.user, self.calls = header, user, 0

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        self.calls += 1
        if credentials.header(self.header) is None:
            return None
        return Identity(user_id=self.user, method="opaque", expires_at=0.0, scope=("a", "b"))


async def test_authenticators_run_in_the_configured_order() -> None:
    first, second = Fixed(b"x-one", "u_one"), Fixed(b"x-two", "u_two")
    both = {"X-One": "1", "X-Two": "1"}
    async with client(starlette_app(first, second)) as http:
        assert (await http.get("/whoami", headers=both)).json()["user"] == "u_one"
        assert second.calls == 0, "the first success ends the search"
        answer = (await http.get("/whoami", headers={"X-Two": "1"})).json()
        assert (answer["user"], answer["scopes"]) == ("u_two", ["authenticated", "a", "b"])
    async with client(starlette_app(second, first)) as http:
        assert (await http.get("/whoami", headers=both)).json()["user"] == "u_two"


async def test_a_bad_credential_falls_through_to_the_next(state: AuthState) -> None:
    other = Fixed(b"x-one", "u_one")
    async with client(starlette_app(SessionCookie(state), other)) as http:
        headers = {**cookie("revoked-or-unknown"), "X-One": "1"}
        assert (await http.get("/whoami", headers=headers)).json()["user"] == "u_one"


# --- FastAPI dependencies -----------------------------------------------------------------


async def test_fastapi_require_identity(state: AuthState) -> None:
    session_id, token = await login(state, "u_bob")
    async with client(fastapi_app(SessionCookie(state))) as http:
        anonymous = await http.get("/me")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == 'Bearer realm="authstate"'
        me = await http.get("/me", headers=cookie(session_id))
        assert me.json() == {"user": "u_bob", "method": "session"}
        assert (await http.get("/greeting")).json() == {"hello": "stranger"}
        assert (await http.get("/greeting", headers=cookie(session_id))).json() == {"hello": "u_bob"}
        refused = await http.post("/items", headers=cookie(session_id))
        assert refused.status_code == 403
        created = await http.post("/items", headers={**cookie(session_id), "X-CSRF-Token": token})
        assert created.json() == {"created_by": "u_bob"}


async def test_fastapi_bad_bearer_gets_invalid_token_challenge(state: AuthState) -> None:
    async with client(fastapi_app(SessionCookie(state))) as http:
        for header in ("Bearer", "Bearer a b", "Bearer " + "a" * 9000, "Bearer a,b"):
            answer = await http.get("/me", headers={"Authorization": header})
            assert answer.status_code == 401
            assert 'error="invalid_token"' in answer.headers["www-authenticate"]
        basic = await http.get("/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert basic.headers["www-authenticate"] == 'Bearer realm="authstate"'


async def test_fastapi_scopes() -> None:
    scoped = Fixed(b"x-one", "u_one")
    async with client(fastapi_app(scoped)) as http:
        refused = await http.get("/orders", headers={"X-One": "1"})
        assert refused.status_code == 403
        assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
        assert 'scope="orders:read"' in refused.headers["www-authenticate"]
        assert (await http.get("/orders")).status_code == 401


async def test_fastapi_dependency_without_middleware_is_a_clear_error() -> None:
    app = FastAPI()

    @app.get("/me")
    async def me(identity: CurrentIdentity) -> str:
        return identity.user_id

    with pytest.raises(RuntimeError, match="AuthMiddleware"):
        async with client(app) as http:
            await http.get("/me")


def test_anonymous_user_shape() -> None:
    assert (ANONYMOUS.is_authenticated, ANONYMOUS.display_name) == (False, "")
    assert repr(ANONYMOUS) == "AuthUser(anonymous)"
