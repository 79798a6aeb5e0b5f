"""The CSRF synchronizer token: made at login, kept in the session, compared in constant time.

Pure and framework-free, so the front door (``AuthState.login``) can put a fresh token in
every new session without importing the web layer, and every adapter (the ASGI middleware,
the service, the pages, a WSGI app) checks a submitted token the same way. Reading the
token from a header or a form, and the ``Origin``/``Sec-Fetch-Site`` checks, belong to the
adapters (``web/csrf.py``).

OWASP CSRF Prevention Cheat Sheet, "Synchronizer Token Pattern".
"""

from __future__ import annotations

import secrets

from authstate.sessions import Session

DATA_KEY = "csrf"  # where the token lives in ``Session.data``
TOKEN_BYTES = 32  # 256 bits, as the session ID itself


def new_token() -> str:
    """A fresh, unguessable token (43 URL-safe characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def csrf_token_for(session: Session) -> str | None:
    """The session's CSRF token (kept in its data since login), or None."""
    token = session.data.get(DATA_KEY)
    return token if isinstance(token, str) and token else None


def tokens_match(given: str | None, expected: str | None) -> bool:
    """Whether a submitted token equals the expected one, in constant time; an absent or
    empty token on either side never matches."""
    if not given or not expected:
        return False
    return secrets.compare_digest(
        given.encode("utf-8", "replace"), expected.encode("utf-8", "replace")
    )
