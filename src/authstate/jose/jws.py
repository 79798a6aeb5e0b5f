"""The compact JWS codec (RFC 7515 §7.1): one strict base64url, one header policy.

Verification is staged, each stage with its own error: the size cap before anything
(8 KiB, no parsing of attacker-sized input), then the structure (exactly three parts,
strict base64url: no padding, no foreign characters, no stray trailing bits), then the
header (``alg: none`` in any spelling, ``jku``/``x5u``/``x5c``/``jwk`` and any ``crit``
refused; the key found by ``kid``; the header's ``alg`` must equal that key's), then
the signature with the key's prepared verifier. Claims are the next layer's
(``authstate.tokens.access``).

``b64url_decode``/``b64url_encode`` are authstate's one base64url codec: JWK members,
``authstate inspect``, sealed key records and stored token pairs decode through it too,
so there is one answer to "is this valid base64url".

This parser is authstate's own so that the per-request cost stays near the bare
``cryptography`` call (see ``benchmarks/jwt_verify.py``); PyJWT is the reference it is
held to: tests/test_jwt_differential.py runs both over every public vector and over
mutated tokens and requires the same verdict and the same claims.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from authstate.errors import (
    AlgorithmNotAllowed,
    BadSignature,
    ConfigurationError,
    MalformedToken,
    TokenTooLarge,
    UnsupportedHeader,
)
from authstate.jose.algorithms import Signer, Verifier

MAX_TOKEN_BYTES = 8192  # checked before any parsing or crypto
HEADER_CACHE_SIZE = 256
NEVER_TRUSTED_HEADERS = ("jku", "x5u", "x5c", "jwk")  # RFC 8725 §3.10: keys come from us


class JWSKey(Protocol):
    """What the codec needs of one key (``authstate.jose.jwk.SigningKey``, which decodes
    its JWK members with this module's codec, so the codec names it only by shape)."""

    @property
    def kid(self) -> str: ...

    @property
    def alg(self) -> str: ...

    @property
    def verify_signature(self) -> Verifier: ...

    @property
    def create_signature(self) -> Signer | None: ...


class KeyLookup(Protocol):
    """What the codec needs of a key set (``authstate.keystore.KeySet``): the key a
    token's ``kid`` names, and a version that moves whenever the keys change."""

    @property
    def version(self) -> int: ...

    def select(self, kid: object) -> JWSKey: ...


_STRICT_ALPHABET = bytes.maketrans(b"-_+/=", b"+/!!!")  # '!' is refused by strict mode
_CANONICAL_LAST_2 = frozenset(b"AQgw")  # 2 chars left over: the low 4 bits must be zero
_CANONICAL_LAST_3 = frozenset(b"AEIMQUYcgkosw048")  # 3 left over: the low 2 bits
_a2b = binascii.a2b_base64
_b2a = binascii.b2a_base64
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


def b64url_text(data: bytes) -> str:
    """``b64url_encode`` as text, for JSON members (a JWK's ``n``, a sealed key)."""
    return b64url_encode(data).decode("ascii")


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


def key_for_header(header: Mapping[str, Any], keys: KeyLookup) -> JWSKey:
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
    key: JWSKey


class CompactVerifier:
    """The JWS layer: structure, header policy and signature, for one key set.

    Resolving a header to its key is remembered per distinct header segment (a service
    sees a handful), and forgotten whenever the key set changes.
    """

    __slots__ = ("_headers", "_version", "keys")

    def __init__(self, keys: KeyLookup) -> None:
        self.keys = keys
        self._headers: dict[bytes, tuple[Mapping[str, Any], JWSKey]] = {}
        self._version = keys.version

    def verify(self, token: str | bytes) -> VerifiedJWS:
        return VerifiedJWS(*self.verify_bytes(token_bytes(token)))

    def verify_bytes(self, raw: bytes) -> tuple[Mapping[str, Any], bytes, JWSKey]:
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


def verify_compact(token: str | bytes, keys: KeyLookup) -> VerifiedJWS:
    """Verify one compact JWS against ``keys`` (no claims checks: the JWS layer only)."""
    return CompactVerifier(keys).verify(token)


def sign_compact(key: JWSKey, header: Mapping[str, Any], payload: bytes) -> str:
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
