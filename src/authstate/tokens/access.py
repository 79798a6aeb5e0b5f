"""Access tokens: compact JWS with minimal claims, issued and verified strictly and fast.

The JWS layer (size cap, strict structure, header policy, the key by ``kid``, the
signature) is ``authstate.jose.jws``; this module is what sits on it: the claims
(``exp``, ``iss``, ``aud``, ``sub``, ``jti`` required; ``nbf``/``iat`` honoured; a
bounded leeway), the ``at+jwt`` type, and issuing.

A token verified once is remembered (``VerifiedTokenCache``, keyed by its SHA-256) until
its ``exp``, so the common case of one token serving many requests skips the crypto.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from authstate.clock import (
    ACCESS_TTL_DEFAULT,
    LEEWAY_DEFAULT,
    LEEWAY_MAX,
    LONG_LIFETIME,
    Clock,
    numeric_date,
)
from authstate.errors import (
    ConfigurationError,
    InvalidAudience,
    InvalidInput,
    InvalidIssuer,
    MalformedToken,
    MissingClaim,
    TokenExpired,
    TokenNotYetValid,
    TokenTooLarge,
    UnsupportedHeader,
)
from authstate.jose.jws import (
    MAX_TOKEN_BYTES,
    CompactVerifier,
    b64url_encode,
    json_object,
    token_bytes,
)

if TYPE_CHECKING:
    from authstate.jose.jwk import SigningKey
    from authstate.keystore import KeySet

TOKEN_TYPE = "at+jwt"  # noqa: S105 -- RFC 9068 §2.1: explicit typing of access tokens
CACHE_SIZE = 10_000

REGISTERED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})
RESERVED_CLAIMS = REGISTERED_CLAIMS | {"sid", "scope", "ver"}
REQUIRED_CLAIMS = ("exp", "iss", "aud", "sub", "jti")

_sha256 = hashlib.sha256


def _numeric_date(claims: Mapping[str, Any], name: str) -> int:
    return numeric_date(claims[name], name)


def check_times(claims: Mapping[str, Any], now: float, leeway: float) -> int:
    """``iat`` and ``nbf`` not after ``now + leeway``, ``exp`` (required) after
    ``now - leeway`` (RFC 7519 §4.1.4-6); the token's ``exp``."""
    if claims.get("exp") is None:
        raise MissingClaim("the token has no exp claim")
    if "iat" in claims and _numeric_date(claims, "iat") > now + leeway:
        raise TokenNotYetValid("the token was issued in the future")
    if "nbf" in claims:
        nbf = _numeric_date(claims, "nbf")
        if nbf > now + leeway:
            raise TokenNotYetValid(f"the token is not valid for another {math.ceil(nbf - now)} s")
    exp = _numeric_date(claims, "exp")
    if exp <= now - leeway:
        raise TokenExpired(f"the token expired {math.floor(now - exp)} s ago")
    return exp


class LocalRevocations(Protocol):
    """What verifying needs from revocation (``revocation.Revocations`` is one): whether
    its in-memory copy is trustworthy right now (push mode), and a check against it."""

    @property
    def local(self) -> bool: ...

    def check_local(self, claims: Mapping[str, Any]) -> None:
        """Raise ``TokenRevoked`` for revoked claims."""


class VerifiedTokenCache:
    """Tokens already verified, by the SHA-256 of the token, until they expire.

    Bounded (least recently used goes first) and holding digests rather than tokens,
    so neither its size nor a memory dump gives tokens away. Revocation calls
    ``forget(jti)`` or ``invalidate(predicate)`` (``Revocations`` is given the cache it
    evicts from); a change of the key set clears it. One cache serves one
    ``AccessTokens`` (its issuer, audience and keys).
    """

    __slots__ = ("_by_jti", "_entries", "hits", "maxsize", "misses")

    def __init__(self, maxsize: int = CACHE_SIZE) -> None:
        if maxsize < 1:
            raise ConfigurationError("a verified-token cache needs room for one token")
        self.maxsize = maxsize
        self._entries: OrderedDict[bytes, tuple[dict[str, Any], float]] = OrderedDict()
        self._by_jti: dict[str, bytes] = {}
        self.hits = 0
        self.misses = 0

    def lookup(self, digest: bytes, now: float) -> dict[str, Any] | None:
        """A copy of the claims of a live cached token, or None."""
        entry = self._entries.get(digest)
        if entry is None:
            self.misses += 1
            return None
        claims, exp = entry
        if exp <= now:
            self._drop(digest)
            self.misses += 1
            return None
        self._entries.move_to_end(digest)
        self.hits += 1
        return dict(claims)

    def peek(self, digest: bytes, now: float) -> dict[str, Any] | None:
        """``lookup`` without its bookkeeping (no LRU move, no counters, no eviction):
        one dictionary read, so a thread other than the cache's owner may call it while
        the owner (the event loop, evicting revoked tokens) changes the cache. The sync
        face's request threads read through it (``AccessTokens.cached``)."""
        entry = self._entries.get(digest)
        if entry is None or entry[1] <= now:
            return None
        return dict(entry[0])

    def store(self, digest: bytes, claims: dict[str, Any], *, exp: float) -> None:
        if digest in self._entries:
            self._drop(digest)
        while len(self._entries) >= self.maxsize:
            self._drop(next(iter(self._entries)))
        self._entries[digest] = (claims, exp)
        jti = claims.get("jti")
        if isinstance(jti, str):
            self._by_jti[jti] = digest

    def _drop(self, digest: bytes) -> None:
        entry = self._entries.pop(digest, None)
        if entry is not None:
            jti = entry[0].get("jti")
            if isinstance(jti, str) and self._by_jti.get(jti) == digest:
                del self._by_jti[jti]

    def forget(self, jti: str) -> bool:
        """Drop the token with this ``jti`` (it was revoked); True when one was cached."""
        digest = self._by_jti.get(jti)
        if digest is None:
            return False
        self._drop(digest)
        return True

    def invalidate(self, predicate: Callable[[Mapping[str, Any]], bool]) -> int:
        """Drop every cached token whose claims match (e.g. a user's tokens below a
        version); how many. O(cache size): for revocation events, not requests."""
        doomed = [d for d, (claims, _) in self._entries.items() if predicate(claims)]
        for digest in doomed:
            self._drop(digest)
        return len(doomed)

    def prune(self, now: float) -> int:
        """Drop expired entries; how many."""
        doomed = [d for d, (_, exp) in self._entries.items() if exp <= now]
        for digest in doomed:
            self._drop(digest)
        return len(doomed)

    def clear(self) -> None:
        self._entries.clear()
        self._by_jti.clear()

    def __len__(self) -> int:
        return len(self._entries)


