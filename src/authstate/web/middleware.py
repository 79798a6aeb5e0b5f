"""Who is calling, for any ASGI app: a pure ASGI middleware with no framework import.

``AuthMiddleware(app, authenticators=[...])`` tries each authenticator in the order the
app gives and puts the first success on ``scope``: ``scope["user"]`` (an ``AuthUser``,
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

The authenticators:

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

An authenticator returns ``None`` when the request carries no credential of its kind, an
``Identity`` when it carries a good one, and raises ``InvalidToken`` for a bad one; a
store or upstream that does not answer raises its ``*Unavailable`` error, and the
middleware fails closed with 503 (above). A bad credential does not end the search: a
stale cookie beside a good bearer token (or the reverse) authenticates by the good one,
and the CSRF rule still holds for a cookie.

The per-request path reads the headers once, lazily; a session costs one store read
(``SessionCookie(cache_seconds=...)`` trades a bounded delay on rotation for none), a
JWT a verify whose result ``AuthState`` caches, with revocation checked in memory.
``benchmarks/middleware_throughput.py`` measures both against no authentication.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from authstate.clock import numeric_date
from authstate.errors import (
    BusUnavailable,
    CSRFFailed,
    InvalidToken,
    KeysUnavailable,
    StoreUnavailable,
    TokenRevoked,
    UpstreamUnavailable,
)
from authstate.identity import Identity
from authstate.outage import OutageLog
from authstate.sessions import digest as session_digest
from authstate.sessions import valid_id as valid_session_id

if TYPE_CHECKING:
    import httpx

    from authstate.clock import Clock
    from authstate.jwks import JWKSClient
    from authstate.state import AuthState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Failure = Literal["invalid_token", "csrf_failed", "unavailable"]

logger = logging.getLogger("authstate.middleware")

AUTHENTICATED = "authenticated"  # the scope Starlette's convention gives every logged-in caller
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CSRF_HEADER = b"x-csrf-token"
ACCESS_TOKEN_TYPES = ("bearer", "access_token")  # RFC 7662 §2.2 token_type, RFC 6750
BEARER_MAX = 8192  # a header this long is an attack or a bug, not a token
TOKEN68 = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 §2.1 b64token
REALM = "authstate"
RETRY_AFTER = 5  # seconds; a blip usually heals within it, and clients retry no faster
PROBLEM_JSON = "application/problem+json"  # RFC 9457 §3
PROBLEM_TYPE = "urn:authstate:problem:"


def bearer_challenge(error: str | None = None, scopes: Sequence[str] = ()) -> str:
    """The ``WWW-Authenticate`` value of an RFC 6750 §3 challenge: ``error`` only when a
    token was presented, ``scopes`` with ``insufficient_scope``. Shared by the service's
    problems, the FastAPI dependencies and any framework's guard."""
    parts = [f'Bearer realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if scopes:
        parts.append(f'scope="{" ".join(scopes)}"')
    return ", ".join(parts)


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


@dataclass(frozen=True, slots=True)
class AuthInfo:
    """What ``request.auth`` holds. ``scopes`` is ``"authenticated"`` plus the token's
    scopes (Starlette's ``@requires`` reads it); ``error`` why a presented credential did
    not count."""

    identity: Identity | None = None
    scopes: tuple[str, ...] = ()
    error: Failure | None = None
    bearer: bool = False
    cause: str | None = None  # with error="unavailable": the error code, store_unavailable...

    @property
    def method(self) -> str | None:
        return self.identity.method if self.identity is not None else None


class Credentials:
    """The request's credentials, read from the headers once and only as far as asked."""

    __slots__ = ("_bearer", "_cookie_header", "_headers", "bearer_error", "method")

    def __init__(self, scope: Scope) -> None:
        self.method: str = scope.get("method", "GET")
        self._headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        self._cookie_header: bytes | None = None
        self._bearer: str | bool | None = False
        self.bearer_error = False

    def header(self, name: bytes) -> bytes | None:
        """The single value of a header, or None when absent (or, ambiguously, repeated)."""
        found = None
        for key, value in self._headers:
            if key == name:
                if found is not None:
                    return None
                found = value
        return found

    def cookie(self, name: str) -> str | None:
        """The value of one cookie (RFC 6265 §5.4 order: the first one wins)."""
        if self._cookie_header is None:
            self._cookie_header = b"; ".join(v for k, v in self._headers if k == b"cookie")
        wanted = name.encode("latin-1") + b"="
        for part in self._cookie_header.split(b";"):
            part = part.strip()
            if part.startswith(wanted):
                return part[len(wanted):].strip(b'"').decode("latin-1")
        return None

    @property
    def bearer(self) -> str | None:
        """The ``Authorization: Bearer`` token (RFC 6750 §2.1), or None. A malformed
        header sets ``bearer_error`` so the answer can say ``invalid_token``."""
        if self._bearer is False:
            self._bearer = self._parse_bearer()
        return self._bearer if isinstance(self._bearer, str) else None

    def _parse_bearer(self) -> str | None:
        values = [v for k, v in self._headers if k == b"authorization"]
        if not values:
            return None
        scheme, _, token = values[0].partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        token = token.strip()
        if (
            len(values) > 1
            or not token
            or len(token) > BEARER_MAX
            or TOKEN68.fullmatch(token) is None
        ):
            self.bearer_error = True
            return None
        return token.decode("ascii")


class Authenticator(Protocol):
    """One way to authenticate a request; see the module docstring for the contract."""

    async def authenticate(self, credentials: Credentials) -> Identity | None: ...


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


class SessionCookie:
    """The session cookie that ``authstate serve`` (or the app, through ``AuthState``)
    set, with the CSRF check for unsafe methods.

    Each request reads the session from the store: a revoked or rotated session ID is
    refused at once. ``cache_seconds`` (off by default, at most ``CACHE_MAX``) keeps a
    looked-up session for that long in this process, to spare the store read on a busy
    session. A cached session is used only while revocation is pushed (``AuthState``'s
    revocation copy is live: bus connected and resynchronised) and its ``sid`` is not in
    that copy, so a session ended anywhere (logout, revoke, log out everywhere, a
    password change) is refused as fast as a session-bound access token is. What the
    cache does delay, by at most ``cache_seconds``: the old ID of a *rotated* session
    stays usable on instances that cached it, and changes to the session's data are
    seen late.
    """

    CACHE_MAX = 10.0
    CACHE_SIZE = 10_000

    def __init__(
        self,
        state: AuthState,
        *,
        cookie_name: str | None = None,
        csrf: bool = True,
        allowed_origins: Iterable[str] = (),
        cache_seconds: float = 0.0,
    ) -> None:
        from authstate.web.cookies import session_cookie_name
        from authstate.web.csrf import csrf_token_for, origin_of, same_origin

        if not 0 <= cache_seconds <= self.CACHE_MAX:
            raise ValueError(f"cache_seconds must be between 0 and {self.CACHE_MAX}")
        self.state = state
        self.cookie_name = cookie_name or session_cookie_name(state.settings)
        self.csrf = csrf
        issuer = origin_of(state.settings.issuer)
        self.allowed_origins = tuple(
            o.encode("latin-1") for o in (*allowed_origins, *([issuer] if issuer else []))
        )
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Identity]] = {}
        self._csrf_token_for = csrf_token_for
        self._same_origin = same_origin

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        session_id = credentials.cookie(self.cookie_name)
        if session_id is None:
            return None
        identity = self._cached(session_id) if self.cache_seconds else None
        if identity is None:
            identity = await self.state.authenticate_session(session_id)
            if identity is None:
                raise InvalidToken("the session is not valid")
            if self.cache_seconds:
                self._remember(session_id, identity)
        if self.csrf and credentials.method not in SAFE_METHODS:
            self._check_csrf(credentials, identity)
        return identity

    def _cached(self, session_id: str) -> Identity | None:
        revocation = self.state.revocation
        if revocation.mode != "push" or not self.state.settings.revocation_session_bound:
            self._cache.clear()
            return None
        if not valid_session_id(session_id):
            return None
        key = session_digest(session_id)
        entry = self._cache.get(key)
        if entry is None:
            return None
        cached_at, identity = entry
        now = self.state.clock.now()
        if now - cached_at >= self.cache_seconds or identity.expires_at <= now:
            del self._cache[key]
            return None
        try:
            revocation.check_local({"sid": identity.sid})
        except TokenRevoked:
            del self._cache[key]
            return None
        return identity

    def _remember(self, session_id: str, identity: Identity) -> None:
        if len(self._cache) >= self.CACHE_SIZE:
            del self._cache[next(iter(self._cache))]
        self._cache[session_digest(session_id)] = (self.state.clock.now(), identity)

    def _check_csrf(self, credentials: Credentials, identity: Identity) -> None:
        sent = credentials.header(CSRF_HEADER)
        expected = self._csrf_token_for(identity.session) if identity.session else None
        if (
            sent is None
            or expected is None
            or not secrets.compare_digest(sent, expected.encode("ascii"))
            or not self._same_origin(
                origin=credentials.header(b"origin"),
                sec_fetch_site=credentials.header(b"sec-fetch-site"),
                host=credentials.header(b"host"),
                allowed=self.allowed_origins,
            )
        ):
            raise CSRFFailed("the CSRF check failed")


