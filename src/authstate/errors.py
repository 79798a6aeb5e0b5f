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
    ├── AuthenticationFailed          authentication_failed
    ├── Throttled                     throttled
    ├── Conflict                      conflict
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


class AuthenticationFailed(AuthstateError):
    """Wrong email or password."""

    code = "authentication_failed"


class Throttled(AuthstateError):
    """Too many attempts; try again later."""

    code = "throttled"

    def __init__(self, message: str = "", *, retry_after: int = 60) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Conflict(AuthstateError):
    """The record already exists."""

    code = "conflict"


class InvalidInput(AuthstateError):
    """The input is malformed."""

    code = "invalid_input"


class SessionTooLarge(InvalidInput):
    """The session's data would exceed its size limit."""

    code = "session_too_large"
