"""Binds each request's origin (client IP, user agent) for the audit trail.

Pure ASGI, so it works in front of any app. Every audit event recorded while the request
is served, however deep in the core, then carries where it came from; the caller
dependency adds the actor once it knows who is calling. The binding is undone when the
request ends, so nothing leaks into the next request or into a test's own context.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from authstate.audit import bind_origin, reset_origin
from authstate.sessions import USER_AGENT_MAX  # the one bound on a kept User-Agent

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AuditOrigin:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        agent = next(
            (v for k, v in scope.get("headers", ()) if k == b"user-agent"), None
        )
        token = bind_origin(
            ip=str(client[0]) if client else None,
            user_agent=agent[:USER_AGENT_MAX].decode("latin-1") if agent else None,
        )
        try:
            await self.app(scope, receive, send)
        finally:
            reset_origin(token)
