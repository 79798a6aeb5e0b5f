"""Request bodies: a size cap before anything parses them, and the media type each route takes.

``BodyLimit`` is pure ASGI: a declared ``Content-Length`` over the cap is refused before a
byte is read, and a chunked body is counted as it arrives and refused as soon as it
crosses the cap (so the cap holds whatever the client claims). The refusal is a 413
problem document. ``require_json`` and ``require_form`` turn a wrong ``Content-Type``
into a 415 problem instead of a confusing validation error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from fastapi import Request
from starlette.exceptions import HTTPException

from authstate.web.problems import OAuthError, Problem, problem_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLarge(HTTPException):
    """Raised from ``receive`` mid-body; an HTTPException so that the framework's own
    body-reading code passes it through and the 413 handler answers."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is limited to {max_bytes} bytes")


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413, "body_too_large", f"the request body is limited to {self.max_bytes} bytes",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def require_json(request: Request) -> None:
    """Dependency: the body, if any, must be JSON."""
    media = _media_type(request)
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    if not media and request.headers.get("content-length") in (None, "0"):
        return
    raise Problem(415, "unsupported_media_type", "send the body as application/json")


async def require_form(request: Request) -> None:
    """Dependency for the OAuth endpoints (RFC 6749 §3.2: form-encoded), whose
    parameters "MUST NOT be included more than once" (RFC 6749 §3.1, §3.2): a repeated
    one is refused rather than resolved (last wins would let a proxy and this service
    read two different requests)."""
    if _media_type(request) != "application/x-www-form-urlencoded":
        raise OAuthError(
            "invalid_request", "send the body as application/x-www-form-urlencoded"
        )
    form = await request.form(max_files=0)
    repeated = repeated_names(form.multi_items())
    if repeated:
        raise OAuthError("invalid_request",
                         f"parameter sent more than once: {repeated[0][:64]}")


def repeated_names(items: Iterable[tuple[str, object]]) -> list[str]:
    """The parameter names that occur more than once, in order."""
    seen: set[str] = set()
    repeated: list[str] = []
    for name, _ in items:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    return repeated
