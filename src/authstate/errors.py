"""One exception tree for authstate, each leaf with a stable machine ``code``.

Messages are safe to show: they never contain a credential, only a fingerprint at most.
The web layer maps ``code`` to an HTTP answer in one table (``web/problems.py``).

    AuthstateError
    ├── ConfigurationError            configuration_error
    │   ├── MissingDependencyError    missing_dependency
    │   ├── WeakKeyError              weak_key
    │   └── UnusableKey               unusable_key
    ├── StoreError                    store_error
    │   ├── StoreUnavailable          store_unavailable
    │   └── InvalidStoreURL           invalid_store_url
    ├── BusUnavailable                bus_unavailable
    ├── KeysUnavailable               keys_unavailable
    ├── UpstreamUnavailable           upstream_unavailable
    ├── CSRFFailed                    csrf_failed
    ├── SessionNotFound               session_not_found
    ├── SessionNotLoaded              session_not_loaded   (a bug in the app: load first)
    ├── InvalidToken                  invalid_token
    │   ├── MalformedToken            malformed_token
    │   ├── TokenTooLarge             token_too_large
    │   ├── TokenExpired              token_expired
    │   ├── TokenNotYetValid          token_not_yet_valid
    │   ├── BadSignature              bad_signature
    │   ├── UnknownKey                unknown_key
    │   ├── AlgorithmNotAllowed       algorithm_not_allowed
    │   ├── UnsupportedHeader         unsupported_header
    │   ├── MissingClaim              missing_claim
    │   ├── InvalidClaim              invalid_claim
    │   ├── InvalidAudience           invalid_audience
    │   ├── InvalidIssuer             invalid_issuer
    │   └── TokenRevoked              token_revoked
    ├── InvalidGrant                  invalid_grant
    │   └── RefreshReused             refresh_reused
    ├── OAuthRefused                  (RFC 6749 §4.1.2.1 / §5.2 error codes)
    │   ├── InvalidClient             invalid_client
    │   ├── UnauthorizedClient        unauthorized_client
    │   ├── InvalidScope              invalid_scope
    │   ├── UnsupportedGrantType      unsupported_grant_type
    │   ├── UnsupportedResponseType   unsupported_response_type
    │   ├── InvalidRequest            invalid_request
    │   ├── LoginRequired             login_required       (OIDC Core §3.1.2.6)
    │   ├── ConsentRequired           consent_required
    │   ├── RequestNotSupported       request_not_supported
    │   └── RequestUriNotSupported    request_uri_not_supported
    ├── AuthenticationFailed          authentication_failed
    │   └── AccountDisabled           account_disabled (never shown: callers get the parent)
    ├── Throttled                     throttled
    ├── Conflict                      conflict
    ├── NotFound                      not_found
    ├── Refused                       refused
    ├── InsufficientScope             insufficient_scope   (RFC 6750 §3.1)
    └── InvalidInput                  invalid_input
        └── SessionTooLarge           session_too_large
"""

from __future__ import annotations


class AuthstateError(Exception):
    """Root of every error authstate raises on purpose."""

    code = "authstate_error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()


class ConfigurationError(AuthstateError):
    """The configuration is not usable."""

    code = "configuration_error"


class MissingDependencyError(ConfigurationError):
    """An optional dependency is not installed."""

    code = "missing_dependency"

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed: pip install 'authstate[{extra}]'")
        self.package = package
        self.extra = extra


class WeakKeyError(ConfigurationError):
    """A key or secret is too short or too guessable to sign with."""

    code = "weak_key"


class UnusableKey(ConfigurationError):
    """A key cannot be used to sign or verify (wrong type, curve, use or algorithm)."""

    code = "unusable_key"


class StoreError(AuthstateError):
    """The store failed."""

    code = "store_error"


class StoreUnavailable(StoreError):
    """The store cannot be reached; callers fail closed."""

    code = "store_unavailable"


class InvalidStoreURL(StoreError):
    """The store URL is malformed or names an unknown scheme."""

    code = "invalid_store_url"


class BusUnavailable(AuthstateError):
    """The revocation bus cannot be reached."""

    code = "bus_unavailable"


class KeysUnavailable(AuthstateError):
    """The verification keys cannot be fetched and none are cached; callers fail closed."""

    code = "keys_unavailable"


class UpstreamUnavailable(AuthstateError):
    """A service authstate asks on the request path (an introspection endpoint) did not
    answer usably; callers fail closed."""

    code = "upstream_unavailable"


class CSRFFailed(AuthstateError):
    """A cookie-authenticated state change came without the session's CSRF token or from
    another origin."""

    code = "csrf_failed"


class SessionNotFound(AuthstateError):
    """No such session (unknown, expired, revoked or malformed: deliberately the same)."""

    code = "session_not_found"


class SessionNotLoaded(AuthstateError):
    """The app read ``request.session`` before loading it: call ``await
    request.session.load()`` (or ``await load_session(request)``) first, or list this
    path in ``SessionMiddleware(autoload=...)``."""

    code = "session_not_loaded"


