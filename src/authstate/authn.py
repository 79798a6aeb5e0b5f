"""Who is calling: the one authentication path, framework-free.

The ASGI middleware (``web/middleware.py``), the service's own API (``web/caller.py``) and
its pages (``web/pages.py``) all run the code below; none parses a header or checks CSRF
on its own, so a fix here reaches every one of them.

A request is read once, as ``Credentials`` (its method and raw headers, as an ASGI scope
holds them):

- ``Authorization``: RFC 6750 §2.1. Exactly one such header (RFC 9110 §5.3: it is not a
  list, so a repeated one is ambiguous and refused), the scheme ``Bearer`` in any case
  (RFC 9110 §11.1), then one token68 and nothing else. A malformed or repeated header
  is a presented-but-invalid bearer credential (``invalid_token``), never ignored and
  never a fallback to another credential. Another scheme (``Basic``) is not ours and is
  left alone.
- ``Cookie``: RFC 6265 §5.4; the first cookie of a name wins. The session cookie's name
  comes from the settings, with the ``__Host-`` prefix outside development mode.
- ``Origin`` / ``Sec-Fetch-Site``: where the browser says the request comes from, for
  the CSRF check (``authstate.csrf``); a repeated one proves nothing good and fails.

An authenticator (``SessionCookie``, ``BearerJWT``, ``BearerOpaque``, ``Introspection``,
or the app's own) returns ``None`` when the request carries no credential of its kind, an
``Identity`` for a good one, and raises ``InvalidToken`` for a bad one, ``CSRFFailed`` for
a cookie-authenticated change that fails the CSRF check, or a ``*Unavailable`` error when
the store, bus, keys or introspection endpoint cannot answer. ``Authentication`` runs a
list of them and turns that into one verdict, an ``AuthInfo``, under one of two rules:

- ``bearer_decides=False`` (the middleware's default): try each in order, the first
  success wins, and a bad credential does not end the search (a stale cookie beside a
  good bearer token authenticates by the token, and the reverse);
- ``bearer_decides=True`` (the service's rule, ``for_service``): a request presenting a
  bearer credential is judged by the bearer authenticators alone, so a bad token is a
  401 even beside a good cookie; without one, the cookie is tried.

Unknown, expired, revoked and malformed credentials get the same verdict; an outage is
its own verdict (``unavailable``) that every adapter answers with 503 and
``Retry-After``, never as a logout.
"""

from __future__ import annotations

import http.cookies
import logging
import re
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from authstate import csrf
from authstate.clock import LEEWAY_DEFAULT, numeric_date
from authstate.errors import (
    AuthstateError,
    BusUnavailable,
    CSRFFailed,
    InvalidToken,
    KeysUnavailable,
    StoreUnavailable,
    UpstreamUnavailable,
)
from authstate.identity import Identity
from authstate.outage import OutageLog
from authstate.sessions import Session

if TYPE_CHECKING:
    import httpx

    from authstate.clock import Clock
    from authstate.config import Settings
    from authstate.jose.jwks import JWKSClient
    from authstate.state import AuthState

Failure = Literal["invalid_token", "csrf_failed", "unavailable"]

logger = logging.getLogger("authstate.middleware")

AUTHENTICATED = "authenticated"  # the scope Starlette's convention gives every logged-in caller
VERDICT_MEMO = 10_000  # entries of Authentication.decided_now's memo
SAFE_METHODS = csrf.SAFE_METHODS
ACCESS_TOKEN_TYPES = ("bearer", "access_token")  # RFC 7662 §2.2 token_type, RFC 6750
BEARER_MAX = 8192  # a header this long is an attack or a bug, not a token
TOKEN68 = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 §2.1 b64token
REALM = "authstate"
HOST_PREFIX = "__Host-"
UNAVAILABLE = (StoreUnavailable, BusUnavailable, KeysUnavailable, UpstreamUnavailable)


def session_cookie_name(settings: Settings) -> str:
    """``__Host-`` + the configured name outside development mode (RFC 6265bis §4.1.3.2:
    the browser then takes it only from a secure origin, with ``Path=/`` and no
    ``Domain``); the bare name in development mode, over plain HTTP."""
    name = settings.sessions.cookie_name
    return name if settings.service.dev else HOST_PREFIX + name


