"""``/auth/sessions``: the caller's devices, revoking one, and logging out everywhere else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.web.api import Api, running


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running() as api:
        yield api


async def test_list_shows_handles_not_secrets_and_marks_the_current_one(api: Api) -> None:
    await api.add_user("alice@example.com")
    laptop = api.new_client()
    await api.login("alice@example.com", client=laptop)
    await api.login("alice@example.com")
    r = await api.client.get("/auth/sessions", headers={"User-Agent": "Phone/1.0"})
    assert r.status_code == 200
    sessions = r.json()["sessions"]
    assert len(sessions) == 2
    assert sorted(s["current"] for s in sessions) == [False, True]
    for s in sessions:
        assert len(s["id"]) == 16 and set(s["id"]) <= set("0123456789abcdef")
        assert s["ip"] == "127.0.0.1"
        assert {"created_at", "last_seen", "expires_at", "user_agent"} <= s.keys()
    for secret in (api.client.cookies["authstate_session"], laptop.cookies["authstate_session"]):
        assert secret not in r.text
    await laptop.aclose()


async def test_delete_one_of_mine_and_not_someone_elses(api: Api) -> None:
    await api.add_user("bob@example.com")
    await api.add_user("mallory@example.com")
    phone = api.new_client()
    await api.login("bob@example.com", client=phone)
    csrf = await api.login("bob@example.com")
    sessions = (await api.client.get("/auth/sessions")).json()["sessions"]
    phone_handle = next(s["id"] for s in sessions if not s["current"])

    mallory = api.new_client()
    mallory_csrf = await api.login("mallory@example.com", client=mallory)
    r = await mallory.delete(f"/auth/sessions/{phone_handle}", headers={"X-CSRF-Token": mallory_csrf})
    assert r.status_code == 404
    assert (await phone.get("/auth/me")).status_code == 200

    r = await api.client.delete(f"/auth/sessions/{phone_handle}", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 204
    assert (await phone.get("/auth/me")).status_code == 401
    assert (await api.client.get("/auth/me")).status_code == 200
    again = await api.client.delete(f"/auth/sessions/{phone_handle}", headers={"X-CSRF-Token": csrf})
    assert again.status_code == 404
    bogus = await api.client.delete("/auth/sessions/not-a-handle", headers={"X-CSRF-Token": csrf})
    assert bogus.status_code == 404 and bogus.json()["code"] == "not_found"
    await phone.aclose()
    await mallory.aclose()


async def test_deleting_the_current_session_clears_its_cookie(api: Api) -> None:
    await api.add_user("carol@example.com")
    csrf = await api.login("carol@example.com")
    handle = (await api.client.get("/auth/sessions")).json()["sessions"][0]["id"]
    r = await api.client.delete(f"/auth/sessions/{handle}", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 204 and "authstate_session=" in r.headers["set-cookie"]
    assert (await api.client.get("/auth/me")).status_code == 401


async def test_revoke_others_keeps_only_the_current_session(api: Api) -> None:
    await api.add_user("dave@example.com")
    others = [api.new_client() for _ in range(3)]
    for other in others:
        await api.login("dave@example.com", client=other)
    csrf = await api.login("dave@example.com")
    r = await api.client.post("/auth/sessions/revoke-others", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json() == {"revoked": 3}
    for other in others:
        assert (await other.get("/auth/me")).status_code == 401
        await other.aclose()
    remaining = (await api.client.get("/auth/sessions")).json()["sessions"]
    assert len(remaining) == 1 and remaining[0]["current"]


async def test_revoke_others_by_bearer_keeps_the_tokens_session(api: Api) -> None:
    await api.add_user("erin@example.com")
    other = api.new_client()
    await api.login("erin@example.com", client=other)
    csrf = await api.login("erin@example.com")
    token = (await api.client.post("/auth/token", headers={"X-CSRF-Token": csrf})).json()["access_token"]
    bearer = api.new_client()
    r = await bearer.post("/auth/sessions/revoke-others", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json() == {"revoked": 1}
    assert (await other.get("/auth/me")).status_code == 401
    assert (await api.client.get("/auth/me")).status_code == 200
    listed = (await bearer.get("/auth/sessions", headers={"Authorization": f"Bearer {token}"})).json()
    assert [s["current"] for s in listed["sessions"]] == [True]
    await other.aclose()
    await bearer.aclose()


async def test_options_on_revoke_others_answers_for_that_route(api: Api) -> None:
    """Issue 10 §4: ``/auth/sessions/{handle}`` used to catch ``revoke-others`` too, so
    OPTIONS answered ``Allow: DELETE`` for a path that only takes POST."""
    answer = await api.client.options("/auth/sessions/revoke-others")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    handle = await api.client.options("/auth/sessions/0123456789abcdef")
    assert handle.headers["allow"] == "DELETE"


async def test_no_parameter_route_shadows_a_literal_path(api: Api) -> None:
    """Every literal path answers an unrouted method with its own methods, never with
    those of a ``{parameter}`` route declared before it."""
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    declared = {
        path: {method.upper() for method in operations}
        for path, operations in paths.items() if "{" not in path
    }
    assert "/auth/sessions/revoke-others" in declared
    for path, methods in declared.items():
        if "OPTIONS" in methods:
            continue
        answer = await api.client.options(path)
        allowed = {m.strip() for m in answer.headers.get("allow", "").split(",") if m.strip()}
        assert answer.status_code == 405 and allowed <= methods, (path, allowed, methods)
