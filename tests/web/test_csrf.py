"""CSRF: every cookie-authenticated state change needs the session's token and a
same-origin provenance where the browser states one; bearer requests need neither."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from authstate.web.csrf import same_origin
from tests.web.api import PASSWORD, Api, running


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running() as api:
        yield api


@pytest.mark.parametrize(
    ("origin", "site", "host", "ok"),
    [
        (None, None, b"svc", True),
        (b"http://svc", None, b"svc", True),
        (b"https://svc", b"same-origin", b"svc", True),
        (None, b"none", b"svc", True),
        (b"https://evil.example", None, b"svc", False),
        (b"null", None, b"svc", False),
        (b"http://svc.evil.example", None, b"svc", False),
        (b"http://svc:8001", None, b"svc:8000", False),
        (None, b"cross-site", b"svc", False),
        (None, b"same-site", b"svc", False),
        (b"ftp://svc", None, b"svc", False),
        (b"https://issuer.example", None, b"svc", True),  # the allowed (issuer) origin
    ],
)
def test_same_origin(origin: bytes | None, site: bytes | None, host: bytes, ok: bool) -> None:
    assert same_origin(origin=origin, sec_fetch_site=site, host=host, allowed=[b"https://issuer.example"]) is ok


async def _state_changes(api: Api) -> list[tuple[str, str, dict[str, object] | None]]:
    user = await api.state.users.by_email("alice@example.com")
    assert user is not None
    handle = (await api.client.get("/auth/sessions")).json()["sessions"][0]["id"]
    return [
        ("POST", "/auth/logout", None),
        ("DELETE", f"/auth/sessions/{handle}", None),
        ("POST", "/auth/sessions/revoke-others", None),
        ("POST", "/auth/password", {"current_password": PASSWORD, "new_password": "another good password"}),
        ("POST", "/auth/token", None),
        ("POST", f"/admin/users/{user.id}/revoke", None),
    ]


async def test_every_cookie_state_change_without_the_token_is_403(api: Api) -> None:
    await api.add_user("alice@example.com", admin=True)
    csrf = await api.login("alice@example.com")
    for method, path, body in await _state_changes(api):
        for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": csrf + "x"}):
            r = await api.client.request(method, path, json=body, headers=headers)
            assert r.status_code == 403, (method, path, headers, r.text)
            assert r.json()["code"] == "csrf_failed"
    me = await api.client.get("/auth/me")  # nothing happened: same session, same password
    assert me.status_code == 200 and me.json()["csrf_token"] == csrf
    await api.state.users.authenticate("alice@example.com", PASSWORD)


async def test_another_sessions_token_does_not_count(api: Api) -> None:
    await api.add_user("bob@example.com")
    other = api.new_client()
    other_csrf = await api.login("bob@example.com", client=other)
    await api.login("bob@example.com")
    r = await api.client.post("/auth/logout", headers={"X-CSRF-Token": other_csrf})
    assert r.status_code == 403
    await other.aclose()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "https://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "same-site"}, 403),
        ({"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}, 200),
        ({"Sec-Fetch-Site": "none"}, 200),
        ({}, 200),
    ],
)
async def test_provenance_headers_when_sent_must_say_same_origin(
    api: Api, headers: dict[str, str], status: int
) -> None:
    await api.add_user("carol@example.com")
    csrf = await api.login("carol@example.com")
    r = await api.client.post("/auth/sessions/revoke-others", headers={"X-CSRF-Token": csrf, **headers})
    assert r.status_code == status, r.text


async def test_safe_methods_need_no_token(api: Api) -> None:
    await api.add_user("dave@example.com")
    await api.login("dave@example.com")
    assert (await api.client.get("/auth/me", headers={"Sec-Fetch-Site": "cross-site"})).status_code == 200
    assert (await api.client.get("/auth/sessions")).status_code == 200


async def test_bearer_requests_need_no_csrf_even_cross_origin(api: Api) -> None:
    await api.add_user("erin@example.com")
    csrf = await api.login("erin@example.com")
    token = (await api.client.post("/auth/token", headers={"X-CSRF-Token": csrf})).json()["access_token"]
    bare = api.new_client()
    r = await bare.post(
        "/auth/sessions/revoke-others",
        headers={"Authorization": f"Bearer {token}", "Origin": "https://elsewhere.example"},
    )
    assert r.status_code == 200
    await bare.aclose()


async def test_login_refuses_a_cross_origin_post(api: Api) -> None:
    """Login needs no token (no cookie authenticates it) but a browser saying the form
    was posted from another site is refused: no login CSRF into the attacker's account."""
    await api.add_user("fay@example.com")
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        r = await api.client.post("/auth/login", json={"email": "fay@example.com", "password": PASSWORD}, headers=headers)
        assert r.status_code == 403 and "set-cookie" not in r.headers
    first = await api.login("fay@example.com")
    second = await api.login("fay@example.com")
    assert first != second
