"""``authstate.django`` on the example Django project (``examples/django_project``):
plain views through ``AuthstateMiddleware`` and DRF views through
``AuthstateAuthentication``, under Django's test client, against a real ``authstate
serve`` (JWKS and introspection); the backend; and the 503 of a store outage.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django", reason="authstate[django] is in the dev extra")

from authstate.state import AuthState
from authstate.wsgi import AUTH_KEY
from tests.support import RedisServer, free_port, wait_for
from tests.sync.test_flask import service, tampered  # noqa: F401
from tests.web.live_service import PASSWORD, LiveService
from tests.web.test_middleware_examples import EMAIL, token_pair

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "django_project"


@pytest.fixture(scope="module")
def django_project() -> None:
    if str(PROJECT) not in sys.path:
        sys.path.insert(0, str(PROJECT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orders_site.settings")
    import django

    django.setup()


@pytest.fixture
def client(service: LiveService, django_project: None) -> Iterator[Any]:  # noqa: F811
    from django.test import Client, override_settings

    with override_settings(AUTHSTATE={
        "AUTH_URL": service.url, "CLIENT_ID": service.env["TEST_CLIENT_ID"],
        "CLIENT_SECRET": service.env["TEST_CLIENT_SECRET"],
    }):
        yield Client()


def auth(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def body(response: Any) -> Any:
    return json.loads(response.content)


def test_django_view_with_tokens_from_the_service(service: LiveService, client: Any) -> None:  # noqa: F811
    pair = token_pair(service)
    token = pair["access_token"]
    assert body(client.get("/", **auth(token)))["hello"].startswith("u_")
    assert body(client.get("/")) == {"hello": "stranger"}
    missing = client.get("/orders")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="authstate"'
    assert missing["Content-Type"] == "application/problem+json"
    forged = client.get("/orders", **auth(tampered(token)))
    assert forged.status_code == 401 and 'error="invalid_token"' in forged["WWW-Authenticate"]
    scoped = client.get("/orders", **auth(token))  # the password grant gives no scope
    assert scoped.status_code == 403 and body(scoped)["code"] == "insufficient_scope"


def test_request_user_is_lazy(client: Any) -> None:
    """A view that never reads ``request.user`` costs no authentication at all."""
    response = client.get("/ping", **auth("a.b.c"))
    assert response.status_code == 200
    assert AUTH_KEY not in response.wsgi_request.META
    response = client.get("/", **auth("a.b.c"))
    assert AUTH_KEY in response.wsgi_request.META


def test_drf_views(service: LiveService, client: Any) -> None:  # noqa: F811
    token = token_pair(service)["access_token"]
    me = client.get("/api/me", **auth(token))
    assert me.status_code == 200, me.content
    assert body(me)["method"] == "jwt"
    missing = client.get("/api/me")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="authstate"'
    forged = client.get("/api/me", **auth(tampered(token)))
    assert forged.status_code == 401 and 'error="invalid_token"' in forged["WWW-Authenticate"]
    assert client.get("/api/orders", **auth(token)).status_code == 403


def test_drf_opaque_token_by_introspection_then_revoked(service: LiveService, client: Any) -> None:  # noqa: F811
    async def issue(state: AuthState) -> str:
        user = await state.users.by_email(EMAIL)
        assert user is not None
        token, _ = await state.opaque.issue(user.id, scope=("orders:read",))
        return token

    opaque = service.seed(issue)
    orders = client.get("/api/orders", **auth(opaque))
    assert orders.status_code == 200 and body(orders)["method"] == "opaque"
    assert client.get("/orders", **auth(opaque)).status_code == 200
    service.seed(lambda state: state.revoke_token(opaque))
    assert client.get("/api/orders", **auth(opaque)).status_code == 401
    assert client.get("/orders", **auth(opaque)).status_code == 401


def test_backend_authenticates_a_token(service: LiveService, client: Any) -> None:  # noqa: F811
    from django.contrib.auth import authenticate

    token = token_pair(service)["access_token"]
    user = authenticate(None, token=token)
    assert user is not None and user.is_authenticated and user.pk.startswith("u_")
    assert authenticate(None, token=tampered(token)) is None


def test_store_outage_is_503_in_django_and_drf(django_project: None) -> None:
    from django.test import Client, override_settings

    from authstate.sync import SyncAuthState

    server = RedisServer(free_port())
    server.start()
    try:
        values = {"store": server.url, "issuer": "http://127.0.0.1:9", "dev": True,
                  "password_time_cost": 1, "password_memory_kib": 1024}
        with override_settings(AUTHSTATE={"SETTINGS": values}):
            from authstate.django.auth import authenticator

            sync = authenticator().sync
            assert isinstance(sync, SyncAuthState)
            user = sync.add_user("dora@example.com", PASSWORD, via="test")
            login = sync.login("dora@example.com", PASSWORD, ip=None, user_agent=None)
            token, _ = sync.issue_for_session(login.session, scope=("orders:read",))
            client = Client()
            assert body(client.get("/api/orders", **auth(token)))["user"] == user.id
            client.cookies["authstate_session"] = login.session_id
            assert body(client.get("/"))["hello"] == user.id  # the session cookie
            server.stop()
            # a hot session is answered from the process's copy until the bus (the same
            # server here) is noticed gone; then the cookie needs the store, and is 503
            wait_for(lambda: not sync.state.revocation.local)
            for path in ("/", "/api/me"):
                down = client.get(path)
                assert down.status_code == 503, (path, down.content)
                assert down["Retry-After"].isdigit()
    finally:
        server.stop()
