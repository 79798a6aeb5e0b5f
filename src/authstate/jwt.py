"""Access tokens: compact JWS with minimal claims, verified strictly and fast.

Verification is staged, each stage with its own error: the size cap before anything
(8 KiB, no parsing of attacker-sized input), then the structure (exactly three parts,
strict base64url: no padding, no foreign characters, no stray trailing bits), then the
header (``alg: none`` in any spelling, ``jku``/``x5u``/``x5c``/``jwk`` and any ``crit``
refused; the key found by ``kid``; the header's ``alg`` must equal that key's), then
the signature with the key's prepared verifier, and only then the claims (``exp``,
``iss``, ``aud``, ``sub``, ``jti`` required; ``nbf``/``iat`` honoured; a bounded leeway).

This parser is authstate's own so that the per-request cost stays near the bare
``cryptography`` call (see ``benchmarks/jwt_verify.py``); PyJWT signs nothing here but is
the reference it is held to: tests/test_jwt_differential.py runs both over every public
vector and over mutated tokens and requires the same verdict and the same claims.

A token verified once is remembered (``VerifiedTokenCache``, keyed by its SHA-256) until
its ``exp``, so the common case of one token serving many requests skips the crypto.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import math
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from authstate.clock import Clock, numeric_date
from authstate.errors import (
    AlgorithmNotAllowed,
    BadSignature,
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
from authstate.keys import KeySet, SigningKey

MAX_TOKEN_BYTES = 8192  # checked before any parsing or crypto
LEEWAY_DEFAULT = 30
LEEWAY_MAX = 300  # RFC 7519 §4.1.4 allows "small" leeway; more hides clock bugs
TTL_DEFAULT = 600  # 10 minutes
TTL_LONG = 3600  # beyond this a lifetime needs allow_long_lifetime=True
TOKEN_TYPE = "at+jwt"  # noqa: S105 -- RFC 9068 §2.1: explicit typing of access tokens
CACHE_SIZE = 10_000
HEADER_CACHE_SIZE = 256

NEVER_TRUSTED_HEADERS = ("jku", "x5u", "x5c", "jwk")  # RFC 8725 §3.10: keys come from us
REGISTERED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})
RESERVED_CLAIMS = REGISTERED_CLAIMS | {"sid", "scope", "ver"}
REQUIRED_CLAIMS = ("exp", "iss", "aud", "sub", "jti")

_STRICT_ALPHABET = bytes.maketrans(b"-_+/=", b"+/!!!")  # '!' is refused by strict mode
_CANONICAL_LAST_2 = frozenset(b"AQgw")  # 2 chars left over: the low 4 bits must be zero
_CANONICAL_LAST_3 = frozenset(b"AEIMQUYcgkosw048")  # 3 left over: the low 2 bits
_a2b = binascii.a2b_base64
_b2a = binascii.b2a_base64
_sha256 = hashlib.sha256
_loads = json.loads


def b64url_decode(segment: bytes, part: str = "segment") -> bytes:
    """Strict base64url (RFC 7515 §2): the URL-safe alphabet only, no padding, and the
    unused bits of the last character zero, so each byte string has one encoding."""
    left = len(segment) & 3
    standard = segment.translate(_STRICT_ALPHABET)
    if left == 2:
        if segment[-1] not in _CANONICAL_LAST_2:
            raise MalformedToken(f"the {part} is not canonical base64url")
        standard += b"=="
    elif left == 3:
        if segment[-1] not in _CANONICAL_LAST_3:
            raise MalformedToken(f"the {part} is not canonical base64url")
        standard += b"="
    elif left == 1:
        raise MalformedToken(f"the {part} has an impossible base64url length")
    try:
        return _a2b(standard, strict_mode=True)
    except binascii.Error:
        raise MalformedToken(f"the {part} is not valid base64url") from None


def b64url_encode(data: bytes) -> bytes:
    return _b2a(data, newline=False).rstrip(b"=").translate(_TO_URLSAFE)


_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def token_bytes(token: str | bytes) -> bytes:
    """The token as ASCII bytes, with the size cap applied first."""
    if isinstance(token, str):
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenTooLarge(f"the token is longer than {MAX_TOKEN_BYTES} bytes")
        try:
            return token.encode("ascii")
        except UnicodeEncodeError:
            raise MalformedToken("the token contains non-ASCII characters") from None
    if isinstance(token, (bytes, bytearray, memoryview)):
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenTooLarge(f"the token is longer than {MAX_TOKEN_BYTES} bytes")
        return bytes(token)
    raise MalformedToken("a token is a string")


def json_object(data: bytes, part: str) -> dict[str, Any]:
    try:
        value = _loads(data)
    except (ValueError, RecursionError):
        raise MalformedToken(f"the {part} is not valid JSON") from None
    if type(value) is not dict:
        raise MalformedToken(f"the {part} is not a JSON object")
    return value


def key_for_header(header: Mapping[str, Any], keys: KeySet) -> SigningKey:
    """The key this header's token must verify under, or the reason it has none.

    The algorithm is the key's; the header's ``alg`` is only checked against it.
    """
    alg = header.get("alg")
    if type(alg) is not str:
        raise AlgorithmNotAllowed("the token header names no algorithm")
    if alg.lower() == "none":
        raise AlgorithmNotAllowed("unsigned tokens (alg none) are never accepted")
    for name in NEVER_TRUSTED_HEADERS:
        if name in header:
            raise UnsupportedHeader(f"the {name} header is never trusted")
    if "crit" in header:
        raise UnsupportedHeader("critical header extensions (crit) are not supported")
    if "b64" in header and header["b64"] is not True:
        raise UnsupportedHeader("unencoded payloads (b64) are not supported")
    kid = header.get("kid")
    if kid is not None and type(kid) is not str:
        raise MalformedToken("the kid header must be a string")
    key = keys.select(kid)
    if alg != key.alg:
        raise AlgorithmNotAllowed("the token's alg is not the algorithm of its key")
    return key


@dataclass(frozen=True, slots=True)
class VerifiedJWS:
    """A compact JWS whose signature verified. ``header`` is shared; do not mutate it."""

    header: Mapping[str, Any]
    payload: bytes
    key: SigningKey


class CompactVerifier:
    """The JWS layer: structure, header policy and signature, for one key set.

    Resolving a header to its key is remembered per distinct header segment (a service
    sees a handful), and forgotten whenever the key set changes.
    """

    __slots__ = ("_headers", "_version", "keys")

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys
        self._headers: dict[bytes, tuple[Mapping[str, Any], SigningKey]] = {}
        self._version = keys.version

    def verify(self, token: str | bytes) -> VerifiedJWS:
        return VerifiedJWS(*self.verify_bytes(token_bytes(token)))

    def verify_bytes(self, raw: bytes) -> tuple[Mapping[str, Any], bytes, SigningKey]:
        """(header, payload, key) of a verified token; the hot path's form."""
        parts = raw.split(b".")
        if len(parts) != 3:
            raise MalformedToken(
                f"a compact JWS has 3 dot-separated parts; this token has {len(parts)}"
            )
        header_seg, payload_seg, signature_seg = parts
        if self._version != self.keys.version:
            self._headers.clear()
            self._version = self.keys.version
        resolved = self._headers.get(header_seg)
        if resolved is None:
            parsed = json_object(b64url_decode(header_seg, "header"), "header")
            resolved = (parsed, key_for_header(parsed, self.keys))
            if len(self._headers) >= HEADER_CACHE_SIZE:
                self._headers.clear()
            self._headers[header_seg] = resolved
        header, key = resolved
        signature = b64url_decode(signature_seg, "signature")
        if not key.verify_signature(raw[: len(header_seg) + 1 + len(payload_seg)], signature):
            raise BadSignature("the token's signature does not verify")
        return header, b64url_decode(payload_seg, "payload"), key


