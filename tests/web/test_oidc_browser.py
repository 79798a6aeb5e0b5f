"""OpenID Connect in a real browser (headless Chromium via Playwright, JavaScript off)
against a live ``authstate serve``: the code flow with ``openid`` through the login
page gives an ID token; RP-initiated logout without a hint asks for confirmation (a
CSRF-protected form), and with the ID token as hint ends the session at once; both go
back to the registered post-logout URI with ``state``."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.web import test_browser as pages_browser
from tests.web.live_service import PASSWORD, LiveService, live_service
from tests.web.test_browser import EMAIL, SHOTS, TIMEOUT_MS, _need_chromium
from tests.web.test_oauth_browser import _authorize_url, _exchange

browser = pages_browser.browser

pytestmark = pytest.mark.slow


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LiveService]:
    _need_chromium()
    with live_service(tmp_path) as running:
        running.seed(lambda state: state.users.create(EMAIL, PASSWORD))
        yield running


async def _sessions(service: LiveService) -> int:
    async def count(state: object) -> int:
        from authstate.state import AuthState

        assert isinstance(state, AuthState)
        user = await state.find_user(EMAIL)
        return len(await state.sessions.for_user(user.id))

    result: int = await service.aseed(count)
    return result


async def test_code_flow_and_rp_initiated_logout(service: LiveService, browser: object) -> None:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    redirect = f"http://localhost:{service.port}/healthz"
    after = f"http://localhost:{service.port}/healthz?after=logout"
    app, secret = await service.aseed(lambda s: s.add_client(
        "oidc app", redirect_uris=(redirect,), first_party=True,
        post_logout_redirect_uris=(after,)))
    assert secret is not None
    context = await browser.new_context(java_script_enabled=False)
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()

    async def sign_in() -> dict[str, str]:
        verifier = secrets.token_urlsafe(48)
        await page.goto(_authorize_url(service, app.id, redirect, verifier))
        if "/login" in page.url:
            await page.fill("#email", EMAIL)
            await page.fill("#password", PASSWORD)
            await page.click("button[type=submit]")
        await expect(page).to_have_url(re.compile(re.escape(redirect) + r"\?code="))
        token = _exchange(service, app.id, secret, redirect, page.url, verifier)
        assert token.status_code == 200, token.text
        body: dict[str, str] = token.json()
        assert body["id_token"].count(".") == 2
        return body

    await sign_in()
    assert await _sessions(service) == 1
    # no hint: the user is asked, and the form carries the CSRF token
    await page.goto(service.url + "/oauth/logout?" + urlencode({
        "client_id": app.id, "post_logout_redirect_uri": after, "state": "s-2"}))
    await expect(page.get_by_role("heading")).to_have_text("Log out?")
    await page.screenshot(path=str(SHOTS / "authstate-oidc-logout.png"), full_page=True)
    assert await _sessions(service) == 1
    await page.click("button[value=logout]")
    await expect(page).to_have_url(after + "&state=s-2")
    assert await _sessions(service) == 0

    # with the ID token of this browser's session as hint: ended at once, no page
    tokens = await sign_in()
    assert await _sessions(service) == 1
    await page.goto(service.url + "/oauth/logout?" + urlencode({
        "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": after, "state": "s-3"}))
    await expect(page).to_have_url(after + "&state=s-3")
    assert await _sessions(service) == 0
    await context.close()