def session_cookie(
    settings: Settings, session_id: str | None, *, max_age: int | None = 0
) -> bytes:
    """The ``Set-Cookie`` value that sets the session cookie to ``session_id`` for
    ``max_age`` seconds (None: until the browser closes), or clears it
    (``session_id=None``). The one place its attributes
    are written: HttpOnly (scripts cannot read it), SameSite=Lax (not sent on cross-site
    subrequests or POSTs), Path=/, and ``Secure`` with the ``__Host-`` name outside
    development mode (``session_cookie_name``). Framework-free, so every adapter (the
    service's responses, the session middleware, WSGI) sends the same cookie."""
    cookie: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
    name = session_cookie_name(settings)
    cookie[name] = session_id or ""
    morsel = cookie[name]
    if session_id is None or max_age is not None:
        morsel["max-age"] = max_age if session_id is not None else 0
    if session_id is None:
        morsel["expires"] = 0  # the epoch: also for clients that ignore Max-Age
    morsel["path"] = "/"
    if not settings.service.dev:
        morsel["secure"] = True
    morsel["httponly"] = True
    morsel["samesite"] = "lax"
    return cookie.output(header="").strip().encode("latin-1")


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


def parse_authorization(values: Sequence[bytes]) -> tuple[str | None, bool]:
    """The bearer token of a request's ``Authorization`` header values, as
    ``(token, malformed)``: ``(None, False)`` when there is no bearer credential (no
    header, or another scheme), ``(None, True)`` when one is presented but malformed or
    the header is repeated, ``(token, False)`` otherwise."""
    if not values:
        return None, False
    if len(values) > 1:
        return None, True  # which one would count? Neither.
    scheme, _, token = values[0].strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None, False
    token = token.strip(b" ")
    if not token or len(token) > BEARER_MAX or TOKEN68.fullmatch(token) is None:
        return None, True
    return token.decode("ascii"), False


class Credentials:
    """The request's credentials, read from its headers once and only as far as asked.

    Built from an ASGI scope (``method`` and the raw ``headers`` list); any framework
    that can give those uses the same parsing. ``csrf_token`` is a token submitted in
    the body (a form field), which then replaces the ``X-CSRF-Token`` header."""

    __slots__ = ("_bearer", "_cookie_header", "_headers", "_submitted", "bearer_error", "method")

    def __init__(self, scope: Mapping[str, Any], *, csrf_token: str | None = None) -> None:
        self.method: str = scope.get("method", "GET")
        self._headers: Sequence[tuple[bytes, bytes]] = scope.get("headers", [])
        self._cookie_header: bytes | None = None
        self._bearer: str | bool | None = False
        self._submitted = csrf_token
        self.bearer_error = False

    def values(self, name: bytes) -> list[bytes]:
        """Every value of a header (``name`` in lower case, as ASGI gives it)."""
        return [value for key, value in self._headers if key == name]

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
            self._cookie_header = b"; ".join(self.values(b"cookie"))
        wanted = name.encode("latin-1") + b"="
        for part in self._cookie_header.split(b";"):
            part = part.strip()
            if part.startswith(wanted):
                return part[len(wanted):].strip(b'"').decode("latin-1")
        return None

    @property
    def bearer(self) -> str | None:
        """The ``Authorization: Bearer`` token (``parse_authorization``), or None. A
        malformed or repeated header sets ``bearer_error``."""
        if self._bearer is False:
            self._bearer, self.bearer_error = parse_authorization(self.values(b"authorization"))
        return self._bearer if isinstance(self._bearer, str) else None

    @property
    def presents_bearer(self) -> bool:
        """Whether the request presents a bearer credential, well-formed or not."""
        return self.bearer is not None or self.bearer_error

    @property
    def csrf_token(self) -> str | None:
        """The CSRF token the request submits: the form's when given, else the header's."""
        if self._submitted is not None:
            return self._submitted
        sent = self.header(csrf.HEADER.lower().encode("ascii"))
        return sent.decode("latin-1") if sent is not None else None

    def from_here(self, allowed: Iterable[bytes] = ()) -> bool:
        """``csrf.same_origin`` on this request's ``Origin``, ``Sec-Fetch-Site`` and
        ``Host``. A repeated ``Origin`` or ``Sec-Fetch-Site`` fails: a browser sends one."""
        if len(self.values(b"origin")) > 1 or len(self.values(b"sec-fetch-site")) > 1:
            return False
        return csrf.same_origin(
            origin=self.header(b"origin"),
            sec_fetch_site=self.header(b"sec-fetch-site"),
            host=self.header(b"host"),
            allowed=allowed,
        )


