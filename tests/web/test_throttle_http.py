"""The login throttle over HTTP, on every store: parallel wrong passwords sent at once to
``/auth/login`` and to the password grant on ``/oauth/token`` reach argon2 at most
``limit`` times; the rest, and then the right password, are 429 with ``Retry-After``
until the window ends."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from authstate.clock import FrozenClock
from authstate.state import AuthState
from authstate.stores import Store, open_store
from authstate.web.app import create_app
from tests.support import RedisServer
from tests.test_throttle import WINDOW_START, CountingHasher
from tests.web.api import BASE, PASSWORD, Api, api_settings

EMAIL = "hana@example.com"
GUESSES = 24


@asynccontextmanager
async def service_on(store: Store, clock: FrozenClock, **overrides: Any) -> AsyncIterator[Api]:
    """The HTTP service on the test's store, its password checks counted."""
    state = AuthState(api_settings(push_revocation=False, **overrides), store, clock=clock)
    state.passwords = state.users.hasher = CountingHasher(
        time_cost=1, memory_kib=1024, parallelism=1
    )
    await state.start()
    try:
        transport = httpx.ASGITransport(app=create_app(state))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield Api(state, client, transport)
    finally:
        await state.revocation.close()  # the store fixture closes the store


def checked(api: Api) -> int:
    hasher = api.state.users.hasher
    assert isinstance(hasher, CountingHasher)
    return hasher.verified


async def login(api: Api, password: str) -> httpx.Response:
    return await api.client.post("/auth/login", json={"email": EMAIL, "password": password})


async def grant(api: Api, password: str) -> httpx.Response:
    return await api.client.post(
        "/oauth/token", data={"grant_type": "password", "username": EMAIL, "password": password}
    )


async def test_parallel_logins_are_bounded_then_429_until_the_window_ends(
    store: Store, clock: FrozenClock
) -> None:
    clock.set(WINDOW_START + 100)
    async with service_on(store, clock) as api:
        await api.add_user(EMAIL)
        limit = api.state.throttle.account_limit
        before = checked(api)
        answers = await asyncio.gather(*(login(api, f"wrong {n}") for n in range(GUESSES)))
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [401] * limit + [429] * (GUESSES - limit)
        assert checked(api) - before == limit
        for refused in (r for r in answers if r.status_code == 429):
            assert refused.headers["retry-after"] == "800"
            assert refused.json()["code"] == "throttled"

        right = await login(api, PASSWORD)
        assert right.status_code == 429 and right.headers["retry-after"] == "800"
        assert "set-cookie" not in right.headers
        clock.advance(799)
        assert (await login(api, PASSWORD)).headers["retry-after"] == "1"
        clock.advance(1)
        assert (await login(api, PASSWORD)).status_code == 200


async def test_parallel_password_grants_are_bounded_then_429_until_the_window_ends(
    store: Store, clock: FrozenClock
) -> None:
    clock.set(WINDOW_START)
    async with service_on(store, clock) as api:
        await api.add_user(EMAIL)
        limit = api.state.throttle.account_limit
        before = checked(api)
        answers = await asyncio.gather(*(grant(api, f"wrong {n}") for n in range(GUESSES)))
        assert sorted(r.status_code for r in answers) == [400] * limit + [429] * (GUESSES - limit)
        assert checked(api) - before == limit
        for refused in (r for r in answers if r.status_code == 429):
            body = refused.json()
            assert body["error"] == "invalid_request" and body["error_description"]
            assert refused.headers["retry-after"] == "900"
            assert refused.headers["cache-control"] == "no-store"

        right = await grant(api, PASSWORD)
        assert right.status_code == 429 and "access_token" not in right.json()
        clock.advance(900)
        assert "access_token" in (await grant(api, PASSWORD)).json()


async def test_parallel_logins_across_accounts_are_bounded_per_ip(
    store: Store, clock: FrozenClock
) -> None:
    clock.set(WINDOW_START)
    async with service_on(store, clock, throttle_ip_limit=7) as api:
        before = checked(api)
        answers = await asyncio.gather(*(
            api.client.post("/auth/login", json={"email": f"u{n}@example.com", "password": "x" * 9})
            for n in range(GUESSES)
        ))
        assert sorted(r.status_code for r in answers) == [401] * 7 + [429] * (GUESSES - 7)
        assert checked(api) - before == 7


async def test_parallel_page_logins_are_bounded_then_429(store: Store, clock: FrozenClock) -> None:
    clock.set(WINDOW_START)
    async with service_on(store, clock) as api:
        await api.add_user(EMAIL)
        form = await api.client.get("/login")
        found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert found is not None, form.text
        before = checked(api)
        answers = await asyncio.gather(*(
            api.client.post("/login", data={"email": EMAIL, "password": f"wrong {n}",
                                            "csrf_token": found.group(1)})
            for n in range(GUESSES)
        ))
        assert sorted(r.status_code for r in answers) == [401] * 5 + [429] * (GUESSES - 5)
        assert checked(api) - before == 5
        refused = next(r for r in answers if r.status_code == 429)
        assert refused.headers["retry-after"] == "900" and "Too many failed attempts" in refused.text


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
async def test_a_store_outage_refuses_logins_before_the_password_check(
    redis_server: RedisServer, clock: FrozenClock
) -> None:
    """The throttle cannot count, so nobody gets to guess: 503, never a password check."""
    store = await open_store(redis_server.url, clock=clock, namespace="throttle_outage")
    try:
        async with service_on(store, clock) as api:
            await api.add_user(EMAIL)
            before = checked(api)
            redis_server.stop()
            answers = await asyncio.gather(*(login(api, f"wrong {n}") for n in range(6)),
                                           login(api, PASSWORD), grant(api, PASSWORD))
            assert [r.status_code for r in answers] == [503] * 8
            assert all("retry-after" in r.headers for r in answers[:7])
            assert "access_token" not in answers[7].json()
            assert checked(api) == before
    finally:
        await store.close()
