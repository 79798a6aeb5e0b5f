"""The same orders API on Litestar: authstate's ASGI middleware runs unchanged.

``request.user`` is the middleware's ``AuthUser`` and ``request.auth`` its ``AuthInfo``;
a guard says which routes need a caller. Run it like the FastAPI example (see
``examples/fastapi_app.py`` for starting the service and getting a token)::

    pip install litestar        # part of authstate's dev extra
    uvicorn examples.litestar_app:app --port 8002

No ``from __future__ import annotations`` here: Litestar reads the handlers'
annotations at runtime.
"""

import os
from typing import Any

from litestar import Litestar, Request, get
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import DefineMiddleware

from authstate.web.middleware import (
    AuthInfo,
    AuthMiddleware,
    AuthUser,
    bearer_challenge,
    trusting,
)


def logged_in(connection: ASGIConnection[Any, AuthUser, AuthInfo, Any], _: BaseRouteHandler) -> None:
    """A guard: the caller must be authenticated; a bad credential says so (RFC 6750)."""
    if connection.user.is_authenticated:
        return
    error = "invalid_token" if connection.auth.error == "invalid_token" else None
    raise NotAuthorizedException(headers={"WWW-Authenticate": bearer_challenge(error)})


def scoped(*needed: str) -> Any:
    def guard(connection: ASGIConnection[Any, AuthUser, AuthInfo, Any], handler: BaseRouteHandler) -> None:
        logged_in(connection, handler)
        if not set(needed) <= set(connection.auth.scopes):
            raise PermissionDeniedException("insufficient scope")

    return guard


@get("/")
async def greeting(request: Request[AuthUser, AuthInfo, Any]) -> dict[str, str]:
    return {"hello": request.user.display_name or "stranger"}


@get("/me", guards=[logged_in])
async def me(request: Request[AuthUser, AuthInfo, Any]) -> dict[str, Any]:
    identity = request.user.identity
    assert identity is not None
    return {"user": identity.user_id, "method": identity.method, "scope": list(identity.scope)}


@get("/orders", guards=[scoped("orders:read")])
async def orders(request: Request[AuthUser, AuthInfo, Any]) -> dict[str, Any]:
    return {"user": request.user.display_name, "orders": []}


def create_app(
    auth_url: str,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    issuer: str | None = None,
    audience: str = "authstate",
) -> Litestar:
    authenticators = trusting(auth_url, client_id=client_id, client_secret=client_secret,
                              issuer=issuer, audience=audience)
    return Litestar(
        route_handlers=[greeting, me, orders],
        middleware=[DefineMiddleware(AuthMiddleware, authenticators=authenticators)],
        on_shutdown=[a.aclose for a in authenticators],
    )


app = create_app(
    os.environ.get("AUTHSTATE_URL", "http://127.0.0.1:8000").rstrip("/"),
    client_id=os.environ.get("AUTHSTATE_CLIENT_ID"),
    client_secret=os.environ.get("AUTHSTATE_CLIENT_SECRET"),
    issuer=os.environ.get("AUTHSTATE_ISSUER"),
)
