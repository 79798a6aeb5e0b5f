"""The session cookie: one name, one set of attributes, set and cleared in one place.

HttpOnly (scripts cannot read it), SameSite=Lax (not sent on cross-site subrequests or
POSTs), Path=/. Outside development mode it is also ``Secure`` and named with the
``__Host-`` prefix, which browsers accept only from a secure origin, with ``Path=/`` and
no ``Domain`` (RFC 6265bis §4.1.3.2): a sibling subdomain cannot plant or shadow it.
In development mode (plain HTTP on localhost) it has neither, and ``serve`` warns.

The header itself is written by ``authstate.authn.session_cookie`` (framework-free, so
the session middleware sends the very same cookie). Reading a cookie is
``authstate.authn``'s (``Credentials.cookie``, the first of a name wins), the same
parsing the ASGI middleware does; its name is ``session_cookie_name``.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.responses import Response

from authstate.authn import HOST_PREFIX, Credentials, session_cookie, session_cookie_name
from authstate.config import Settings

__all__ = [
    "HOST_PREFIX", "clear_session_cookie", "read_cookie", "read_session_id",
    "session_cookie_name", "set_session_cookie",
]


def read_cookie(connection: HTTPConnection, name: str) -> str | None:
    """The value of the cookie ``name`` (the first of that name), or None."""
    return Credentials(connection.scope).cookie(name) or None


def read_session_id(connection: HTTPConnection, settings: Settings) -> str | None:
    return read_cookie(connection, session_cookie_name(settings))


def set_session_cookie(
    response: Response, session_id: str, settings: Settings, *, max_age: int
) -> None:
    """Set the cookie for ``max_age`` seconds (the session's absolute lifetime)."""
    header = session_cookie(settings, session_id, max_age=max_age)
    response.raw_headers.append((b"set-cookie", header))


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.raw_headers.append((b"set-cookie", session_cookie(settings, None)))
