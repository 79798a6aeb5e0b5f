"""AuthMiddleware unchanged under Litestar: ``request.user`` and ``request.auth``.

No ``from __future__ import annotations`` here: Litestar reads handler annotations at
runtime from this module's globals.
"""

from typing import Any

import httpx
import pytest

from authstate.clock import FrozenClock
from authstate.config import Settings
from authstate.state import AuthState
from authstate.stores import open_store
from authstate.web import csrf
from authstate.web.middleware import AuthInfo, AuthMiddleware, SessionCookie

litestar = pytest.importorskip("litestar")
from litestar import Litestar, Request, get, post  # noqa: E402
from litestar.middleware import DefineMiddleware  # noqa: E402


@get("/whoami")
async def whoami(request: Request[Any, AuthInfo, Any]) -> dict[str, Any]:
    return {"user": request.user.display_name, "method": request.auth.method,
            "error": request.auth.error}


@post("/items")
async def create_item(request: Request[Any, AuthInfo, Any]) -> dict[str, Any]:
    return {"user": request.user.display_name, "error": request.auth.error}


async def test_litestar_request_user(clock: FrozenClock) -> None:
    settings = Settings.from_flat(store="memory://", dev=True, issuer="http://testserver")
    state = AuthState(settings, await open_store("memory://", clock=clock), clock=clock)
    token = csrf.new_token()
    session_id, _ = await state.sessions.create("u_carol", data={csrf.DATA_KEY: token})
    app = Litestar(
        route_handlers=[whoami, create_item],
        middleware=[DefineMiddleware(AuthMiddleware, authenticators=[SessionCookie(state)])],
    )
    cookie = {"Cookie": f"authstate_session={session_id}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert (await http.get("/whoami", headers=cookie)).json() == {
            "user": "u_carol", "method": "session", "error": None}
        assert (await http.get("/whoami")).json() == {"user": "", "method": None, "error": None}
        refused = (await http.post("/items", headers=cookie)).json()
        assert refused == {"user": "", "error": "csrf_failed"}
        allowed = (await http.post("/items", headers={**cookie, "X-CSRF-Token": token})).json()
        assert allowed == {"user": "u_carol", "error": None}
    await state.close()
