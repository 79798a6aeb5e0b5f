"""CSRF defence for cookie-authenticated state changes (security invariant 4).

Two independent checks, both required on every unsafe request that the session cookie
authenticates (Bearer-authenticated requests need neither: a browser never attaches a
bearer token by itself):

1. a synchronizer token: ``X-CSRF-Token`` (or the form field ``csrf_token`` for the
   pages) must equal the random token kept in the session's data, created at login and
   returned by ``/auth/login`` and ``/auth/me``; compared in constant time;
2. where the browser says where the request comes from, it must be here: ``Origin``
   (when sent) must be this service's own origin or the issuer's, and ``Sec-Fetch-Site``
   (when sent) must be ``same-origin`` or ``none`` (a user-typed navigation).

OWASP CSRF Prevention Cheat Sheet: "Synchronizer Token Pattern" and "Verifying Origin
With Standard Headers"; Fetch Metadata (W3C) for ``Sec-Fetch-Site``.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from authstate.csrf import DATA_KEY, TOKEN_BYTES, csrf_token_for, new_token, tokens_match
from authstate.sessions import Session
from authstate.web.middleware import SAFE_METHODS
from authstate.web.problems import Problem

# The token itself (made at login, kept in the session, compared in constant time) is
# the core's ``authstate.csrf``; its names stay importable from here.
__all__ = [
    "DATA_KEY", "FORM_FIELD", "HEADER", "SAME_SITE_VALUES", "TOKEN_BYTES", "check",
    "check_provenance", "csrf_token_for", "forbidden", "from_here", "new_token", "origin_of",
    "same_origin", "tokens_match",
]

HEADER = "X-CSRF-Token"
FORM_FIELD = "csrf_token"
SAME_SITE_VALUES = frozenset({b"same-origin", b"none"})


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, lower-cased, or None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(
    *,
    origin: bytes | None,
    sec_fetch_site: bytes | None,
    host: bytes | None,
    allowed: Iterable[bytes] = (),
) -> bool:
    """Whether the browser's own account of where a request comes from (when it gives
    one) says "here": ``Origin`` naming this ``Host`` or an allowed origin, and
    ``Sec-Fetch-Site`` being ``same-origin`` or ``none``. Absent headers prove nothing
    either way (older browsers, non-browser clients) and pass; the token still applies."""
    if sec_fetch_site is not None and sec_fetch_site.strip().lower() not in SAME_SITE_VALUES:
        return False
    if origin is None:
        return True
    given = origin.strip().lower()
    if given in {a.lower() for a in allowed}:
        return True
    scheme, sep, netloc = given.partition(b"://")
    return (
        bool(sep)
        and scheme in (b"http", b"https")
        and host is not None
        and netloc == host.strip().lower()
    )


def forbidden(detail: str) -> Problem:
    return Problem(403, "csrf_failed", detail)


def from_here(connection: HTTPConnection, issuer: str) -> bool:
    """``same_origin`` for a Starlette request, this service's issuer being allowed."""
    headers = connection.headers

    def raw(name: str) -> bytes | None:
        value = headers.get(name)
        return value.encode("latin-1") if value is not None else None

    issuer_origin = origin_of(issuer)
    return same_origin(
        origin=raw("origin"),
        sec_fetch_site=raw("sec-fetch-site"),
        host=raw("host"),
        allowed=[issuer_origin.encode("latin-1")] if issuer_origin else [],
    )


def check_provenance(connection: HTTPConnection, issuer: str) -> None:
    """Raise a 403 ``Problem`` when the browser says the request comes from another
    origin. Used alone on login, which no cookie authenticates (login CSRF)."""
    if not from_here(connection, issuer):
        raise forbidden("cross-origin request refused")


def check(
    connection: HTTPConnection,
    session: Session,
    issuer: str,
    *,
    method: str,
    submitted: str | None = None,
) -> None:
    """Raise a 403 ``Problem`` unless this cookie-authenticated request may change state.

    ``submitted`` is a token taken from a form (the pages); otherwise the header is used.
    """
    if method.upper() in SAFE_METHODS:
        return
    check_provenance(connection, issuer)
    expected = csrf_token_for(session)
    given = submitted if submitted is not None else connection.headers.get(HEADER)
    if expected is None or not given:
        raise forbidden(f"the {HEADER} header is required")
    if not tokens_match(given, expected):
        raise forbidden(f"the {HEADER} header does not match the session")