class Authenticator(Protocol):
    """One way to authenticate a request; see the module docstring for the contract."""

    async def authenticate(self, credentials: Credentials) -> Identity | None: ...


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def trusted_origins(settings: Settings, extra: Iterable[str] = ()) -> tuple[bytes, ...]:
    """The origins a cookie-authenticated change may come from besides the request's own:
    ``extra`` and the issuer's."""
    issuer = csrf.origin_of(settings.tokens.issuer)
    return tuple(o.encode("latin-1") for o in (*extra, *([issuer] if issuer else [])))


class SessionCookie:
    """The session cookie that ``authstate serve`` (or the app, through ``AuthState``)
    set, with the CSRF check for unsafe methods.

    A revoked or rotated session ID is refused at the next request. The session comes
    from the store, or, while push revocation is live, from the process's copy that every
    change to a session drops everywhere through the bus (``sessions.SessionCache``,
    ``AUTHSTATE_SESSION_CACHE_SECONDS``). ``cache_seconds`` is that copy's forerunner and
    is ignored with a ``DeprecationWarning``: the copy is now on by default and, unlike it,
    also drops the old ID of a rotated session and a changed session's data at once.
    """

    def __init__(
        self,
        state: AuthState,
        *,
        cookie_name: str | None = None,
        csrf: bool = True,
        allowed_origins: Iterable[str] = (),
        cache_seconds: float | None = None,
    ) -> None:
        if cache_seconds is not None:
            warnings.warn(
                "SessionCookie(cache_seconds=...) is ignored: sessions are cached by default "
                "while push revocation is live (AUTHSTATE_SESSION_CACHE_SECONDS)",
                DeprecationWarning, stacklevel=2,
            )
        self.state = state
        self.cookie_name = cookie_name or session_cookie_name(state.settings)
        self.csrf = csrf
        self.allowed_origins = trusted_origins(state.settings, allowed_origins)

    def session_id(self, credentials: Credentials) -> str | None:
        """The session cookie's value, or None when the request has none."""
        return credentials.cookie(self.cookie_name)

    async def authenticate(self, credentials: Credentials) -> Identity | None:
        identity = await self.identify(credentials)
        if identity is not None and self.csrf:
            self.check_csrf(credentials, identity.session)
        return identity

    async def identify(self, credentials: Credentials) -> Identity | None:
        """The session behind the cookie, without the CSRF check: None without a cookie,
        ``InvalidToken`` for a dead one, ``StoreUnavailable`` when the store is down."""
        session_id = self.session_id(credentials)
        if session_id is None:
            return None
        identity = await self.state.authenticate_session(session_id)
        if identity is None:
            raise InvalidToken("the session is not valid")
        return identity

    def cached(self, credentials: Credentials) -> Identity | None:
        """What ``authenticate`` would return, when this process's copies can tell it
        without awaiting (``AuthState.authenticate_session_cached``) and the CSRF check
        passes; None means "await authenticate", never "invalid". From any thread."""
        session_id = self.session_id(credentials)
        if session_id is None:
            return None
        identity = self.state.authenticate_session_cached(session_id)
        if identity is None:
            return None
        if self.csrf:
            try:
                self.check_csrf(credentials, identity.session)
            except CSRFFailed:
                return None
        return identity

    def check_csrf(self, credentials: Credentials, session: Session | None) -> None:
        """``CSRFFailed`` unless this cookie-authenticated request may change state
        (``authstate.csrf.check``: safe method, or same origin and the session's token)."""
        if credentials.method.upper() in SAFE_METHODS:
            return
        csrf.check(
            method=credentials.method,
            expected=csrf.csrf_token_for(session) if session is not None else None,
            given=credentials.csrf_token,
            from_here=credentials.from_here(self.allowed_origins),
        )


