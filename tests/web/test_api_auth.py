"""``/auth/login``, ``/auth/logout``, ``/auth/me`` through an HTTP client against the app."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from authstate.clock import FrozenClock
from authstate.sessions import digest
from tests.web.api import PASSWORD, Api, plant_cookie, running


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running() as api:
        yield api


async def test_login_sets_a_hardened_cookie_and_returns_user_csrf_expiry(api: Api) -> None:
    user = await api.add_user("alice@example.com")
    response = await api.client.post(
        "/auth/login", json={"email": "Alice@Example.com", "password": PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["user"] == {"id": user.id, "email": "alice@example.com", "is_admin": False}
    assert len(body["csrf_token"]) >= 43
    assert datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp() > 0
    cookie = response.headers["set-cookie"]
    name, _, rest = cookie.partition("=")
    assert name == "authstate_session"
    attributes = {a.strip().split("=")[0].lower() for a in rest.split(";")[1:]}
    assert {"httponly", "path", "samesite"} <= attributes
    assert "samesite=lax" in cookie.lower() and "path=/" in cookie.lower()
    assert "secure" not in attributes  # development mode
    assert response.headers["cache-control"] == "no-store"
    session_id = response.cookies["authstate_session"]
    assert session_id not in response.text  # the secret is only in the cookie
    assert (await api.state.authenticate_session(session_id)).user_id == user.id  # type: ignore[union-attr]


async def test_outside_dev_mode_the_cookie_is_secure_and_host_prefixed() -> None:
    async with running(dev=False, base_url="https://testserver", issuer="https://testserver") as api:
        await api.add_user("bob@example.com")
        response = await api.client.post("/auth/login", json={"email": "bob@example.com", "password": PASSWORD})
        assert response.status_code == 200
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("__Host-authstate_session=")
        lowered = [a.strip().lower() for a in cookie.split(";")]
        assert "secure" in lowered and "httponly" in lowered and "path=/" in lowered
        assert "samesite=lax" in lowered and not any(a.startswith("domain") for a in lowered)
        me = await api.client.get("/auth/me")
        assert me.status_code == 200 and me.json()["auth"]["method"] == "session"


async def test_every_login_rotates_the_session_id(api: Api) -> None:
    await api.add_user("carol@example.com")
    await api.login("carol@example.com")
    first = api.client.cookies["authstate_session"]
    await api.login("carol@example.com")
    second = api.client.cookies["authstate_session"]
    assert first != second
    assert await api.state.authenticate_session(first) is None  # the old ID is dead
    assert await api.state.authenticate_session(second) is not None
    events = [e.type for e in (await api.state.audit.query(limit=50)).events]
    assert "session_rotated" in events


async def test_a_planted_session_id_is_never_adopted(api: Api) -> None:
    """Fixation: a cookie an attacker set before login is not the session after login."""
    await api.add_user("dave@example.com")
    planted = "A" * 43
    plant_cookie(api.client, planted)
    await api.login("dave@example.com")
    assert api.client.cookies["authstate_session"] != planted
    assert await api.state.store.get("session", digest(planted)) is None


async def test_wrong_password_and_unknown_email_are_one_401(api: Api) -> None:
    await api.add_user("erin@example.com")
    wrong = await api.client.post("/auth/login", json={"email": "erin@example.com", "password": "nope nope"})
    unknown = await api.client.post("/auth/login", json={"email": "nobody@example.com", "password": "nope nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.headers["content-type"] == unknown.headers["content-type"] == "application/problem+json"
    assert wrong.json() == unknown.json()
    assert wrong.json()["code"] == "authentication_failed"
    assert "set-cookie" not in wrong.headers


async def test_five_failures_then_429_with_retry_after_kept_in_the_store() -> None:
    clock = FrozenClock(900 * 2_000_000 + 60)
    async with running(clock=clock) as api:
        await api.add_user("frank@example.com")
        for _ in range(5):
            r = await api.client.post("/auth/login", json={"email": "frank@example.com", "password": "wrong pass"})
            assert r.status_code == 401
        r = await api.client.post("/auth/login", json={"email": "frank@example.com", "password": PASSWORD})
        assert r.status_code == 429
        assert r.headers["retry-after"] == "840"
        assert r.json()["code"] == "throttled"
        assert (await api.state.store.scan("throttle"))  # the counters live in the store
        types = [e.type for e in (await api.state.audit.query(limit=50)).events]
        assert types.count("login_failed") == 5 and "throttle_tripped" in types
        clock.advance(840)
        await api.login("frank@example.com")


async def test_me_by_session_reports_user_method_and_csrf(api: Api) -> None:
    user = await api.add_user("gina@example.com", admin=True)
    csrf = await api.login("gina@example.com")
    me = await api.client.get("/auth/me")
    assert me.status_code == 200
    body = me.json()
    assert body["user"] == {"id": user.id, "email": "gina@example.com", "is_admin": True}
    assert body["auth"]["method"] == "session"
    assert body["csrf_token"] == csrf


async def test_me_without_credentials_is_401_with_a_bearer_challenge(api: Api) -> None:
    r = await api.client.get("/auth/me")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="authstate"'
    assert r.json()["code"] == "unauthenticated"
    plant_cookie(api.client, "B" * 43)
    r2 = await api.client.get("/auth/me")
    assert r2.status_code == 401 and r2.json() == r.json()
    api.client.cookies.clear()
    r3 = await api.client.get("/auth/me", headers={"Authorization": "Bearer not-a-token"})
    assert r3.status_code == 401
    assert r3.headers["www-authenticate"] == 'Bearer realm="authstate", error="invalid_token"'


async def test_logout_revokes_the_session_and_clears_the_cookie(api: Api) -> None:
    await api.add_user("hank@example.com")
    csrf = await api.login("hank@example.com")
    session_id = api.client.cookies["authstate_session"]
    r = await api.client.post("/auth/logout", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 204
    assert 'authstate_session=""' in r.headers["set-cookie"] or "max-age=0" in r.headers["set-cookie"].lower()
    assert await api.state.authenticate_session(session_id) is None
    plant_cookie(api.client, session_id)
    assert (await api.client.get("/auth/me")).status_code == 401


async def test_a_user_deleted_behind_a_live_session_is_unauthenticated(api: Api) -> None:
    user = await api.add_user("ivy@example.com")
    await api.login("ivy@example.com")
    await api.state.store.delete("user", user.id)
    assert (await api.client.get("/auth/me")).status_code == 401


async def test_no_password_or_session_id_in_logs_or_audit(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await api.add_user("jane@example.com")
    secret_password = "a very secret passphrase 123"
    await api.client.post("/auth/login", json={"email": "jane@example.com", "password": secret_password})
    csrf = await api.login("jane@example.com")
    session_id = api.client.cookies["authstate_session"]
    await api.client.post("/auth/logout", headers={"X-CSRF-Token": csrf})
    events = (await api.state.audit.query(limit=100)).events
    dump = caplog.text + json.dumps([e.to_json() for e in events])
    for secret in (secret_password, PASSWORD, session_id, csrf):
        assert secret not in dump
    assert {"login_failed", "login_succeeded", "session_created", "session_revoked"} <= {e.type for e in events}


async def test_unknown_email_and_wrong_password_take_about_the_same_time() -> None:
    import statistics
    import time

    async with running(password_memory_kib=8192, throttle_account_limit=1000, throttle_ip_limit=1000) as api:
        await api.add_user("kate@example.com")

        async def timed(email: str) -> float:
            start = time.perf_counter()
            r = await api.client.post("/auth/login", json={"email": email, "password": "wrong password!"})
            assert r.status_code == 401
            return time.perf_counter() - start

        known, unknown = [], []
        for _ in range(9):
            known.append(await timed("kate@example.com"))
            unknown.append(await timed("nobody@example.com"))
        ratio = statistics.median(unknown) / statistics.median(known)
        assert 0.6 < ratio < 1.6, (statistics.median(known), statistics.median(unknown))