class BearerJWT:
    """A Bearer JWT, verified with the service's own keys (``AuthState``: signature,
    claims and the revocation checks) or with the keys another service publishes at a
    JWKS URL (``from_jwks``: signature and claims; revocation then rests on the token's
    short lifetime, or use ``Introspection``)."""

    def __init__(self, state: AuthState) -> None:
        self._verify: Callable[[str], Awaitable[Identity]] = state.authenticate_bearer
        self._jwks: JWKSClient | None = None

    @classmethod
    def from_jwks(
        cls,
        url: str,
        *,
        issuer: str,
        audience: str,
        leeway: int = 30,
        clock: Clock | None = None,
        client: JWKSClient | None = None,
    ) -> BearerJWT:
        """Verify with the JWK Set at ``url`` (fetched, cached and refreshed by
        ``authstate.jwks.JWKSClient``), accepting only tokens of ``issuer`` for
        ``audience``."""
        from authstate.clock import SystemClock
        from authstate.jwks import JWKSClient
        from authstate.jwt import AccessTokens

        clock = clock or SystemClock()
        jwks = client or JWKSClient(url, clock=clock)
        tokens = AccessTokens(
            jwks.keys, issuer=issuer, audience=audience, clock=clock, leeway=leeway
        )

        async def verify(token: str) -> Identity:
            return _identity_from_claims(await jwks.verify(tokens, token), "jwt")

        self = cls.__new__(cls)
        self._verify = verify
        self._jwks = jwks
        return self

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        token = credentials.bearer
        if token is None or not _looks_like_jwt(token):
            return None
        identity = await self._verify(token)
        if identity.method != "jwt":
            raise InvalidToken("not a JWT access token")
        return identity

    async def aclose(self) -> None:
        if self._jwks is not None:
            await self._jwks.aclose()