def verify_compact(token: str | bytes, keys: KeySet) -> VerifiedJWS:
    """Verify one compact JWS against ``keys`` (no claims checks: the JWS layer only)."""
    return CompactVerifier(keys).verify(token)


def sign_compact(key: SigningKey, header: Mapping[str, Any], payload: bytes) -> str:
    """A compact JWS of ``payload`` by ``key``; the header's ``alg`` is set from the key."""
    if key.create_signature is None:
        raise ConfigurationError(f"key {key.kid} cannot sign (no private part)")
    protected = dict(header)
    protected["alg"] = key.alg
    signing_input = (
        b64url_encode(json.dumps(protected, separators=(",", ":")).encode("utf-8"))
        + b"."
        + b64url_encode(payload)
    )
    return (signing_input + b"." + b64url_encode(key.create_signature(signing_input))).decode(
        "ascii"
    )


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


class VerifiedTokenCache:
    """Tokens already verified, by the SHA-256 of the token, until they expire.

    Bounded (least recently used goes first) and holding digests rather than tokens,
    so neither its size nor a memory dump gives tokens away. Revocation calls
    ``forget(jti)`` or ``invalidate(predicate)``; a change of the key set clears it.
    One cache serves one ``AccessTokens`` (its issuer, audience and keys).
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
    """

    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str,
        audience: str,
        clock: Clock,
        ttl: int = TTL_DEFAULT,
        allow_long_lifetime: bool = False,
        leeway: int = LEEWAY_DEFAULT,
        cache_size: int = CACHE_SIZE,
        token_type: str | None = TOKEN_TYPE,
    ) -> None:
        if not issuer or not isinstance(issuer, str):
            raise ConfigurationError("an issuer is required")
        if not audience or not isinstance(audience, str):
            raise ConfigurationError("an audience is required")
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
            raise ConfigurationError("ttl is a whole number of seconds, at least 1")
        if ttl > TTL_LONG and not allow_long_lifetime:
            raise ConfigurationError(
                f"an access token lifetime over {TTL_LONG} s needs allow_long_lifetime=True"
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
        self.cache: VerifiedTokenCache | None = (
            VerifiedTokenCache(cache_size) if cache_size > 0 else None
        )
        # A check every freshly verified token passes before it may be cached (revocation,
        # set by AuthState): True caches it, False serves it uncached, raising rejects it.
        # So a cache hit never needs the check again; whoever sets it evicts on change.
        self.admit: Callable[[Mapping[str, Any]], bool] | None = None
        self._cache_version = keys.version
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
        digest = b""
        if cache is not None:
            if self._cache_version != self.keys.version:
                cache.clear()
                self._cache_version = self.keys.version
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
        admitted = self.admit(claims) if self.admit is not None else True
        if cache is not None and exp > now and admitted:
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
        if cache is None or self._cache_version != self.keys.version:
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
