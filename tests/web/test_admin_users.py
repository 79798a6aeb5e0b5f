"""``/admin/users`` over HTTP: admins only, CSRF on cookie changes, 404 and 400 problem
details, the last admin protected, every change audited with the admin as actor; and
the pages: a disabled user's login reads as a wrong password, ``/account`` lists scopes.
The flows themselves are pinned on every store in ``tests/test_accounts.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from authstate.users import User
from tests.web.api import PASSWORD, Api, running
from tests.web.test_pages import HIDDEN_CSRF, page_login

ROOT = "root@example.com"
EMAIL = "alice@example.com"


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running() as api:
        yield api


async def admin_client(api: Api) -> tuple[User, httpx.AsyncClient, dict[str, str]]:
    root = await api.add_user(ROOT, admin=True)
    csrf = await api.login(ROOT)
    return root, api.client, {"X-CSRF-Token": csrf}


async def test_list_show_and_mark_disabled(api: Api) -> None:
    root, client, csrf = await admin_client(api)
    alice = await api.add_user(EMAIL)
    listed = await client.get("/admin/users")
    assert listed.status_code == 200
    assert [u["email"] for u in listed.json()] == [ROOT, EMAIL]
    assert all("password" not in key for u in listed.json() for key in u)

    r = await client.patch(f"/admin/users/{alice.id}", headers=csrf,
                           json={"disabled": True, "reason": "abuse report 12"})
    assert r.status_code == 200, r.text
    assert r.json()["disabled"] is True and r.json()["disabled_reason"] == "abuse report 12"
    only = await client.get("/admin/users", params={"disabled": "true"})
    assert [u["id"] for u in only.json()] == [alice.id]
    one = await client.get(f"/admin/users/{alice.id}")
    assert one.json()["disabled"] is True and one.json()["scopes"] == []

    r = await client.patch(f"/admin/users/{alice.id}", headers=csrf, json={"disabled": False})
    assert r.json()["disabled"] is False and r.json()["disabled_reason"] is None
    events = (await api.state.audit.query(user_id=alice.id, limit=100)).events
    types = {e.type: e for e in events}
    assert types["user_disabled"].actor == f"user:{root.id}"
    assert types["user_disabled"].detail["reason"] == "abuse report 12"
    assert types["user_enabled"].actor == f"user:{root.id}"


async def test_disabling_logs_the_user_out_of_the_api(api: Api) -> None:
    _, client, csrf = await admin_client(api)
    alice = await api.add_user(EMAIL)
    browser = api.new_client()
    await api.login(EMAIL, client=browser)
    assert (await browser.get("/auth/me")).status_code == 200
    token = (await api.state.password_grant(EMAIL, PASSWORD, ip=None, user_agent=None))

    r = await client.patch(f"/admin/users/{alice.id}", headers=csrf, json={"disabled": True})
    assert r.status_code == 200

    assert (await browser.get("/auth/me")).status_code == 401
    bearer = {"Authorization": f"Bearer {token.access_token}"}
    assert (await api.new_client().get("/auth/me", headers=bearer)).status_code == 401
    refreshed = await api.new_client().post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": token.refresh_token})
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    again = await api.new_client().post("/auth/login", json={"email": EMAIL,
                                                             "password": PASSWORD})
    wrong = await api.new_client().post("/auth/login", json={"email": EMAIL,
                                                             "password": "wrong password!"})
    assert again.status_code == wrong.status_code == 401
    assert again.json() == wrong.json()


async def test_scopes_patch_and_bad_scope_names(api: Api) -> None:
    _, client, csrf = await admin_client(api)
    alice = await api.add_user(EMAIL)
    r = await client.patch(f"/admin/users/{alice.id}", headers=csrf,
                           json={"scopes": ["orders:read", "orders:write"]})
    assert r.status_code == 200 and r.json()["scopes"] == ["orders:read", "orders:write"]
    for bad in (["orders read"], ["a" * 65], [""], ["ö"]):
        r = await client.patch(f"/admin/users/{alice.id}", headers=csrf, json={"scopes": bad})
        assert r.status_code == 400, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "invalid_scope"
    assert (await api.state.get_user(alice.id)).scopes == ("orders:read", "orders:write")
    r = await client.patch(f"/admin/users/{alice.id}", headers=csrf,
                           json={"disabled": True, "scopes": ["fine", "not fine"]})
    assert r.status_code == 400
    assert not (await api.state.get_user(alice.id)).disabled, "all or nothing"


async def test_a_refused_change_changes_nothing_else(api: Api) -> None:
    root, client, csrf = await admin_client(api)
    r = await client.patch(f"/admin/users/{root.id}", headers=csrf,
                           json={"disabled": True, "scopes": ["orders:read"]})
    assert r.status_code == 409
    assert (await api.state.get_user(root.id)).scopes == ()


async def test_token_endpoint_after_scope_removal(api: Api) -> None:
    alice = await api.add_user(EMAIL)
    await api.state.set_scopes(alice.id, ["orders:read"])
    login = await api.state.login(EMAIL, PASSWORD, ip=None, user_agent=None)
    pair = await api.state.login_tokens(alice.id, login.session, scope=("orders:read",))
    await api.state.set_scopes(alice.id, [])
    r = await api.client.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": pair.refresh_token})
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


async def test_unknown_ids_are_404_problems(api: Api) -> None:
    _, client, csrf = await admin_client(api)
    for unknown in ("u_AAAAAAAAAAAAAAAA", "nobody"):
        for r in (await client.get(f"/admin/users/{unknown}"),
                  await client.patch(f"/admin/users/{unknown}", headers=csrf,
                                     json={"disabled": True}),
                  await client.delete(f"/admin/users/{unknown}", headers=csrf)):
            assert r.status_code == 404, r.text
            assert r.json()["code"] == "not_found"


async def test_admins_only_and_csrf_on_cookie_changes(api: Api) -> None:
    root, client, csrf = await admin_client(api)
    alice = await api.add_user(EMAIL)
    plain = api.new_client()
    plain_csrf = await api.login(EMAIL, client=plain)
    assert (await plain.get("/admin/users")).status_code == 403
    r = await plain.patch(f"/admin/users/{root.id}", headers={"X-CSRF-Token": plain_csrf},
                          json={"disabled": True})
    assert r.status_code == 403
    assert (await plain.delete(f"/admin/users/{root.id}",
                               headers={"X-CSRF-Token": plain_csrf})).status_code == 403
    assert (await api.new_client().get("/admin/users")).status_code == 401

    no_csrf = await client.patch(f"/admin/users/{alice.id}", json={"disabled": True})
    assert no_csrf.status_code == 403
    no_csrf = await client.delete(f"/admin/users/{alice.id}")
    assert no_csrf.status_code == 403
    assert not (await api.state.get_user(alice.id)).disabled


async def test_delete_and_the_last_admin(api: Api) -> None:
    root, client, csrf = await admin_client(api)
    alice = await api.add_user(EMAIL)
    for r in (await client.patch(f"/admin/users/{root.id}", headers=csrf,
                                 json={"disabled": True}),
              await client.patch(f"/admin/users/{root.id}", headers=csrf,
                                 json={"is_admin": False}),
              await client.delete(f"/admin/users/{root.id}", headers=csrf)):
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "refused" and "last enabled admin" in r.json()["detail"]
    assert (await client.get("/auth/me")).status_code == 200, "the admin is still in"

    r = await client.delete(f"/admin/users/{alice.id}", headers=csrf)
    assert r.status_code == 204
    assert (await client.get(f"/admin/users/{alice.id}")).status_code == 404
    deleted = (await api.state.audit.query(type="user_deleted", limit=10)).events
    assert deleted[0].user_id == alice.id and deleted[0].actor == f"user:{root.id}"

    r = await client.patch(f"/admin/users/{alice.id}", headers=csrf, json={"is_admin": True})
    assert r.status_code == 404
    ops = await api.add_user("ops@example.com")
    r = await client.patch(f"/admin/users/{ops.id}", headers=csrf, json={"is_admin": True})
    assert r.status_code == 200 and r.json()["is_admin"] is True
    r = await client.patch(f"/admin/users/{root.id}", headers=csrf, json={"is_admin": False})
    assert r.status_code == 200 and r.json()["is_admin"] is False
    assert (await client.get("/admin/users")).status_code == 403, "demoted at the next request"


async def test_login_page_reads_the_same_for_a_disabled_user(api: Api) -> None:
    alice = await api.add_user(EMAIL)
    await api.state.disable_user(alice.id)
    disabled = await page_login(api.new_client())
    wrong = await page_login(api.new_client(), password="not the password")
    assert disabled.status_code == wrong.status_code == 401
    assert "Wrong email or password." in disabled.text
    assert HIDDEN_CSRF.sub("", disabled.text) == HIDDEN_CSRF.sub("", wrong.text), "one page"


async def test_account_page_lists_the_users_scopes(api: Api) -> None:
    alice = await api.add_user(EMAIL)
    browser = api.new_client()
    await page_login(browser)
    assert "none" in (await browser.get("/account")).text
    await api.state.set_scopes(alice.id, ["orders:read", "profile"])
    page = await browser.get("/account")
    assert '<code class="scope">orders:read</code>' in page.text
    assert '<code class="scope">profile</code>' in page.text
