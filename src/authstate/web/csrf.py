"""CSRF for the service's routes and pages: a thin Starlette face over the one check.

The token (made at login, kept in the session, compared in constant time) and the
provenance rule (``Origin`` / ``Sec-Fetch-Site``) are the core's ``authstate.csrf``; the
headers are read by ``authstate.authn.Credentials``, the same reading the ASGI middleware
does. What is left here is what only a FastAPI route needs: the 403 ``Problem`` and
Starlette's connection object in, and the names the service's code already imports.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from authstate.authn import Credentials
from authstate.csrf import (
    DATA_KEY,
    FORM_FIELD,
    HEADER,
    SAME_SITE_VALUES,
    TOKEN_BYTES,
    csrf_token_for,
    new_token,
    origin_of,
    same_origin,
    tokens_match,
)
from authstate.csrf import check as check_token
from authstate.errors import CSRFFailed
from authstate.sessions import Session
from authstate.web.problems import Problem

__all__ = [
    "DATA_KEY", "FORM_FIELD", "HEADER", "SAME_SITE_VALUES", "TOKEN_BYTES", "check",
    "check_provenance", "csrf_token_for", "forbidden", "from_here", "new_token", "origin_of",
    "same_origin", "tokens_match",
]


def forbidden(detail: str) -> Problem:
    return Problem(403, "csrf_failed", detail)


def _allowed(issuer: str) -> list[bytes]:
    issuer_origin = origin_of(issuer)
    return [issuer_origin.encode("latin-1")] if issuer_origin else []


def from_here(connection: HTTPConnection, issuer: str) -> bool:
    """``same_origin`` for a Starlette request, this service's issuer being allowed."""
    return Credentials(connection.scope).from_here(_allowed(issuer))


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
    credentials = Credentials(connection.scope, csrf_token=submitted)
    try:
        check_token(
            method=method,
            expected=csrf_token_for(session),
            given=credentials.csrf_token,
            from_here=credentials.from_here(_allowed(issuer)),
        )
    except CSRFFailed as refused:
        raise forbidden(refused.message) from None
