"""Who is calling, for any ASGI app: a pure ASGI middleware with no framework import.

``AuthMiddleware(app, authenticators=[...])`` reads the request's headers from the scope,
asks ``authstate.authn`` (the one authentication path, which the service's own API and
pages run too) and puts the verdict on ``scope``: ``scope["user"]`` (an ``AuthUser``,
what Starlette's and Litestar's ``request.user`` return) and ``scope["auth"]`` (an
``AuthInfo`` whose ``scopes`` is what Starlette's ``@requires`` reads). A request with
no credential, or only bad ones, passes through as the anonymous user: the app decides
what needs a login (``web/dependencies.py`` for FastAPI). ``AuthInfo.error`` says why a
presented credential was not accepted, in one word per HTTP answer, never which check
failed (unknown, expired and revoked look the same to the caller).

One exception: a credential that could not be checked because the store, the bus, the
keys or the introspection endpoint did not answer (and no other credential succeeded)
is answered here, with 503, ``Retry-After`` and an RFC 9457 problem detail (a WebSocket
is closed with 1013, "try again later"). Passing it on as anonymous would let the app
treat an outage as a logout (a login redirect, a cleared cookie); the middleware never
sets or clears a cookie itself, so the browser keeps its session for when the store is
back.

The authenticators (defined in ``authstate.authn``, importable from here):

- ``SessionCookie(state)``: the session cookie, looked up through ``AuthState``. An
  unsafe method (POST, PUT, PATCH, DELETE) authenticated this way must carry the
  session's CSRF token in ``X-CSRF-Token`` and, where the browser says, come from the
  same origin; otherwise the cookie does not count (``error="csrf_failed"``).
- ``BearerJWT(state)``: a compact JWT verified with the service's own keys;
  ``BearerJWT.from_jwks(url, ...)`` verifies with the keys another service publishes.
- ``BearerOpaque(state)``: an opaque access token looked up in the store.
- ``Introspection(url, client_id=..., client_secret=...)``: any Bearer token, asked of an
  RFC 7662 endpoint (``authstate serve``'s ``/oauth/introspect``).

``trusting(auth_url, ...)`` is the usual pair for another service: ``BearerJWT.from_jwks``
and, given a client's credentials, ``Introspection``, both at a running ``authstate serve``.

They are tried in the order the app gives, and a bad credential does not end the search:
a stale cookie beside a good bearer token (or the reverse) authenticates by the good one,
and the CSRF rule still holds for a cookie. ``bearer_decides=True`` applies the service's
own rule instead: a request presenting a bearer credential is judged by it alone.

The per-request path reads the headers once, lazily; a session costs one store read,
or none while push revocation is live and the session is hot (``sessions.SessionCache``:
every change to a session drops the copy everywhere through the bus), a JWT a verify
whose result ``AuthState`` caches, with revocation checked in memory.
``benchmarks/middleware_throughput.py`` measures both against no authentication.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from authstate.authn import (
    AUTHENTICATED,
    BEARER_MAX,
    REALM,
    SAFE_METHODS,
    TOKEN68,
    Authentication,
    Authenticator,
    AuthInfo,
    BearerJWT,
    BearerOpaque,
    Credentials,
    Failure,
    Introspection,
    SessionCookie,
    bearer_challenge,
    trusting,
)
from authstate.identity import Identity
from authstate.web.statuses import PROBLEM_JSON, PROBLEM_TYPE, RETRY_AFTER, problem_body

__all__ = [
    "ANONYMOUS", "AUTHENTICATED", "BEARER_MAX", "PROBLEM_JSON", "PROBLEM_TYPE", "REALM",
    "RETRY_AFTER", "SAFE_METHODS", "TOKEN68", "AuthInfo", "AuthMiddleware", "AuthUser",
    "Authenticator", "BearerJWT", "BearerOpaque", "Credentials", "Failure", "Introspection",
    "SessionCookie", "bearer_challenge", "problem_body", "trusting", "unavailable",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AuthUser:
    """What ``request.user`` holds: Starlette's ``BaseUser`` interface, without Starlette."""

    __slots__ = ("identity",)

    def __init__(self, identity: Identity | None) -> None:
        self.identity = identity

    @property
    def is_authenticated(self) -> bool:
        return self.identity is not None

    @property
    def display_name(self) -> str:
        return self.identity.user_id if self.identity is not None else ""

    @property
    def identifier(self) -> str:
        return self.display_name

    def __repr__(self) -> str:
        return f"AuthUser({self.display_name or 'anonymous'})"


ANONYMOUS = AuthUser(None)


class AuthMiddleware:
    """Authenticate every HTTP and WebSocket request; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticators: Sequence[Authenticator],
        bearer_decides: bool = False,
    ) -> None:
        if not authenticators:
            raise ValueError("AuthMiddleware needs at least one authenticator")
        self.app = app
        self.authentication = Authentication(authenticators, bearer_decides=bearer_decides)
        self.authenticators = self.authentication.authenticators

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            credentials = Credentials(scope)
            # a hot session: the same verdict without an await (not tried for a bearer
            # token, see decided_now)
            info = self.authentication.decided_now(credentials, bearer=False)
            if info is None:
                info = await self.authentication(credentials)
            user = AuthUser(info.identity) if info.identity is not None else ANONYMOUS
            if info.error == "unavailable":
                await unavailable(scope, send, info.cause or "store_unavailable")
                return
            scope["user"] = user
            scope["auth"] = info
        await self.app(scope, receive, send)

    async def authenticate(self, scope: Scope) -> tuple[AuthUser, AuthInfo]:
        """The caller behind this request, as ``(scope["user"], scope["auth"])``."""
        credentials = Credentials(scope)
        info = self.authentication.decided_now(credentials, bearer=False)
        if info is None:
            info = await self.authentication(credentials)
        return (AuthUser(info.identity) if info.identity is not None else ANONYMOUS), info


async def unavailable(scope: Scope, send: Send, code: str) -> None:
    """Fail closed while a backing service is down: 503 with ``Retry-After`` and a
    problem detail, and no ``Set-Cookie`` (the session outlives the outage); a WebSocket
    is closed with 1013 (RFC 6455 §7.4.2 registry: try again later)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1013})
        return
    body = problem_body(503, code, "Service unavailable",
                        "authentication is unavailable; try again shortly")
    await send({
        "type": "http.response.start",
        "status": 503,
        "headers": [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER).encode()),
            (b"cache-control", b"no-store"),
        ],
    })
    await send({"type": "http.response.body", "body": body})
