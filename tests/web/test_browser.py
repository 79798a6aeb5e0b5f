"""The pages in a real browser: Debian's headless Chromium driven by Playwright.

Two browser contexts (two devices, JavaScript off in both) log in to a real
``authstate serve``; one revokes the other from its account page, and the revoked one
lands on the login page at its next navigation. Every page is screenshotted to /tmp
(``authstate-page-*.png``) for a human to look at.

Skipped when /usr/bin/chromium is missing, except under AUTHSTATE_REQUIRE_SERVICES=1
(CI), where it fails: CI installs Debian's ``chromium``.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.web.live_service import PASSWORD, LiveService, live_service

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SHOTS = Path("/tmp")
EMAIL = "alice@example.com"
TIMEOUT_MS = 15_000

pytestmark = pytest.mark.slow


def _need_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing; install Debian's chromium: apt-get install -y chromium"
    if os.environ.get("AUTHSTATE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"AUTHSTATE_REQUIRE_SERVICES=1 but {message}")
    pytest.skip(message)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LiveService]:
    _need_chromium()
    with live_service(tmp_path) as running:
        running.seed(lambda state: state.users.create(EMAIL, PASSWORD))
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    _need_chromium()
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


async def _login(page: object, service: LiveService, shot: str | None = None) -> None:
    from playwright.async_api import Page, expect

    assert isinstance(page, Page)
    await page.goto(service.url + "/account")
    await expect(page).to_have_url(re.compile(r"/login\?next=/account(&ended=1)?$"))
    await page.fill("#email", EMAIL)
    await page.fill("#password", PASSWORD)
    if shot:
        await page.screenshot(path=str(SHOTS / shot), full_page=True)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(service.url + "/account")


async def test_revoked_device_lands_on_the_login_page(
    service: LiveService, browser: object
) -> None:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    laptop = await browser.new_context(
        java_script_enabled=False, viewport={"width": 1000, "height": 640},
        user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36",
    )
    phone = await browser.new_context(
        java_script_enabled=False, viewport={"width": 1000, "height": 640},
        user_agent="Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/130.0 Mobile Safari/537.36",
    )
    laptop.set_default_timeout(TIMEOUT_MS)
    phone.set_default_timeout(TIMEOUT_MS)
    on_laptop, on_phone = await laptop.new_page(), await phone.new_page()

    await _login(on_laptop, service, shot="authstate-page-login.png")
    await _login(on_phone, service)

    await on_laptop.goto(service.url + "/account")
    rows = on_laptop.locator("tr[data-session]")
    await expect(rows).to_have_count(2)
    await expect(on_laptop.locator("tr", has_text="this device")).to_contain_text("Linux")
    await on_laptop.screenshot(path=str(SHOTS / "authstate-page-account.png"), full_page=True)

    other = on_laptop.locator("tr[data-session]", has_text="Android")
    await expect(other).not_to_contain_text("this device")
    await other.get_by_role("button", name="Revoke").click()
    await expect(on_laptop).to_have_url(service.url + "/account?ended=1")
    await expect(on_laptop.locator("[role=status]")).to_have_text("Session ended.")
    await expect(rows).to_have_count(1)
    await on_laptop.screenshot(path=str(SHOTS / "authstate-page-account-revoked.png"),
                               full_page=True)

    await on_phone.goto(service.url + "/account")
    await expect(on_phone).to_have_url(service.url + "/login?next=/account&ended=1")
    await expect(on_phone.get_by_role("heading", name="Log in")).to_be_visible()
    await expect(on_phone.locator("[role=status]")).to_contain_text("session has ended")
    await on_phone.screenshot(path=str(SHOTS / "authstate-page-login-after-revoke.png"),
                              full_page=True)
    phone_cookies = {c["name"] for c in await phone.cookies()}
    assert "authstate_session" not in phone_cookies, "the dead cookie is cleared too"

    # the token inspector, with a token the laptop's session exchanges for
    me = await laptop.request.get(service.url + "/auth/me")
    csrf = (await me.json())["csrf_token"]
    issued = await laptop.request.post(service.url + "/auth/token",
                                       headers={"X-CSRF-Token": csrf})
    token = (await issued.json())["access_token"]
    await on_laptop.goto(service.url + "/inspect")
    await on_laptop.fill("#token", token)
    await on_laptop.get_by_role("button", name="Inspect").click()
    await expect(on_laptop.locator("#verdict")).to_contain_text("valid")
    await expect(on_laptop.locator("#accepted")).to_contain_text("accepts it now")
    await expect(on_laptop.locator("#claims")).to_contain_text('"sub"')
    await on_laptop.screenshot(path=str(SHOTS / "authstate-page-inspect.png"), full_page=True)

    # log out everywhere else, then log out
    await _login(on_phone, service)
    await on_laptop.goto(service.url + "/account")
    await expect(rows).to_have_count(2)
    await on_laptop.get_by_role("button", name="Log out everywhere else").click()
    await expect(on_laptop.locator("[role=status]")).to_have_text("Logged out 1 other session.")
    await on_phone.reload()
    await expect(on_phone).to_have_url(re.compile(r"/login"))
    await on_laptop.get_by_role("button", name="Log out", exact=True).first.click()
    await expect(on_laptop).to_have_url(service.url + "/login")
    await laptop.close()
    await phone.close()
