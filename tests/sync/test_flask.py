"""``authstate.flask`` on real Flask apps under Flask's test client, against a real
``authstate serve`` on a free port (its JWKS and introspection), and the sessions app on
the service's own store.

Valid, missing, expired, forged and revoked credentials; scopes; the CSRF rule for a
cookie-authenticated change; the 503 of an outage; and no thread left after close.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from authstate.authn import Authenticator, BearerJWT, Introspection, SessionCookie
from authstate.clock import FrozenClock, SystemClock
from authstate.config import Settings
from authstate.flask import Authstate, current_identity, login_required
from authstate.state import AuthState
from authstate.sync import Portal, SyncAuthState
from tests.support import RedisServer, free_port, wait_for
from tests.web.live_service import PASSWORD, LiveService, live_service
from tests.web.test_middleware_examples import EMAIL, bearer, cli, load_example, token_pair


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    with live_service(tmp_path_factory.mktemp("serve")) as running:
        cli(running, "users", "add", EMAIL, "--password-stdin", "--json", stdin=PASSWORD + "\n")
        client = json.loads(cli(running, "clients", "add", "orders-api", "--json"))
        running.env["TEST_CLIENT_ID"] = client["client_id"]
        running.env["TEST_CLIENT_SECRET"] = client["client_secret"]
        yield running


def orders_app(service: LiveService) -> Flask:
    module = load_example("flask_app")
    app: Flask = module.create_app(service.url, client_id=service.env["TEST_CLIENT_ID"],
                                   client_secret=service.env["TEST_CLIENT_SECRET"])
    return app


def tampered(token: str) -> str:
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


def test_jwt_from_the_service_through_its_jwks(service: LiveService) -> None:
    pair = token_pair(service)
    http = orders_app(service).test_client()
    me = http.get("/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json is not None and me.json["method"] == "jwt"
    assert http.get("/", headers=bearer(pair["access_token"])).json == {"hello": me.json["user"]}
    assert http.get("/").json == {"hello": "stranger"}

    missing = http.get("/me")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="authstate"'
    assert missing.content_type == "application/problem+json"
    assert missing.json is not None and missing.json["code"] == "unauthenticated"
    forged = http.get("/me", headers=bearer(tampered(pair["access_token"])))
    assert forged.status_code == 401
    assert 'error="invalid_token"' in forged.headers["WWW-Authenticate"]
    scoped = http.get("/orders", headers=bearer(pair["access_token"]))
    assert scoped.status_code == 403
    assert 'error="insufficient_scope"' in scoped.headers["WWW-Authenticate"]
    assert scoped.json is not None and scoped.json["code"] == "insufficient_scope"
    assert http.get("/me", headers=bearer(pair["refresh_token"])).status_code == 401


def test_opaque_token_by_introspection_and_its_revocation(service: LiveService) -> None:
    async def issue(state: AuthState) -> str:
        user = await state.users.by_email(EMAIL)
        assert user is not None
        token, _ = await state.opaque.issue(user.id, scope=("orders:read",))
        return token

    opaque = service.seed(issue)
    http = orders_app(service).test_client()
    assert http.get("/orders", headers=bearer(opaque)).status_code == 200
    service.seed(lambda state: state.revoke_token(opaque))
    revoked = http.get("/orders", headers=bearer(opaque))  # introspection: at once
    assert revoked.status_code == 401
    assert 'error="invalid_token"' in revoked.headers["WWW-Authenticate"]


def test_an_expired_token_is_refused(service: LiveService) -> None:
    """The app's clock moves past the token's ``exp`` (plus leeway): refused as any bad
    token is, with no hint that it expired."""
    clock = FrozenClock(SystemClock().now())
    app = Flask("expiry")
    url = f"{service.url}/.well-known/jwks.json"
    Authstate(app, authenticators=lambda: [
        BearerJWT.from_jwks(url, issuer=service.url, audience="authstate", clock=clock)])

    @app.get("/me")
    @login_required
    def me() -> Any:
        return {"user": current_identity.user_id}

    http = app.test_client()
    token = token_pair(service)["access_token"]
    assert http.get("/me", headers=bearer(token)).status_code == 200
    clock.advance(3600)
    expired = http.get("/me", headers=bearer(token))
    assert expired.status_code == 401
    assert expired.json is not None and expired.json["code"] == "unauthenticated"


def test_sessions_app_on_the_service_store(service: LiveService) -> None:
    """Log in at the Flask app with an authstate session on the service's store; a
    cookie-authenticated POST needs the CSRF token; ending the session at the service
    logs the user out here."""
    module = load_example("flask_app")
    app: Flask = module.create_session_app(service.settings().flat())
    http = app.test_client()
    bad = http.post("/login", data={"email": EMAIL, "password": "not the password at all"})
    assert bad.status_code == 401
    login = http.post("/login", data={"email": EMAIL, "password": PASSWORD})
    assert login.status_code == 200, login.text
    assert login.json is not None
    csrf_token = login.json["csrf_token"]
    me = http.get("/me")
    assert me.status_code == 200 and me.json is not None and me.json["method"] == "session"
    refused = http.post("/notes")
    assert refused.status_code == 403
    assert refused.json is not None and refused.json["code"] == "csrf_failed"
    assert http.post("/notes", headers={"X-CSRF-Token": csrf_token}).status_code == 200
    token = http.get("/token").json
    assert token is not None
    # the session-bound access token is accepted by the service itself
    assert orders_app(service).test_client().get(
        "/me", headers=bearer(token["access_token"])).status_code == 200

    user_id = me.json["user"]
    service.seed(lambda state: state.revoke_user(user_id, reason="admin"))
    gone = http.get("/me")
    assert gone.status_code == 401


def test_a_store_outage_is_a_503_not_a_logout() -> None:
    server = RedisServer(free_port())
    server.start()
    portal = Portal(name="authstate-test-portal")
    try:
        settings = Settings.from_flat(store=server.url, issuer="http://127.0.0.1:9", dev=True,
                            password_time_cost=1, password_memory_kib=1024)
        sync = SyncAuthState(settings, portal=portal)
        app = Flask("outage")
        Authstate(app, authenticators=lambda: [SessionCookie(sync.state)], sync=sync,
                  portal=portal)

        @app.get("/me")
        @login_required
        def me() -> Any:
            return {"user": current_identity.user_id}

        http = app.test_client()
        sync.add_user("olga@example.com", PASSWORD, via="test")
        login = sync.login("olga@example.com", PASSWORD, ip=None, user_agent=None)
        http.set_cookie("authstate_session", login.session_id)
        assert http.get("/me").status_code == 200
        server.stop()
        wait_for(lambda: not sync.state.revocation.local)  # the copy is no longer trusted
        down = http.get("/me")
        assert down.status_code == 503
        assert down.headers["Retry-After"].isdigit()
        assert "Set-Cookie" not in down.headers  # the session outlives the outage
        assert down.json is not None and down.json["code"] == "store_unavailable"
    finally:
        server.stop()
        portal.close()


def test_close_leaves_no_thread(service: LiveService) -> None:
    before = set(threading.enumerate())
    portal = Portal(name="authstate-test-portal")
    app = Flask("closing")
    url = service.url

    def both() -> list[Authenticator]:  # each with an HTTP client to close
        return [
            BearerJWT.from_jwks(f"{url}/.well-known/jwks.json", issuer=url, audience="authstate"),
            Introspection(f"{url}/oauth/introspect", client_id=service.env["TEST_CLIENT_ID"],
                          client_secret=service.env["TEST_CLIENT_SECRET"]),
        ]

    auth = Authstate(app, portal=portal, authenticators=both)

    @app.get("/me")
    @login_required
    def me() -> Any:
        return {"user": current_identity.user_id}

    http = app.test_client()
    token = token_pair(service)["access_token"]
    for _ in range(20):
        assert http.get("/me", headers=bearer(token)).status_code == 200
    auth.close()
    portal.close()
    assert set(threading.enumerate()) <= before
