"""The session cookie: one name, one set of attributes, set and cleared in one place.

HttpOnly (scripts cannot read it), SameSite=Lax (not sent on cross-site subrequests or
POSTs), Path=/. Outside development mode it is also ``Secure`` and named with the
``__Host-`` prefix, which browsers accept only from a secure origin, with ``Path=/`` and
no ``Domain`` (RFC 6265bis §4.1.3.2): a sibling subdomain cannot plant or shadow it.
In development mode (plain HTTP on localhost) it has neither, and ``serve`` warns.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.responses import Response

from authstate.config import Settings

HOST_PREFIX = "__Host-"


def session_cookie_name(settings: Settings) -> str:
    name = settings.sessions.cookie_name
    return name if settings.service.dev else HOST_PREFIX + name


def read_session_id(connection: HTTPConnection, settings: Settings) -> str | None:
    return connection.cookies.get(session_cookie_name(settings)) or None


def set_session_cookie(
    response: Response, session_id: str, settings: Settings, *, max_age: int
) -> None:
    """Set the cookie for ``max_age`` seconds (the session's absolute lifetime)."""
    response.set_cookie(
        session_cookie_name(settings),
        session_id,
        max_age=max_age,
        path="/",
        secure=not settings.service.dev,
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        session_cookie_name(settings),
        path="/",
        secure=not settings.service.dev,
        httponly=True,
        samesite="lax",
    )
