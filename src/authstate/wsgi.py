"""Who is calling, for any WSGI app (PEP 3333): the ASGI middleware's twin, not its copy.

``AuthMiddleware(app, authenticators=...)`` runs the very authenticators the ASGI
middleware and the service run (``authstate.authn``: session cookie with CSRF, bearer
JWT with the service's keys or a JWKS URL, opaque, introspection). It turns the WSGI
``environ`` into what they read, an ASGI-like scope (the method and the headers as
``(lower-case name, value)`` byte pairs), and runs ``authn.Authentication`` on the
process's portal (``authstate.sync``), where the store connections, the JWKS client and
the revocation copy live. Nothing is parsed here.

The verdict goes into ``environ["authstate.identity"]`` (an ``Identity`` or None) and
``environ["authstate.auth"]`` (the ``AuthInfo``). A request with no credential, or only
bad ones, passes through as anonymous: the app (or ``authstate.flask`` /
``authstate.django``) decides what needs a login, with ``refusal`` below giving the same
401 / 403 answers as the service. An outage (store, bus, keys or introspection endpoint
down, and no other credential succeeded) is answered here with 503, ``Retry-After`` and
a problem detail, never passed on as a logout, exactly as in the ASGI middleware.

``authenticators`` is a list, or a function returning one: the function is called on the
first request in each process, so that under gunicorn ``--preload`` each worker builds
its own (a JWKS client's connections, the ``AuthState`` behind ``sync.state``) instead of
sharing the master's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from authstate.authn import Authentication, Authenticator, AuthInfo, Credentials, bearer_challenge
from authstate.errors import ConfigurationError
from authstate.sync import Portal, SyncAuthState, default_portal

# the same problem spelling, status table and Retry-After as the service (framework-free)
from authstate.web.statuses import PROBLEM_JSON, RETRY_AFTER, problem_body

if TYPE_CHECKING:
    from authstate.identity import Identity
    from authstate.jwks import JWKSClient

__all__ = [
    "AUTH_KEY", "IDENTITY_KEY", "AuthMiddleware", "Refusal", "RequestAuthenticator",
    "identity_of", "refusal", "respond", "scope_of",
]

IDENTITY_KEY = "authstate.identity"
AUTH_KEY = "authstate.auth"

WSGIEnviron = dict[str, Any]


class StartResponse(Protocol):
    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None, /
    ) -> Callable[[bytes], object]: ...


WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]
Authenticators = Sequence[Authenticator] | Callable[[], Sequence[Authenticator]]

# CGI spells these two without the HTTP_ prefix (PEP 3333, RFC 3875 §4.1)
_UNPREFIXED = {"CONTENT_TYPE": b"content-type", "CONTENT_LENGTH": b"content-length"}


def scope_of(environ: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an ASGI scope that ``authn.Credentials`` reads, from a WSGI environ:
    ``HTTP_X_CSRF_TOKEN`` becomes ``(b"x-csrf-token", value)``. The server has already
    joined a repeated header with commas, which then fails the strict parsing as a
    repeated one would."""
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].lower().replace("_", "-").encode("latin-1")
        elif key in _UNPREFIXED:
            name = _UNPREFIXED[key]
        else:
            continue
        if isinstance(value, str):
            headers.append((name, value.encode("latin-1")))
    return {"type": "http", "method": environ.get("REQUEST_METHOD", "GET"), "headers": headers}


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP answer refusing a request, framework-free: each adapter (the middleware,
    Flask, Django, DRF) turns it into its own response object."""

    status: int
    code: str
    detail: str
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def reason(self) -> str:
        return {401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}[self.status]

    def body(self) -> bytes:
        return problem_body(self.status, self.code, detail=self.detail)

    def all_headers(self) -> list[tuple[str, str]]:
        body = self.body()
        return [("Content-Type", PROBLEM_JSON), ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"), *self.headers]


UNAVAILABLE_DETAIL = "authentication is unavailable; try again shortly"


def refusal(info: AuthInfo | None, scopes: Sequence[str] = ()) -> Refusal | None:
    """Why this request may not go on, as the service would answer it, or None when it
    may: 401 with an RFC 6750 challenge (``invalid_token`` only when a bearer credential
    was presented) for no or a bad credential, 403 ``csrf_failed`` for a cookie-
    authenticated change without the CSRF token, 503 with ``Retry-After`` for an outage,
    and 403 ``insufficient_scope`` when the caller lacks one of ``scopes``."""
    identity = info.identity if info is not None else None
    if identity is None:
        if info is not None and info.error == "csrf_failed":
            return Refusal(403, "csrf_failed", "the CSRF check failed")
        if info is not None and info.error == "unavailable":
            return Refusal(503, info.cause or "store_unavailable", UNAVAILABLE_DETAIL,
                           (("Retry-After", str(RETRY_AFTER)),))
        error = "invalid_token" if info is not None and info.bearer else None
        return Refusal(401, "unauthenticated", "a valid session cookie or bearer token is required",
                       (("WWW-Authenticate", bearer_challenge(error)),))
    needed = tuple(scopes)
    if needed and not set(needed) <= set(identity.scope):
        return Refusal(403, "insufficient_scope", "the token lacks a required scope",
                       (("WWW-Authenticate", bearer_challenge("insufficient_scope", needed)),))
    return None


class RequestAuthenticator:
    """``authn.Authentication`` for WSGI environs, on a portal: what ``AuthMiddleware``,
    ``authstate.flask`` and ``authstate.django`` each hold one of.

    ``authenticators`` is a list or a function returning one (called on first use in each
    process, see the module docstring). ``sync`` is the ``SyncAuthState`` the
    authenticators rest on, when there is one (for the app's flows: login, logout...)."""

    def __init__(
        self,
        authenticators: Authenticators,
        *,
        bearer_decides: bool = False,
        portal: Portal | None = None,
        sync: SyncAuthState | None = None,
    ) -> None:
        self.sync = sync
        self.portal = portal or (sync.portal if sync is not None else default_portal())
        if callable(authenticators):
            factory = authenticators
        else:
            if not authenticators:
                raise ValueError("authentication needs at least one authenticator")
            given = tuple(authenticators)

            def factory() -> Sequence[Authenticator]:
                return given

        def build() -> Authentication:
            return Authentication(factory(), bearer_decides=bearer_decides)

        async def close(authentication: Authentication) -> None:
            for authenticator in authentication.authenticators:
                aclose = getattr(authenticator, "aclose", None)
                if aclose is not None:
                    await aclose()

        self._authentication = self.portal.resource_built(build, close)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, portal: Portal | None = None
    ) -> RequestAuthenticator:
        """From a framework's settings mapping (Flask's ``app.config["AUTHSTATE"]``,
        Django's ``settings.AUTHSTATE``), one of:

        - ``{"AUTH_URL": "https://auth.example", "CLIENT_ID": ..., "CLIENT_SECRET": ...,
          "AUDIENCE": "authstate", "ISSUER": ...}``: trust a running ``authstate serve``
          (its JWTs through its JWKS, other tokens through its introspection endpoint
          when a client is given; ``authn.trusting``);
        - ``{"SETTINGS": {"store": "redis://...", ...}}``: be on the service's own store
          (``authstate.Settings`` keywords): its session cookie (with CSRF), JWTs and
          opaque tokens, revocation pushed over its bus; ``sync`` then runs the flows;
        - ``{"AUTHENTICATORS": callable}``: any list of ``authn`` authenticators.

        ``BEARER_DECIDES`` (default false) applies the service's rule (see ``authn``)."""
        from authstate.authn import BearerJWT, BearerOpaque, SessionCookie, trusting
        from authstate.config import Settings

        decides = bool(config.get("BEARER_DECIDES", False))
        if "AUTHENTICATORS" in config:
            return cls(config["AUTHENTICATORS"], bearer_decides=decides, portal=portal)
        if "SETTINGS" in config:
            sync = SyncAuthState(Settings(**dict(config["SETTINGS"])), portal=portal)

            def own() -> list[Authenticator]:
                state = sync.state
                return [BearerJWT(state), BearerOpaque(state), SessionCookie(state)]

            return cls(own, bearer_decides=decides, sync=sync)
        if "AUTH_URL" in config:
            url = str(config["AUTH_URL"]).rstrip("/")

            def trusted() -> list[Authenticator]:
                return list(trusting(
                    url, client_id=config.get("CLIENT_ID"),
                    client_secret=config.get("CLIENT_SECRET"), issuer=config.get("ISSUER"),
                    audience=config.get("AUDIENCE", "authstate"), jwks=_jwks_client(url, config),
                ))

            return cls(trusted, bearer_decides=decides, portal=portal)
        raise ConfigurationError(
            "AUTHSTATE needs AUTH_URL (a running authstate serve), SETTINGS (its store) "
            "or AUTHENTICATORS"
        )

    @property
    def authentication(self) -> Authentication:
        """The ``authn.Authentication`` this process runs (built on first use)."""
        return self._authentication.get()

    def authenticate(self, environ: Mapping[str, Any]) -> AuthInfo:
        """The verdict on this request, from the same authenticators as the service: in
        this thread when it needs no await (a JWT already verified, ``decided_now``),
        else on the portal."""
        authentication = self._authentication.get()
        credentials = Credentials(scope_of(environ))
        info = authentication.decided_now(credentials)
        return info if info is not None else self.portal.call(authentication, credentials)

    def close(self) -> None:
        """Close the authenticators' connections (a JWKS or introspection client) and the
        ``SyncAuthState``, if any; the portal, shared, stays."""
        self._authentication.close()
        if self.sync is not None:
            self.sync.close()


