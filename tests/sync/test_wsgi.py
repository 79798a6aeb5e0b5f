"""``authstate.wsgi.AuthMiddleware`` around a bare PEP 3333 app, under werkzeug's test
client: the same authenticators as the ASGI middleware, the verdict in the environ,
anonymous passing through, and an outage answered 503 before the app runs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from authstate.authn import BearerJWT, BearerOpaque, SessionCookie
from authstate.clock import FrozenClock
from authstate.config import Settings
from authstate.sync import Portal, SyncAuthState
from authstate.wsgi import AUTH_KEY, IDENTITY_KEY, AuthMiddleware, scope_of
from tests.support import RedisServer, free_port, wait_for

PASSWORD = "correct horse battery staple"


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    identity = environ[IDENTITY_KEY]
    info = environ[AUTH_KEY]
    body = json.dumps({"user": identity.user_id if identity else None, "error": info.error,
                       "method": info.method}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


@pytest.fixture
def portal() -> Iterator[Portal]:
    with Portal(name="authstate-test-portal") as p:
        yield p


def settings(store: str) -> Settings:
    return Settings.from_flat(store=store, issuer="http://127.0.0.1:9", dev=True,
                    password_time_cost=1, password_memory_kib=1024)


def test_scope_of_reads_headers_as_asgi_does() -> None:
    scope = scope_of({"REQUEST_METHOD": "POST", "HTTP_X_CSRF_TOKEN": "t", "CONTENT_TYPE": "a/b",
                      "HTTP_COOKIE": "a=1", "wsgi.input": object(), "PATH_INFO": "/"})
    assert scope["method"] == "POST"
    assert sorted(scope["headers"]) == [(b"content-type", b"a/b"), (b"cookie", b"a=1"),
                                        (b"x-csrf-token", b"t")]


def test_verdicts_in_the_environ(tmp_path: Path, portal: Portal) -> None:
    clock = FrozenClock()
    sync = SyncAuthState(settings(f"sqlite:///{tmp_path / 'w.db'}"), clock=clock, portal=portal)
    wrapped = AuthMiddleware(app, portal=portal, authenticators=lambda: [
        BearerJWT(sync.state), BearerOpaque(sync.state), SessionCookie(sync.state)])
    http = Client(wrapped)
    user = sync.add_user("wes@example.com", PASSWORD, via="test")
    login = sync.login("wes@example.com", PASSWORD, ip=None, user_agent=None)
    token, _ = sync.issue_for_session(login.session)

    def get(**headers: str) -> Any:
        return json.loads(http.get("/", headers=headers).data)

    assert get() == {"user": None, "error": None, "method": None}  # anonymous goes on
    assert get(Authorization=f"Bearer {token}") == {"user": user.id, "error": None,
                                                    "method": "jwt"}
    http.set_cookie("authstate_session", login.session_id)  # werkzeug keeps a cookie jar
    assert get()["method"] == "session"
    http.delete_cookie("authstate_session")
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert get(Authorization=f"Bearer {forged}") == {"user": None, "error": "invalid_token",
                                                     "method": None}
    # a server joins a repeated header with a comma: refused, as a repeated one is
    assert get(Authorization=f"Bearer {token}, Bearer {token}")["error"] == "invalid_token"
    opaque, _ = sync.run(lambda s: s.opaque.issue(user.id))
    assert get(Authorization=f"Bearer {opaque}")["method"] == "opaque"
    clock.advance(3600)  # expired: the same answer as forged
    assert get(Authorization=f"Bearer {token}")["error"] == "invalid_token"
    clock.advance(-3600)
    sync.revoke_user(user.id)
    assert get(Authorization=f"Bearer {token}")["error"] == "invalid_token"
    assert get(Authorization=f"Bearer {opaque}")["error"] == "invalid_token"
    http.set_cookie("authstate_session", login.session_id)
    assert get()["error"] == "invalid_token"  # the cookie's session ended too
    wrapped.close()
    sync.close()


def test_an_outage_is_503_before_the_app(portal: Portal) -> None:
    server = RedisServer(free_port())
    server.start()
    try:
        sync = SyncAuthState(settings(server.url), portal=portal)
        wrapped = AuthMiddleware(app, portal=portal,
                                 authenticators=lambda: [SessionCookie(sync.state)])
        sync.add_user("una@example.com", PASSWORD, via="test")
        login = sync.login("una@example.com", PASSWORD, ip=None, user_agent=None)
        http = Client(wrapped)
        http.set_cookie("authstate_session", login.session_id)
        assert http.get("/").status_code == 200
        server.stop()
        # the hot session is answered from the process's copy until the bus (the same
        # server) is noticed gone; from then on the cookie needs the store: 503
        wait_for(lambda: not sync.state.revocation.local)
        down = http.get("/")
        assert down.status_code == 503
        assert down.headers["Retry-After"].isdigit()
        assert down.headers["Content-Type"] == "application/problem+json"
        assert json.loads(down.data)["code"] == "store_unavailable"
        http.delete_cookie("authstate_session")
        assert http.get("/").status_code == 200  # no credential: nothing to check
    finally:
        server.stop()