class BearerJWT:
    """A Bearer JWT, verified with the service's own keys (``AuthState``: signature,
    claims and the revocation checks) or with the keys another service publishes at a
    JWKS URL (``from_jwks``: signature and claims; revocation then rests on the token's
    short lifetime, or use ``Introspection``)."""

    reads_bearer = True

    def __init__(self, state: AuthState) -> None:
        self._verify: Callable[[str], Awaitable[Identity]] = state.authenticate_bearer
        self._cached: Callable[[str], Identity | None] = state.authenticate_cached
        self._jwks: JWKSClient | None = None

    @classmethod
    def from_jwks(
        cls,
        url: str,
        *,
        issuer: str,
        audience: str,
        leeway: int = LEEWAY_DEFAULT,
        clock: Clock | None = None,
        client: JWKSClient | None = None,
    ) -> BearerJWT:
        """Verify with the JWK Set at ``url`` (fetched, cached and refreshed by
        ``authstate.jose.jwks.JWKSClient``), accepting only tokens of ``issuer`` for
        ``audience``."""
        from authstate.clock import SystemClock
        from authstate.jose.jwks import JWKSClient
        from authstate.tokens.access import AccessTokens

        clock = clock or SystemClock()
        jwks = client or JWKSClient(url, clock=clock)
        tokens = AccessTokens(
            jwks.keys, issuer=issuer, audience=audience, clock=clock, leeway=leeway
        )

        async def verify(token: str) -> Identity:
            return _identity_from_claims(await jwks.verify(tokens, token), "jwt")

        def cached(token: str) -> Identity | None:
            claims = tokens.cached(token) if jwks.fresh else None
            return _identity_from_claims(claims, "jwt") if claims is not None else None

        self = cls.__new__(cls)
        self._verify = verify
        self._cached = cached
        self._jwks = jwks
        return self

    def cached(self, credentials: Credentials) -> Identity | None:
        """What ``authenticate`` would return, when it can be told without awaiting (the
        request's JWT is in the verified-token cache, the keys are fresh, revocation is
        in memory: ``AuthState.authenticate_cached``); None means "await authenticate",
        never "invalid". Callable from any thread: the sync face's fast path."""
        token = credentials.bearer
        if token is None or not _looks_like_jwt(token):
            return None
        try:
            return self._cached(token)
        except InvalidToken:
            return None

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

    reads_bearer = True

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

    reads_bearer = True

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
    jwks: JWKSClient | None = None,
) -> list[BearerJWT | Introspection]:
    """The authenticators of another service that trusts ``authstate serve`` at
    ``auth_url``: its JWTs verified locally with the keys it publishes (``jwks``: a
    client for its ``/.well-known/jwks.json`` with other cache settings) and, given a
    client's credentials, any other Bearer token asked of its introspection endpoint.
    The app closes each (``aclose``) when it stops."""
    authenticators: list[BearerJWT | Introspection] = [BearerJWT.from_jwks(
        f"{auth_url}/.well-known/jwks.json", issuer=issuer or auth_url, audience=audience,
        client=jwks,
    )]
    if client_id and client_secret:
        authenticators.append(Introspection(
            f"{auth_url}/oauth/introspect", client_id=client_id, client_secret=client_secret
        ))
    return authenticators


@dataclass(frozen=True, slots=True)
class AuthInfo:
    """The verdict on one request (what ``request.auth`` holds under the middleware).

    ``scopes`` is ``"authenticated"`` plus the token's scopes (Starlette's ``@requires``
    reads it); ``error`` why a presented credential did not count, in one word per HTTP
    answer, never which check failed; ``bearer`` whether a bearer credential was
    presented (the 401 challenge then says ``invalid_token``); ``cause`` the error code
    of an outage; ``failure`` the error itself, for an adapter that answers with it."""

    identity: Identity | None = None
    scopes: tuple[str, ...] = ()
    error: Failure | None = None
    bearer: bool = False
    cause: str | None = None  # with error="unavailable": the error code, store_unavailable...
    failure: AuthstateError | None = field(default=None, repr=False, compare=False)

    @property
    def method(self) -> str | None:
        return self.identity.method if self.identity is not None else None