class AccessTokens:
    """Issue and verify one service's access tokens.

    The claims are minimal: ``iss``, ``sub``, ``aud``, ``iat``, ``exp``, ``jti``, plus
    ``sid`` (an opaque session reference, never the session ID), ``scope`` and ``ver``
    when given; anything else only through ``extra``.

    ``revocation``: checked, in push mode, before a freshly verified token enters the
    cache, so a cache hit needs no check at all (whoever revokes evicts from ``cache``,
    which is then shared with it). Outside push mode the caller checks the store on
    every request, cache hit or not. ``cache``: that shared cache; by default a private
    one of ``cache_size`` tokens (0: none).
    """

    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str,
        audience: str,
        clock: Clock,
        ttl: int = ACCESS_TTL_DEFAULT,
        allow_long_lifetime: bool = False,
        leeway: int = LEEWAY_DEFAULT,
        cache_size: int = CACHE_SIZE,
        cache: VerifiedTokenCache | None = None,
        revocation: LocalRevocations | None = None,
        token_type: str | None = TOKEN_TYPE,
    ) -> None:
        if not issuer or not isinstance(issuer, str):
            raise ConfigurationError("an issuer is required")
        if not audience or not isinstance(audience, str):
            raise ConfigurationError("an audience is required")
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
            raise ConfigurationError("ttl is a whole number of seconds, at least 1")
        if ttl > LONG_LIFETIME and not allow_long_lifetime:
            raise ConfigurationError(
                f"an access token lifetime over {LONG_LIFETIME} s needs allow_long_lifetime=True"
            )
        if isinstance(leeway, bool) or not isinstance(leeway, (int, float)) or not (
            0 <= leeway <= LEEWAY_MAX
        ):
            raise ConfigurationError(f"leeway must be between 0 and {LEEWAY_MAX} seconds")
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.leeway = leeway
        self.token_type = token_type
        self._clock = clock
        self._jws = CompactVerifier(keys)
        if cache is None and cache_size > 0:
            cache = VerifiedTokenCache(cache_size)
        self.cache = cache
        self.revocation = revocation
        self._cache_version = keys.version
        self._cache_checked = False  # whether the cache holds only locally checked tokens
        self._typed_header: Mapping[str, Any] | None = None
        self._header_segments: dict[str, bytes] = {}
        # Retirement must outlast the longest token: widen, never narrow, the key set's.
        keys.max_token_ttl = max(keys.max_token_ttl, float(ttl))
        keys.leeway = max(keys.leeway, float(leeway))
        # The lifecycle is read on the clock the tokens are stamped with.
        keys.clock = clock

    # --- issuing ---

    def issue(
        self,
        sub: str,
        *,
        sid: str | None = None,
        scope: str | Iterable[str] | None = None,
        ver: int | None = None,
        extra: Mapping[str, Any] | None = None,
        ttl: int | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """A signed token and its claims. ``ttl`` may shorten, never lengthen, the
        configured lifetime (key retirement is planned around the configured one)."""
        if not isinstance(sub, str) or not sub:
            raise InvalidInput("sub must be a non-empty string")
        lifetime = self.ttl if ttl is None else ttl
        if isinstance(lifetime, bool) or not isinstance(lifetime, int) or not (
            1 <= lifetime <= self.ttl
        ):
            raise InvalidInput(f"ttl must be between 1 and {self.ttl} seconds")
        moment = self._clock.now()
        key = self.keys.signer_at(moment)  # the lifecycle is checked at sign time
        now = int(moment)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": self.audience,
            "iat": now,
            "exp": now + lifetime,
            "jti": secrets.token_urlsafe(16),
        }
        if sid is not None:
            claims["sid"] = sid
        if scope is not None:
            claims["scope"] = scope if isinstance(scope, str) else " ".join(scope)
        if ver is not None:
            if isinstance(ver, bool) or not isinstance(ver, int):
                raise InvalidInput("ver must be an integer")
            claims["ver"] = ver
        if extra:
            clash = RESERVED_CLAIMS.intersection(extra)
            if clash:
                raise InvalidInput(f"extra claims may not set {', '.join(sorted(clash))}")
            claims.update(extra)
        signing_input = (
            self._header_segment(key)
            + b"."
            + b64url_encode(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
        )
        assert key.create_signature is not None
        token = signing_input + b"." + b64url_encode(key.create_signature(signing_input))
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidInput(f"the claims make a token over {MAX_TOKEN_BYTES} bytes")
        return token.decode("ascii"), claims

    def _header_segment(self, key: SigningKey) -> bytes:
        segment = self._header_segments.get(key.kid)
        if segment is None:
            header = {"alg": key.alg, "kid": key.kid}
            if self.token_type:
                header["typ"] = self.token_type
            segment = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
            self._header_segments[key.kid] = segment
        return segment

    # --- verifying ---

    def verify(self, token: str | bytes) -> dict[str, Any]:
        """The token's claims, or the precise ``InvalidToken`` subclass saying why not."""
        raw = token_bytes(token)
        now = self._clock.now()
        cache = self.cache
        # the local revocation copy, while it is trustworthy (push mode)
        local = self.revocation if self.revocation is not None and self.revocation.local else None
        digest = b""
        if cache is not None:
            # Entries cached outside push mode were never checked against the local copy:
            # forget them on entering it, so every cache hit in push mode is a checked token.
            checked = local is not None
            if self._cache_version != self.keys.version or (checked and not self._cache_checked):
                cache.clear()
                self._cache_version = self.keys.version
            self._cache_checked = checked
            digest = _sha256(raw).digest()
            cached = cache.lookup(digest, now)
            if cached is not None:
                return cached
        header, payload, _ = self._jws.verify_bytes(raw)
        if header is not self._typed_header and self.token_type is not None:
            typ = header.get("typ")
            if type(typ) is not str or typ.lower().removeprefix("application/") != (
                self.token_type
            ):
                raise UnsupportedHeader(f"the token is not of type {self.token_type}")
            self._typed_header = header  # the header cache hands out this same object
        claims = json_object(payload, "payload")
        exp = self.check_claims(claims, now)
        if local is not None:
            local.check_local(claims)  # raises for a revoked token: never cached
        if cache is not None and exp > now:
            cache.store(digest, claims, exp=exp)
            return dict(claims)
        return claims

    def cached(self, token: str | bytes) -> dict[str, Any] | None:
        """The claims of ``token`` when ``verify`` already verified and cached it (and the
        key set has not changed since), else None, which says nothing about the token.

        ``verify``'s cache hit, for a thread that does not own the cache: it reads and
        never writes (``VerifiedTokenCache.peek``), so a miss, a new token or a key
        change is left to ``verify`` on the owning thread."""
        cache = self.cache
        if (
            cache is None
            or self._cache_version != self.keys.version
            or not self._cache_checked  # entries cached outside push mode: unchecked
        ):
            return None
        try:
            raw = token_bytes(token)
        except (MalformedToken, TokenTooLarge):
            return None
        return cache.peek(_sha256(raw).digest(), self._clock.now())

    def check_claims(self, claims: Mapping[str, Any], now: float) -> int:
        """Check the registered claims at ``now``; the token's ``exp``.

        The order and the rules follow PyJWT's ``decode`` with these claims required,
        so that the two agree (tests/test_jwt_differential.py); only the types are
        stricter: a time is a JSON number, not a numeric string or a boolean.
        """
        for name in REQUIRED_CLAIMS:
            if claims.get(name) is None:
                raise MissingClaim(f"the token has no {name} claim")
        exp = check_times(claims, now, self.leeway)
        iss = claims["iss"]
        if type(iss) is not str or iss != self.issuer:
            raise InvalidIssuer("the token was issued by someone else")
        aud = claims["aud"]
        if not aud:
            raise MissingClaim("the token has no aud claim")
        if type(aud) is str:
            if aud != self.audience:
                raise InvalidAudience("the token is not meant for this audience")
        elif type(aud) is list:
            if any(type(a) is not str for a in aud):
                raise InvalidAudience("the aud claim must hold strings")
            if self.audience not in aud:
                raise InvalidAudience("the token is not meant for this audience")
        else:
            raise InvalidAudience("the aud claim must be a string or a list of strings")
        if type(claims["sub"]) is not str:
            raise MissingClaim("the sub claim must be a string")
        if type(claims["jti"]) is not str:
            raise MissingClaim("the jti claim must be a string")
        return exp
