"""SessionMiddleware under Litestar: ``request.session`` reads ``scope["session"]``.

No ``from __future__ import annotations`` here: Litestar reads handler annotations at
runtime from this module's globals.
"""

from typing import Any

import httpx
import pytest

from authstate.clock import FrozenClock
from authstate.sessions import KIND
from authstate.state import AuthState
from authstate.stores import open_store
from authstate.web.session_middleware import SessionMiddleware
from tests.web.api import api_settings

litestar = pytest.importorskip("litestar")
from litestar import Litestar, Request, get, post  # noqa: E402
from litestar.middleware import DefineMiddleware  # noqa: E402


@get("/read")
async def read(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return dict(request.session)


@post("/write")
async def write(request: Request[Any, Any, Any]) -> dict[str, Any]:
    request.session.update(await request.json())
    return dict(request.session)


async def test_litestar_request_session(clock: FrozenClock) -> None:
    store = await open_store("memory://", clock=clock)
    state = AuthState(api_settings(dev=True), store, clock=clock)
    await state.start()
    try:
        app = Litestar([read, write],
                       middleware=[DefineMiddleware(SessionMiddleware, state=state)])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            assert (await c.get("/read")).json() == {}
            assert await store.scan(KIND) == []
            assert (await c.post("/write", json={"a": 1})).json() == {"a": 1}
            assert (await c.get("/read")).json() == {"a": 1}
            assert len(await store.scan(KIND)) == 1
    finally:
        await state.close()