class BearerOpaque:
    """A Bearer opaque access token, looked up in the store through ``AuthState``."""

    def __init__(self, state: AuthState) -> None:
        self.state = state

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        token = credentials.bearer
        if token is None or _looks_like_jwt(token):
            return None
        identity = await self.state.authenticate_bearer(token)
        if identity.method != "opaque":
            raise InvalidToken("not an opaque access token")
        return identity


class Introspection:
    """Any Bearer token, asked of an RFC 7662 introspection endpoint with the client's
    credentials (HTTP Basic, RFC 7662 §2.1). Each request asks: revocation at the
    service is seen at once, at the price of a round trip."""

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        client_secret: str,
        audience: str | None = None,
        timeout: float = 3.0,
        client: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
    ) -> None:
        import httpx

        from authstate.clock import SystemClock

        self.url = url
        self.clock = clock or SystemClock()
        self.audience = audience
        self._auth = httpx.BasicAuth(client_id, client_secret)
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._owns_client = client is None
        self._outage = OutageLog(logger, f"introspection endpoint {url}")

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        import httpx

        token = credentials.bearer
        if token is None:
            return None
        try:
            response = await self._client.post(
                self.url,
                data={"token": token, "token_type_hint": "access_token"},
                auth=self._auth,
                headers={"Accept": "application/json"},
            )
            if response.status_code != 200:
                raise UpstreamUnavailable(
                    f"introspection answered HTTP {response.status_code}"
                )
            answer = response.json()
        except (httpx.HTTPError, ValueError) as error:
            self._outage.failed(error)
            raise UpstreamUnavailable("the introspection endpoint did not answer") from error
        except UpstreamUnavailable as error:
            self._outage.failed(error)
            raise
        self._outage.recovered()
        if not isinstance(answer, dict) or answer.get("active") is not True:
            raise InvalidToken("the token is not active")
        token_type = answer.get("token_type")
        if token_type is None or str(token_type).lower() not in ACCESS_TOKEN_TYPES:
            # a refresh token is active too, and has no token_type (RFC 7662 §2.2 names
            # the access token type): only an answer saying "Bearer" is an access token
            raise InvalidToken("not an access token")
        exp = answer.get("exp")
        if exp is not None and numeric_date(exp, "exp") <= self.clock.now():
            raise InvalidToken("the token is not active")
        if self.audience is not None and not _audience_matches(answer.get("aud"), self.audience):
            raise InvalidToken("the token is not active")
        return _identity_from_claims(answer, "jwt" if _looks_like_jwt(token) else "opaque")

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _audience_matches(aud: object, expected: str) -> bool:
    if isinstance(aud, str):
        return aud == expected
    return isinstance(aud, list) and expected in aud