class Authentication:
    """A list of authenticators and the rule that turns their answers into one verdict
    (see the module docstring for ``bearer_decides``)."""

    def __init__(
        self, authenticators: Sequence[Authenticator], *, bearer_decides: bool = False
    ) -> None:
        if not authenticators:
            raise ValueError("authentication needs at least one authenticator")
        self.authenticators = tuple(authenticators)
        self.bearer_decides = bearer_decides
        self._bearer_ones = tuple(
            a for a in self.authenticators if getattr(a, "reads_bearer", False)
        )
        self._verdicts: dict[int, tuple[Identity, AuthInfo]] = {}  # see decided_now
        # the session copy behind the first authenticator a request without a bearer
        # token reaches, when that is a SessionCookie: one check tells decided_now early
        # that nothing can be answered without awaiting (SQLite, the bus down)
        first = next((a for a in self.authenticators if not getattr(a, "reads_bearer", False)),
                     None)
        self._session_copy = first.state.sessions.cache if isinstance(first, SessionCookie) \
            else None

    @property
    def session_cookie(self) -> SessionCookie | None:
        """The session-cookie authenticator among them, if any."""
        return next((a for a in self.authenticators if isinstance(a, SessionCookie)), None)

    def decided_now(self, credentials: Credentials, *, bearer: bool = True) -> AuthInfo | None:
        """The verdict, when the first authenticator that can answer this request gives
        a success without awaiting (``BearerJWT.cached``, ``SessionCookie.cached``): then
        the full run would end there with the same answer. Authenticators that read the
        bearer credential are passed over when the request presents none (they answer
        None to it). None otherwise: await the call. For sync code, which skips a hop to
        the event loop on the common paths (a JWT seen before, a hot session).
        ``bearer=False``: only for a request without a bearer credential (the ASGI
        middleware: there a cached JWT costs the same either way, and a new one would be
        hashed twice)."""
        # (the Authorization header is not even parsed when no authenticator reads it)
        presents = bool(self._bearer_ones) and credentials.presents_bearer
        if presents:
            if not bearer or (self.bearer_decides and credentials.bearer_error):
                return None
        elif self._session_copy is not None and not self._session_copy.usable:
            return None  # the session cookie decides, and its copy cannot (no live bus)
        for authenticator in self.authenticators:
            if not presents and getattr(authenticator, "reads_bearer", False):
                continue
            cached = getattr(authenticator, "cached", None)
            if cached is None:
                return None
            identity: Identity | None = cached(credentials)
            if identity is None:
                return None
            if identity.method != "session":
                return AuthInfo(identity=identity, scopes=(AUTHENTICATED, *identity.scope),
                                bearer=True)
            # the same cached Identity comes back for a hot session: so does its verdict
            known = self._verdicts.get(id(identity))
            if known is not None and known[0] is identity:
                return known[1]
            info = AuthInfo(identity=identity, scopes=(AUTHENTICATED, *identity.scope))
            if len(self._verdicts) >= VERDICT_MEMO:
                self._verdicts.clear()
            self._verdicts[id(identity)] = (identity, info)
            return info
        return None

    async def __call__(self, credentials: Credentials) -> AuthInfo:
        authenticators = self.authenticators
        if self.bearer_decides and credentials.presents_bearer:
            if credentials.bearer_error:
                return AuthInfo(error="invalid_token", bearer=True)
            authenticators = self._bearer_ones
        error: Failure | None = None
        failure: AuthstateError | None = None
        for authenticator in authenticators:
            try:
                identity = await authenticator.authenticate(credentials)
            except CSRFFailed as refused:
                error, failure = "csrf_failed", refused
                continue
            except InvalidToken as refused:
                if error is None:
                    error, failure = "invalid_token", refused
                continue
            except UNAVAILABLE as down:
                if error != "unavailable":
                    error, failure = "unavailable", down
                continue
            if identity is not None:
                return AuthInfo(
                    identity=identity,
                    scopes=(AUTHENTICATED, *identity.scope),
                    bearer=identity.method != "session",
                )
        presented = credentials.presents_bearer
        if presented and error is None:
            error = "invalid_token"
        return AuthInfo(
            error=error, bearer=presented, failure=failure,
            cause=failure.code if error == "unavailable" and failure is not None else None,
        )


def for_service(state: AuthState) -> Authentication:
    """The authentication of ``authstate serve``'s own API and pages: its JWTs and opaque
    tokens, then its session cookie with CSRF; a presented bearer credential decides."""
    return Authentication(
        [BearerJWT(state), BearerOpaque(state), SessionCookie(state)], bearer_decides=True
    )