class InvalidToken(AuthstateError):
    """The token is not valid."""

    code = "invalid_token"


class MalformedToken(InvalidToken):
    """The token is not a well-formed compact JWS."""

    code = "malformed_token"


class TokenTooLarge(InvalidToken):
    """The token is larger than the accepted maximum."""

    code = "token_too_large"


class TokenExpired(InvalidToken):
    """The token has expired."""

    code = "token_expired"


class TokenNotYetValid(InvalidToken):
    """The token is not valid yet."""

    code = "token_not_yet_valid"


class BadSignature(InvalidToken):
    """The token's signature does not verify."""

    code = "bad_signature"


class UnknownKey(InvalidToken):
    """No key matches the token's key ID."""

    code = "unknown_key"


class AlgorithmNotAllowed(InvalidToken):
    """The token's algorithm is not the key's algorithm."""

    code = "algorithm_not_allowed"


class UnsupportedHeader(InvalidToken):
    """The token carries a header authstate refuses to honour."""

    code = "unsupported_header"


class MissingClaim(InvalidToken):
    """A required claim is missing or has the wrong type."""

    code = "missing_claim"


class InvalidClaim(InvalidToken):
    """A claim has a value authstate does not accept (a date outside 1970..9999)."""

    code = "invalid_claim"


class InvalidAudience(InvalidToken):
    """The token is not meant for this audience."""

    code = "invalid_audience"


class InvalidIssuer(InvalidToken):
    """The token was issued by someone else."""

    code = "invalid_issuer"


class TokenRevoked(InvalidToken):
    """The token has been revoked."""

    code = "token_revoked"


class InvalidGrant(AuthstateError):
    """The grant (refresh token, credentials) is invalid, expired or revoked."""

    code = "invalid_grant"


class RefreshReused(InvalidGrant):
    """A spent refresh token was presented again; its family has been revoked."""

    code = "refresh_reused"


class OAuthRefused(AuthstateError):
    """An OAuth request refused; ``code`` is the RFC 6749 error code itself, so the token
    endpoint answers it unchanged."""

    code = "invalid_request"


class InvalidClient(OAuthRefused):
    """Client authentication failed (unknown client, wrong or missing secret)."""

    code = "invalid_client"


class UnauthorizedClient(OAuthRefused):
    """The client is not allowed this grant type or response type."""

    code = "unauthorized_client"


class InvalidScope(OAuthRefused):
    """A requested scope is unknown, malformed or not allowed to this user or client, or
    a grant's scopes are no longer allowed (a scope taken from the user); also a scope
    name an operator gives that is malformed (400 everywhere)."""

    code = "invalid_scope"


class UnsupportedGrantType(OAuthRefused):
    """The grant type is not supported (or switched off) here."""

    code = "unsupported_grant_type"


class UnsupportedResponseType(OAuthRefused):
    """The authorization endpoint supports only ``response_type=code``."""

    code = "unsupported_response_type"


class InvalidRequest(OAuthRefused):
    """The OAuth request is malformed (a missing, repeated or bad parameter)."""

    code = "invalid_request"


class LoginRequired(OAuthRefused):
    """OIDC Core §3.1.2.6: ``prompt=none`` but nobody is logged in."""

    code = "login_required"


class ConsentRequired(OAuthRefused):
    """OIDC Core §3.1.2.6: ``prompt=none`` but the client needs the user's consent."""

    code = "consent_required"


class RequestNotSupported(OAuthRefused):
    """OIDC Core §6: request objects (``request``) are not supported here."""

    code = "request_not_supported"


class RequestUriNotSupported(OAuthRefused):
    """OIDC Core §6: ``request_uri`` is not supported here."""

    code = "request_uri_not_supported"


class AuthenticationFailed(AuthstateError):
    """Wrong email or password."""

    code = "authentication_failed"


class AccountDisabled(AuthenticationFailed):
    """The password was right but the account is disabled. Raised inside the core only
    so that the audit trail can name the reason; every front end answers exactly as for
    a wrong password (no enumeration), and ``AuthState`` re-raises the parent."""

    code = "account_disabled"


class Throttled(AuthstateError):
    """Too many attempts; try again later."""

    code = "throttled"

    def __init__(self, message: str = "", *, retry_after: int = 60) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Conflict(AuthstateError):
    """The record already exists."""

    code = "conflict"


class NotFound(AuthstateError):
    """No such record (an unknown user ID or email, for operators)."""

    code = "not_found"


class InsufficientScope(AuthstateError):
    """The credential is valid but was not granted the scope this needs (403)."""

    code = "insufficient_scope"


class Refused(AuthstateError):
    """The operation is well-formed but would break an invariant (disabling, demoting or
    deleting the last enabled admin)."""

    code = "refused"


class InvalidInput(AuthstateError):
    """The input is malformed."""

    code = "invalid_input"


class SessionTooLarge(InvalidInput):
    """The session's data would exceed its size limit."""

    code = "session_too_large"