def _identity_from_claims(claims: dict[str, Any], method: Literal["jwt", "opaque"]) -> Identity:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise InvalidToken("the token names no subject")
    scope = claims.get("scope")
    exp = claims.get("exp")
    sid = claims.get("sid")
    return Identity(
        user_id=sub,
        method=method,
        expires_at=float(exp) if isinstance(exp, int | float) else 0.0,
        sid=sid if isinstance(sid, str) else None,
        scope=tuple(scope.split()) if isinstance(scope, str) else (),
        claims=dict(claims),
    )


def trusting(
    auth_url: str,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    issuer: str | None = None,
    audience: str = "authstate",
) -> list[BearerJWT | Introspection]:
    """The authenticators of another service that trusts ``authstate serve`` at
    ``auth_url``: its JWTs verified locally with the keys it publishes and, given a
    client's credentials, any other Bearer token asked of its introspection endpoint.
    The app closes each (``aclose``) when it stops."""
    authenticators: list[BearerJWT | Introspection] = [BearerJWT.from_jwks(
        f"{auth_url}/.well-known/jwks.json", issuer=issuer or auth_url, audience=audience
    )]
    if client_id and client_secret:
        authenticators.append(Introspection(
            f"{auth_url}/oauth/introspect", client_id=client_id, client_secret=client_secret
        ))
    return authenticators


class AuthMiddleware:
    """Authenticate every HTTP and WebSocket request; see the module docstring."""

    def __init__(self, app: ASGIApp, *, authenticators: Sequence[Authenticator]) -> None:
        if not authenticators:
            raise ValueError("AuthMiddleware needs at least one authenticator")
        self.app = app
        self.authenticators = tuple(authenticators)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            user, info = await self.authenticate(scope)
            if info.error == "unavailable" and info.identity is None:
                await unavailable(scope, send, info.cause or "store_unavailable")
                return
            scope["user"] = user
            scope["auth"] = info
        await self.app(scope, receive, send)

    async def authenticate(self, scope: Scope) -> tuple[AuthUser, AuthInfo]:
        """The caller behind this request, as ``(scope["user"], scope["auth"])``."""
        credentials = Credentials(scope)
        error: Failure | None = None
        cause: str | None = None
        for authenticator in self.authenticators:
            try:
                identity = await authenticator.authenticate(credentials)
            except CSRFFailed:
                error = "csrf_failed"
                continue
            except InvalidToken:
                error = error or "invalid_token"
                continue
            except (
                StoreUnavailable, BusUnavailable, KeysUnavailable, UpstreamUnavailable
            ) as failure:
                error, cause = "unavailable", cause or failure.code
                continue
            if identity is not None:
                return AuthUser(identity), AuthInfo(
                    identity=identity,
                    scopes=(AUTHENTICATED, *identity.scope),
                    bearer=identity.method != "session",
                )
        presented = credentials.bearer is not None or credentials.bearer_error
        if presented:
            error = error or "invalid_token"
        return ANONYMOUS, AuthInfo(error=error, bearer=presented, cause=cause)


def problem_body(status: int, code: str, title: str, detail: str = "") -> bytes:
    """An RFC 9457 problem document as the service writes them (``web/problems.py``)."""
    body: dict[str, Any] = {"type": PROBLEM_TYPE + code, "title": title, "status": status,
                            "code": code}
    if detail:
        body["detail"] = detail
    return json.dumps(body, separators=(",", ":")).encode()


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
