"""Support for the HTTP API tests (not a test module): an app on a fresh memory store,
driven through httpx's ASGI transport, plus small helpers that log in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from authstate.clock import Clock
from authstate.config import Settings
from authstate.state import AuthState
from authstate.users import User
from authstate.web.app import create_app

PASSWORD = "correct horse battery staple"
FAST_PASSWORDS = {"password_time_cost": 1, "password_memory_kib": 1024, "password_parallelism": 1}
BASE = "http://testserver"


def api_settings(**overrides: Any) -> Settings:
    # plain http://testserver: development mode, asked for (the default is off). The key
    # algorithm is pinned to EdDSA (a key in 0.05 ms, where the default RS256 takes ~60 ms
    # of prime search per app); ``key_algorithm=None`` leaves the default, for the tests
    # that are about it.
    values: dict[str, Any] = {"store": "memory://", "issuer": BASE, "dev": True,
                              "key_algorithm": "EdDSA", **FAST_PASSWORDS}
    values.update(overrides)
    if values["key_algorithm"] is None:
        del values["key_algorithm"]
    return Settings.from_flat(**values)




@dataclass
class Api:
    state: AuthState
    client: httpx.AsyncClient
    transport: httpx.ASGITransport

    async def add_user(self, email: str, password: str = PASSWORD, *, admin: bool = False) -> User:
        return await self.state.users.create(email, password, admin=admin)

    def new_client(self, *, base_url: str | None = None) -> httpx.AsyncClient:
        """Another browser: its own cookie jar, the same app."""
        return httpx.AsyncClient(transport=self.transport, base_url=base_url or str(self.client.base_url))

    async def login(
        self, email: str, password: str = PASSWORD, *, client: httpx.AsyncClient | None = None
    ) -> str:
        """Log ``client`` in; its CSRF token."""
        response = await (client or self.client).post(
            "/auth/login", json={"email": email, "password": password}
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["csrf_token"]
        return token


def plant_cookie(client: httpx.AsyncClient, value: str, name: str = "authstate_session") -> None:
    """Replace the client's session cookie, as a browser (or an attacker) would hold it."""
    client.cookies.clear()
    client.cookies.set(name, value, domain=(client.base_url.host or "") + ".local", path="/")


@asynccontextmanager
async def running(
    *, clock: Clock | None = None, base_url: str = BASE, raise_app_exceptions: bool = True,
    **overrides: Any,
) -> AsyncIterator[Api]:
    state = await AuthState.open(api_settings(**overrides), clock=clock)
    try:
        app = create_app(state)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield Api(state, client, transport)
    finally:
        await state.close()