def _jwks_client(url: str, config: Mapping[str, Any]) -> JWKSClient | None:
    """``JWKS_MIN_REFRESH_INTERVAL`` (seconds between two fetches of the JWK Set when a
    token names an unknown key; ``authstate.jwks`` defaults to 30) when the app sets it."""
    interval = config.get("JWKS_MIN_REFRESH_INTERVAL")
    if interval is None:
        return None
    from authstate.clock import SystemClock
    from authstate.jwks import CACHE_TTL, JWKSClient

    return JWKSClient(f"{url}/.well-known/jwks.json", clock=SystemClock(),
                      min_refresh_interval=float(interval),
                      cache_ttl=max(CACHE_TTL, float(interval)))


class AuthMiddleware:
    """Authenticate every WSGI request; see the module docstring."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        authenticators: Authenticators,
        bearer_decides: bool = False,
        portal: Portal | None = None,
    ) -> None:
        self.app = app
        self.authenticator = RequestAuthenticator(
            authenticators, bearer_decides=bearer_decides, portal=portal
        )

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        info = self.authenticator.authenticate(environ)
        if info.error == "unavailable" and info.identity is None:
            answer = refusal(info)
            assert answer is not None
            return respond(answer, start_response)
        environ[IDENTITY_KEY] = info.identity
        environ[AUTH_KEY] = info
        return self.app(environ, start_response)

    def close(self) -> None:
        self.authenticator.close()


def identity_of(environ: Mapping[str, Any]) -> Identity | None:
    """The caller the middleware found, or None."""
    identity: Identity | None = environ.get(IDENTITY_KEY)
    return identity


def respond(refused: Refusal, start_response: StartResponse) -> list[bytes]:
    """Answer a WSGI request with ``refused``."""
    start_response(f"{refused.status} {refused.reason}", refused.all_headers())
    return [refused.body()]
