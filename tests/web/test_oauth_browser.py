"""The code flow in a real browser (Debian's headless Chromium, JavaScript off, driven by
Playwright) against a live ``authstate serve``: the login page, then a first-party app
gets its code with no question; a third-party app's consent page, Allow, its code. The
app's redirect URI is on another origin (``localhost`` vs ``127.0.0.1``), so this also
proves that CSP ``form-action`` lets the login and consent forms end at the app.
Screenshots go to /tmp (``authstate-oauth-*.png``)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.web import test_browser as pages_browser
from tests.web.live_service import PASSWORD, LiveService, live_service
from tests.web.test_browser import EMAIL, SHOTS, TIMEOUT_MS, _need_chromium

browser = pages_browser.browser  # the same Chromium fixture as the pages' browser test

pytestmark = pytest.mark.slow


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LiveService]:
    _need_chromium()
    with live_service(tmp_path) as running:
        running.seed(lambda state: state.users.create(EMAIL, PASSWORD))
        yield running


def _authorize_url(service: LiveService, client_id: str, redirect: str, verifier: str) -> str:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return service.url + "/oauth/authorize?" + urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect,
        "scope": "openid", "state": "s-1", "code_challenge": challenge,
        "code_challenge_method": "S256"})


def _exchange(service: LiveService, client_id: str, secret: str, redirect: str, url: str,
              verifier: str) -> httpx.Response:
    answer = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert answer["state"] == "s-1" and answer["iss"] == service.url
    return httpx.post(f"{service.url}/oauth/token", auth=(client_id, secret), data={
        "grant_type": "authorization_code", "code": answer["code"], "redirect_uri": redirect,
        "code_verifier": verifier})


async def test_code_flow_through_login_and_consent_pages(service: LiveService, browser: object) -> None:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    redirect = f"http://localhost:{service.port}/healthz"  # another origin that answers
    own, own_secret = await service.aseed(lambda s: s.add_client("own app", redirect_uris=(redirect,), first_party=True))
    other, other_secret = await service.aseed(lambda s: s.add_client("other app", redirect_uris=(redirect,)))
    context = await browser.new_context(java_script_enabled=False)
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()

    verifier = secrets.token_urlsafe(48)
    await page.goto(_authorize_url(service, own.id, redirect, verifier))
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.fill("#email", EMAIL)
    await page.fill("#password", PASSWORD)
    await page.screenshot(path=str(SHOTS / "authstate-oauth-login.png"), full_page=True)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(re.compile(re.escape(redirect) + r"\?code="))
    token = _exchange(service, own.id, own_secret, redirect, page.url, verifier)
    assert token.status_code == 200 and token.json()["scope"] == "openid", token.text

    verifier = secrets.token_urlsafe(48)
    await page.goto(_authorize_url(service, other.id, redirect, verifier))  # logged in: no login
    await expect(page.get_by_role("heading")).to_have_text("Allow other app?")
    await page.screenshot(path=str(SHOTS / "authstate-oauth-consent.png"), full_page=True)
    await page.click("button[value=allow]")
    await expect(page).to_have_url(re.compile(re.escape(redirect) + r"\?code="))
    token = _exchange(service, other.id, other_secret, redirect, page.url, verifier)
    assert token.status_code == 200, token.text
    await context.close()
