"""The CSRF synchronizer token: made at login, kept in the session, compared in constant time.

Pure and framework-free, so the front door (``AuthState.login``) can put a fresh token in
every new session without importing the web layer, and every adapter (the ASGI middleware,
the service, the pages, a WSGI app) checks a submitted token the same way. Reading the
token from a header or a form belongs to ``authstate.authn``, which calls ``check`` here.

Two independent checks, both required on every unsafe request that a session cookie
authenticates (a bearer token needs neither: a browser never attaches one by itself):

1. a synchronizer token: ``X-CSRF-Token`` (or the form field ``csrf_token`` for the
   pages) must equal the random token kept in the session's data; compared in constant
   time;
2. where the browser says where the request comes from, it must be here: ``Origin``
   (when sent) must be the request's own origin or an allowed one (the issuer's), and
   ``Sec-Fetch-Site`` (when sent) must be ``same-origin`` or ``none``.

OWASP CSRF Prevention Cheat Sheet, "Synchronizer Token Pattern" and "Verifying Origin
With Standard Headers"; Fetch Metadata (W3C) for ``Sec-Fetch-Site``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from authstate.errors import CSRFFailed
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


HEADER = "X-CSRF-Token"
FORM_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # RFC 9110 §9.2.1
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


def check(
    *,
    method: str,
    expected: str | None,
    given: str | None,
    from_here: bool,
) -> None:
    """Raise ``CSRFFailed`` unless a cookie-authenticated request may change state: a safe
    method always may; an unsafe one needs ``from_here`` (``same_origin``'s verdict) and
    ``given`` equal to the session's ``expected`` token. The message says which check
    failed (never the tokens), for the caller's own log and problem detail."""
    if method.upper() in SAFE_METHODS:
        return
    if not from_here:
        raise CSRFFailed("cross-origin request refused")
    if not given or expected is None:
        raise CSRFFailed(f"the {HEADER} header is required")
    if not tokens_match(given, expected):
        raise CSRFFailed(f"the {HEADER} header does not match the session")
