"""FastAPI dependencies over ``AuthMiddleware``: the route says what it needs, the
middleware has already said who is calling.

``CurrentIdentity`` (or ``Depends(require_identity)``) answers 401 with a
``WWW-Authenticate`` challenge (RFC 6750 §3) when nobody is and 403 when a cookie-
authenticated change failed the CSRF check (a store or upstream that did not answer is
already a 503 from the middleware, which never lets the request reach the route);
``require_scopes("orders:read")`` adds RFC 6750's ``insufficient_scope`` 403.
``optional_identity`` is for routes that serve everyone but greet the logged-in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection

from authstate.identity import Identity
from authstate.web.middleware import RETRY_AFTER, AuthInfo, bearer_challenge


def _auth(connection: HTTPConnection) -> AuthInfo:
    info = connection.scope.get("auth")
    if not isinstance(info, AuthInfo):
        raise RuntimeError("require_identity needs authstate's AuthMiddleware on the app")
    return info


async def optional_identity(connection: HTTPConnection) -> Identity | None:
    """The caller's identity, or None for the anonymous."""
    return _auth(connection).identity


async def require_identity(connection: HTTPConnection) -> Identity:
    """The caller's identity, or the HTTP answer that says why there is none."""
    info = _auth(connection)
    if info.identity is not None:
        return info.identity
    if info.error == "csrf_failed":
        raise HTTPException(403, "the CSRF check failed")
    if info.error == "unavailable":
        raise HTTPException(503, "authentication is unavailable",
                            headers={"Retry-After": str(RETRY_AFTER)})
    error = "invalid_token" if info.error == "invalid_token" and info.bearer else None
    raise HTTPException(
        401, "authentication required", headers={"WWW-Authenticate": bearer_challenge(error)}
    )


def require_scopes(*scopes: str) -> Callable[[HTTPConnection], Awaitable[Identity]]:
    """A dependency that also needs every one of ``scopes`` on the caller's token."""
    needed = tuple(scopes)

    async def dependency(connection: HTTPConnection) -> Identity:
        identity = await require_identity(connection)
        if not set(needed) <= set(identity.scope):
            raise HTTPException(
                403,
                "insufficient scope",
                headers={"WWW-Authenticate": bearer_challenge("insufficient_scope", needed)},
            )
        return identity

    return dependency


CurrentIdentity = Annotated[Identity, Depends(require_identity)]
MaybeIdentity = Annotated[Identity | None, Depends(optional_identity)]
