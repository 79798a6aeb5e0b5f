"""The HTML pages through an HTTP client: login (with login CSRF), the account page's
devices and revoke buttons, log out everywhere else, and the token inspector."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.web.api import PASSWORD, Api, running

EMAIL = "alice@example.com"
HIDDEN_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running() as api:
        await api.add_user(EMAIL)
        yield api


def csrf_of(page: httpx.Response) -> str:
    found = HIDDEN_CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)


async def page_login(
    client: httpx.AsyncClient, email: str = EMAIL, password: str = PASSWORD, next_url: str = ""
) -> httpx.Response:
    form = await client.get("/login" + (f"?next={next_url}" if next_url else ""))
    assert form.status_code == 200
    data = {"email": email, "password": password, "csrf_token": csrf_of(form)}
    if next_url:
        data["next"] = next_url
    return await client.post("/login", data=data)


async def test_login_page_is_plain_html_with_a_csrf_token(api: Api) -> None:
    page = await api.client.get("/login")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text, "the pages work with JavaScript off"
    assert 'name="email"' in page.text and 'name="password"' in page.text
    token = csrf_of(page)
    set_cookie = page.headers["set-cookie"]
    assert f"authstate_login_csrf={token}" in set_cookie
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    again = await api.client.get("/login")
    assert csrf_of(again) == token, "two open login tabs share the browser's one token"


async def test_login_sets_the_session_cookie_and_lands_on_the_account(api: Api) -> None:
    done = await page_login(api.client)
    assert done.status_code == 303 and done.headers["location"] == "/account"
    session_cookie = next(v for v in done.headers.get_list("set-cookie")
                          if v.startswith("authstate_session="))
    assert "HttpOnly" in session_cookie and "SameSite=lax" in session_cookie
    assert "Path=/" in session_cookie
    account = await api.client.get("/account")
    assert account.status_code == 200
    assert EMAIL in account.text and "this device" in account.text
    assert api.client.cookies["authstate_session"] not in account.text
    me = await api.client.get("/auth/me")
    assert me.json()["user"]["email"] == EMAIL, "the pages' session is the API's session"
    assert me.json()["csrf_token"] == csrf_of(account)


async def test_login_without_the_form_token_is_refused(api: Api) -> None:
    await api.client.get("/login")
    no_token = await api.client.post("/login", data={"email": EMAIL, "password": PASSWORD})
    assert no_token.status_code == 403 and "expired" in no_token.text
    fresh = httpx.AsyncClient(transport=api.transport, base_url="http://testserver")
    forged = await fresh.post(
        "/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": "x" * 43}
    )
    assert forged.status_code == 403
    assert "authstate_session" not in fresh.cookies
    page = await api.client.get("/login")
    cross = await api.client.post(
        "/login",
        data={"email": EMAIL, "password": PASSWORD, "csrf_token": csrf_of(page)},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403
    await fresh.aclose()


async def test_wrong_password_and_unknown_email_read_the_same(api: Api) -> None:
    wrong = await page_login(api.client, password="not the password")
    unknown = await page_login(api.client, email="nobody@example.com")
    assert wrong.status_code == unknown.status_code == 401
    for page in (wrong, unknown):
        assert "Wrong email or password." in page.text
    assert "authstate_session" not in api.client.cookies


async def test_throttled_login_says_wait(api: Api) -> None:
    for _ in range(api.state.settings.throttle.account_limit):
        assert (await page_login(api.client, password="nope nope nope")).status_code == 401
    throttled = await page_login(api.client)
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0
    assert "Too many failed attempts" in throttled.text


async def test_form_values_are_escaped(api: Api) -> None:
    evil = '"><script>alert(1)</script>'
    page = await page_login(api.client, email=evil)
    assert "<script>alert(1)" not in page.text
    assert "&lt;script&gt;" in page.text or "&#34;&gt;&lt;script" in page.text


async def test_next_is_followed_only_to_local_paths(api: Api) -> None:
    assert (await page_login(api.client, next_url="/inspect")).headers["location"] == "/inspect"
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        other = api.new_client()
        done = await page_login(other, next_url=target)
        assert done.headers["location"] == "/account", target
        await other.aclose()


async def test_pages_need_a_session(api: Api) -> None:
    for path in ("/account", "/inspect"):
        answer = await api.client.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"] == f"/login?next={path}"
    assert (await api.client.get("/")).headers["location"] == "/login"
    for path in ("/account/revoke-others", "/logout", "/inspect"):
        assert (await api.client.post(path, data={"csrf_token": "x"})).status_code == 303


async def test_login_replaces_a_session_the_browser_already_had(api: Api) -> None:
    await page_login(api.client)
    held = api.client.cookies["authstate_session"]
    other = api.new_client()
    form = await other.get("/login")
    other.cookies.set("authstate_session", held, domain="testserver.local", path="/")
    done = await other.post("/login", data={"email": EMAIL, "password": PASSWORD,
                                            "csrf_token": csrf_of(form)})
    assert done.status_code == 303
    new = next(v for v in done.headers.get_list("set-cookie")
               if v.startswith("authstate_session=")).split(";")[0].split("=", 1)[1]
    assert new != held, "a login never upgrades an ID the browser already held"
    assert await api.state.authenticate_session(held) is None
    assert await api.state.authenticate_session(new) is not None
    await other.aclose()


async def test_revoke_another_device_from_the_account_page(api: Api) -> None:
    laptop, phone = api.new_client(), api.new_client()
    await page_login(laptop)
    await page_login(phone)
    account = await laptop.get("/account", headers={"User-Agent": "Firefox/130"})
    rows = re.findall(r'data-session="([0-9a-f]{16})"', account.text)
    assert len(rows) == 2
    phone_me = await phone.get("/auth/me")
    current = re.search(r'data-session="([0-9a-f]{16})">\s*<td[^>]*>[^<]*<span class="badge">this device',
                        account.text)
    assert current is not None
    phone_handle = next(h for h in rows if h != current.group(1))
    assert phone_me.status_code == 200

    no_token = await laptop.post(f"/account/sessions/{phone_handle}/revoke", data={})
    assert no_token.status_code == 403
    assert (await phone.get("/account")).status_code == 200, "a refused form changes nothing"

    done = await laptop.post(f"/account/sessions/{phone_handle}/revoke",
                             data={"csrf_token": csrf_of(account)})
    assert done.status_code == 303 and done.headers["location"] == "/account?ended=1"
    assert "Session ended." in (await laptop.get("/account?ended=1")).text

    bounced = await phone.get("/account")
    assert bounced.status_code == 303
    assert bounced.headers["location"] == "/login?next=/account&ended=1"
    assert "Your session has ended" in (await phone.get(bounced.headers["location"])).text
    assert 'authstate_session=""' in bounced.headers["set-cookie"] or \
        "Max-Age=0" in bounced.headers["set-cookie"]
    assert (await phone.get("/auth/me")).status_code == 401

    again = await laptop.post(f"/account/sessions/{phone_handle}/revoke",
                              data={"csrf_token": csrf_of(account)})
    assert again.status_code == 404
    await laptop.aclose()
    await phone.aclose()


async def test_someone_elses_handle_is_not_found(api: Api) -> None:
    await api.add_user("mallory@example.com")
    mallory = api.new_client()
    await page_login(api.client)
    await page_login(mallory, email="mallory@example.com")
    alice_handle = re.findall(r'data-session="([0-9a-f]{16})"',
                              (await api.client.get("/account")).text)[0]
    mallory_page = await mallory.get("/account")
    answer = await mallory.post(f"/account/sessions/{alice_handle}/revoke",
                                data={"csrf_token": csrf_of(mallory_page)})
    assert answer.status_code == 404
    assert (await api.client.get("/account")).status_code == 200
    await mallory.aclose()


async def test_log_out_everywhere_else_and_log_out(api: Api) -> None:
    others = [api.new_client() for _ in range(2)]
    for other in others:
        await page_login(other)
    await page_login(api.client)
    account = await api.client.get("/account")
    done = await api.client.post("/account/revoke-others", data={"csrf_token": csrf_of(account)})
    assert done.headers["location"] == "/account?revoked=2"
    after = await api.client.get("/account?revoked=2")
    assert "Logged out 2 other sessions." in after.text
    assert len(re.findall(r'data-session="', after.text)) == 1
    for other in others:
        assert (await other.get("/account")).status_code == 303
        await other.aclose()

    cross = await api.client.post("/logout", data={"csrf_token": csrf_of(after)},
                                  headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    out = await api.client.post("/logout", data={"csrf_token": csrf_of(after)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert (await api.client.get("/account")).status_code == 303


async def test_revoking_the_current_device_logs_out(api: Api) -> None:
    await page_login(api.client)
    account = await api.client.get("/account")
    handle = re.findall(r'data-session="([0-9a-f]{16})"', account.text)[0]
    done = await api.client.post(f"/account/sessions/{handle}/revoke",
                                 data={"csrf_token": csrf_of(account)})
    assert done.headers["location"] == "/login"
    assert (await api.client.get("/account")).status_code == 303


async def test_token_inspector(api: Api) -> None:
    await page_login(api.client)
    account = await api.client.get("/account")
    token_csrf = csrf_of(account)
    issued = await api.client.post("/auth/token", headers={"X-CSRF-Token": token_csrf})
    assert issued.status_code == 200, issued.text
    jwt = issued.json()["access_token"]
    form = await api.client.get("/inspect")
    assert form.status_code == 200 and 'name="token"' in form.text

    good = await api.client.post("/inspect", data={"token": f"Bearer {jwt}\n",
                                                   "csrf_token": csrf_of(form)})
    assert good.status_code == 200
    assert re.search(r'id="verdict"><span class="ok">valid', good.text)
    assert "accepts it now" in good.text and "verified with key" in good.text
    assert "&#34;sub&#34;" in good.text or '"sub"' in good.text
    assert "evaluated at" in good.text

    tampered = jwt[:-6] + ("AAAAAA" if not jwt.endswith("AAAAAA") else "BBBBBB")
    bad = await api.client.post("/inspect", data={"token": tampered, "csrf_token": csrf_of(form)})
    assert "INVALID" in bad.text and "does not accept it" in bad.text

    await api.state.revoke_token(jwt)
    revoked = await api.client.post("/inspect", data={"token": jwt, "csrf_token": csrf_of(form)})
    assert "does not accept it" in revoked.text

    malformed = await api.client.post("/inspect", data={"token": "a.b", "csrf_token": csrf_of(form)})
    assert "malformed" in malformed.text and "3 dot-separated parts" in malformed.text

    opaque, _ = await api.state.opaque.issue("u_someone")
    shown = await api.client.post("/inspect", data={"token": opaque, "csrf_token": csrf_of(form)})
    assert "opaque access token" in shown.text and "accepts it now" in shown.text
    assert opaque in shown.text  # echoed back into the textarea only, to the one who pasted it

    refused = await api.client.post("/inspect", data={"token": jwt, "csrf_token": "nope"})
    assert refused.status_code == 403


async def test_token_inspector_shows_a_jwe_header_and_escapes_hostile_claims(api: Api) -> None:
    """The page says what ``authstate inspect`` says: a JWE is unverified (its protected
    header shown), and bidi or control characters in claims are shown as escapes."""
    import json

    from authstate.jose.jws import b64url_encode

    def part(value: object) -> str:
        return b64url_encode(json.dumps(value).encode()).decode()

    await page_login(api.client)
    form = await api.client.get("/inspect")
    jwe = ".".join([part({"alg": "dir", "enc": "A128GCM", "kid": "enc-9"}), "", "AAAA",
                    "AAAA", "AAAA"])
    shown = await api.client.post("/inspect", data={"token": jwe, "csrf_token": csrf_of(form)})
    assert shown.status_code == 200
    assert re.search(r'id="verdict"><span class="bad">unverified</span>', shown.text)
    assert "A128GCM" in shown.text and "enc-9" in shown.text
    assert "cannot be decrypted or verified here" in shown.text
    claims = {"sub": "admin\u202egnp.exe"}
    hostile = f"{part({'alg': 'EdDSA'})}.{part(claims)}.AAAA"
    page = await api.client.post("/inspect", data={"token": hostile,
                                                   "csrf_token": csrf_of(form)})
    assert "\u202e" not in page.text and "\\u202e" in page.text
    assert re.search(r'id="verdict"><span class="bad">invalid', page.text)
