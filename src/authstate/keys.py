"""Signing keys: one algorithm per key, prepared once, rotated through the store.

A key's algorithm is fixed when the key is made or loaded and is what a verifier uses;
the token header only has to agree with it (RFC 8725 §3.1). The cryptography objects
and the verify/sign callables are built once, at load, so the per-request path only
calls a prepared function.

Key material is checked when it is loaded, not when it is used: RSA needs 2048 bits and
a sane exponent and must not carry the ROCA fingerprint; an EC key must sit on the
curve its algorithm names; an HMAC secret must be long enough and not guessable
(``weak_secret_reason``). A key marked for encryption (``use: enc``) never verifies.

Lifecycle, driven by timestamps stored with each key and read against the injected clock,
so every instance computes the same state without a timer of its own:

    published --activate_at--> signing --not_after--> verify_only --retire_at--> retired
    (any of the first three) --revoke--> revoked, at once

A rotated-in key is *published* (in the JWKS, not signing) until ``activate_at`` =
rotation time + the pre-publication period, which is at least the JWKS ``max-age``, so
every verifier that caches the JWKS holds the key before its first token exists. At that
same instant the previous signer stops signing (``not_after``) and verifies until
``retire_at`` = ``not_after`` + the longest token lifetime + leeway, after which none of
its tokens can be alive. The signer is chosen at sign time (``KeySet.signer_at(now)``),
so no token is signed by a key outside its signing window. ``revoke`` ends a key at once.

Several service instances share one key set through the store (kind ``"key"``, record
key = kid) and a version counter (kind ``"key_version"``) that every change bumps: an
instance polls that one cheap record and reloads the set when it moves (``KeyWatcher``),
and a version that went backwards or vanished means the store lost the keys (a Redis
without persistence restarted). Private keys are stored as JWKs in the store; protect
the store accordingly.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from authstate.clock import Clock, SystemClock
from authstate.errors import (
    ConfigurationError,
    InvalidInput,
    UnknownKey,
    UnusableKey,
    WeakKeyError,
)
from authstate.stores.base import JSON, Store

if TYPE_CHECKING:
    from authstate.audit import AuditLog
    from authstate.keywrap import KeyWrap

logger = logging.getLogger("authstate.keys")

KeyStatus = Literal["active", "verify_only", "retired", "revoked"]
ACTIVE: KeyStatus = "active"  # the lifecycle follows the key's timestamps
VERIFY_ONLY: KeyStatus = "verify_only"
RETIRED: KeyStatus = "retired"
REVOKED: KeyStatus = "revoked"
_ENDED = (RETIRED, REVOKED)

# What a key is at a given instant, computed from its status and timestamps.
KeyState = Literal["published", "signing", "verify_only", "retired", "revoked"]

KIND = "key"
VERSION_KIND = "key_version"
VERSION_KEY = "set"
GENESIS_KIND = "key_genesis"
GENESIS_TTL = 60.0  # long enough for a racing instance to adopt the winner's first key
RETIRED_KEEP = 7 * 86400.0  # retired keys stay listed for a week, then the store drops them
RSA_MIN_BITS = 2048  # NIST SP 800-131A; the minimum
DEFAULT_ALGORITHM = "EdDSA"
KID_MAX = 128

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
Verifier = Callable[[bytes, bytes], bool]
Signer = Callable[[bytes], bytes]


@dataclass(frozen=True, slots=True)
class Algorithm:
    """A JWS algorithm (RFC 7518 §3, RFC 8037): the key type it needs and its parameters."""

    name: str
    kty: Literal["OKP", "EC", "RSA", "oct"]
    hash: type[hashes.HashAlgorithm] | None = None
    crv: str | None = None
    size: int = 0  # EC coordinate bytes, Ed25519 key bytes, or the minimum HMAC secret
    pss: bool = False


ALGORITHMS: Mapping[str, Algorithm] = MappingProxyType(
    {
        "EdDSA": Algorithm("EdDSA", "OKP", None, "Ed25519", 32),
        "ES256": Algorithm("ES256", "EC", hashes.SHA256, "P-256", 32),
        "ES384": Algorithm("ES384", "EC", hashes.SHA384, "P-384", 48),
        "ES512": Algorithm("ES512", "EC", hashes.SHA512, "P-521", 66),
        "RS256": Algorithm("RS256", "RSA", hashes.SHA256),
        "RS384": Algorithm("RS384", "RSA", hashes.SHA384),
        "RS512": Algorithm("RS512", "RSA", hashes.SHA512),
        "PS256": Algorithm("PS256", "RSA", hashes.SHA256, pss=True),
        "PS384": Algorithm("PS384", "RSA", hashes.SHA384, pss=True),
        "PS512": Algorithm("PS512", "RSA", hashes.SHA512, pss=True),
        # RFC 7518 §3.2: a key of at least the hash size; "random" is checked below.
        "HS256": Algorithm("HS256", "oct", hashes.SHA256, None, 32),
        "HS384": Algorithm("HS384", "oct", hashes.SHA384, None, 48),
        "HS512": Algorithm("HS512", "oct", hashes.SHA512, None, 64),
    }
)
_CURVES: Mapping[str, type[ec.EllipticCurve]] = MappingProxyType(
    {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}
)
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


# --- weak secrets -------------------------------------------------------------------

COMMON_SECRETS = frozenset(
    {
        "secret", "password", "changeme", "change_me", "change-me", "your-256-bit-secret",
        "your-384-bit-secret", "your-512-bit-secret", "secretkey", "secret_key", "secret-key",
        "jwt_secret", "jwt-secret", "jwtsecret", "mysecret", "my_secret", "supersecret",
        "super_secret", "topsecret", "s3cr3t", "default", "admin", "test", "testing",
        "qwerty", "letmein", "123456", "12345678", "1234567890", "key", "private", "token",
        "hmac", "shhhhh", "not-so-secret", "development", "example", "xxxxxxxx",
    }
)
_TELL_WORDS = (
    "secret", "password", "passwd", "changeme", "change_me", "change-me", "example",
    "default", "qwerty", "letmein", "private",
)
_HEX = frozenset(b"0123456789abcdefABCDEF")
_DIGITS = frozenset(b"0123456789")
_LOWER = frozenset(b"abcdefghijklmnopqrstuvwxyz")
_UPPER = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ALNUM = _DIGITS | _LOWER | _UPPER
_BASE64 = _ALNUM | frozenset(b"+/-_=")
_PRINTABLE = frozenset(range(0x20, 0x7F))


def estimated_entropy_bits(secret: bytes) -> float:
    """An upper estimate of a secret's entropy from the alphabet it draws on.

    A hex string carries 4 bits a character however long it is; random bytes carry 8.
    This cannot see that a random-looking string was published somewhere, only that a
    secret is too short for its alphabet, which is the common mistake.
    """
    symbols = set(secret)
    if symbols <= _HEX and len(secret) % 2 == 0:
        decoded = bytes.fromhex(secret.decode("ascii"))
        if decoded and set(decoded) <= _PRINTABLE:
            return estimated_entropy_bits(decoded)  # text written as hex is still text
    for alphabet, size in (
        (_DIGITS, 10), (_HEX, 16), (_LOWER, 26), (_UPPER, 26), (_ALNUM, 62),
        (_BASE64, 64), (_PRINTABLE, 95),
    ):
        if symbols <= alphabet:
            return len(secret) * math.log2(size)
    return len(secret) * 8.0


def weak_secret_reason(
    secret: bytes | str, *, alg: str = "HS256", wordlist: Iterable[str] = ()
) -> str | None:
    """Why ``secret`` is not fit to sign ``alg`` tokens, or None when it is.

    ``wordlist`` adds known-published secrets (e.g. a cracking list) to the built-in
    short list, for ``authstate inspect``'s lint.
    """
    raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    spec = ALGORITHMS.get(alg)
    minimum = spec.size if spec is not None and spec.kty == "oct" else 32
    text = raw.decode("utf-8", "replace").strip().lower()
    if not raw:
        return "the secret is empty"
    if text in COMMON_SECRETS or text in {w.strip().lower() for w in wordlist if w.strip()}:
        return "the secret is on a list of commonly used secrets"
    if b"-----BEGIN" in raw or raw.startswith((b"ssh-", b"ecdsa-sha2-")):
        return "the secret is a PEM or SSH key: a public key used as an HMAC secret is forgeable"
    for word in _TELL_WORDS:
        if word in text:
            return f"the secret contains the word {word!r}; use random bytes"
    if len(raw) < minimum:
        return (
            f"{alg} needs a secret of at least {minimum} random bytes; this one has {len(raw)}"
        )
    if len(set(raw)) < min(len(raw), 16) // 2 + 1:
        return "the secret repeats too few distinct characters to be random"
    bits = estimated_entropy_bits(raw)
    if bits < 8 * minimum:
        return (
            f"the secret carries at most about {int(bits)} bits of entropy; {alg} needs "
            f"{8 * minimum} (e.g. `python -c 'import secrets; print(secrets.token_urlsafe("
            f"{minimum}))'`)"
        )
    return None


# --- RSA key quality -----------------------------------------------------------------

_ROCA_PRIMES = (
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83,
    89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
)


def _roca_subgroups() -> tuple[tuple[int, frozenset[int]], ...]:
    groups = []
    for p in _ROCA_PRIMES:
        members, x = set(), 1
        while True:
            members.add(x)
            x = (x * 65537) % p
            if x == 1:
                break
        groups.append((p, frozenset(members)))
    return tuple(groups)


_ROCA = _roca_subgroups()


def has_roca_fingerprint(n: int) -> bool:
    """True when ``n`` has the structure of an Infineon RSALib key (CVE-2017-15361).

    Such moduli are products of primes of the form k*M + (65537^a mod M), so ``n`` mod
    each small prime of M lies in the subgroup 65537 generates (Nemec et al., CCS 2017);
    a random modulus passes all these tests with negligible probability.
    """
    return all(n % p in members for p, members in _ROCA)


def _check_rsa(public: rsa.RSAPublicKey) -> None:
    numbers = public.public_numbers()
    if numbers.n.bit_length() < RSA_MIN_BITS:
        raise WeakKeyError(
            f"RSA keys need at least {RSA_MIN_BITS} bits; this one has {numbers.n.bit_length()}"
        )
    if numbers.e < 3 or numbers.e % 2 == 0:
        raise WeakKeyError("RSA public exponent must be odd and at least 3")
    if has_roca_fingerprint(numbers.n):
        raise WeakKeyError("RSA key has the ROCA fingerprint (CVE-2017-15361); replace it")


# --- prepared verify/sign callables --------------------------------------------------


def _hmac_verifier(secret: bytes, digest: str) -> Verifier:
    mac = hmac.digest
    same = hmac.compare_digest

    def verify(message: bytes, signature: bytes) -> bool:
        return same(mac(secret, message, digest), signature)

    return verify


def _hmac_signer(secret: bytes, digest: str) -> Signer:
    def sign(message: bytes) -> bytes:
        return hmac.digest(secret, message, digest)

    return sign


def _eddsa_verifier(public: ed25519.Ed25519PublicKey) -> Verifier:
    check = public.verify

    def verify(message: bytes, signature: bytes) -> bool:
        try:
            check(signature, message)
        except InvalidSignature:
            return False
        return True

    return verify


def _ec_verifier(public: ec.EllipticCurvePublicKey, spec: Algorithm) -> Verifier:
    assert spec.hash is not None
    check = public.verify
    size = spec.size
    scheme = ec.ECDSA(spec.hash())
    from_bytes = int.from_bytes

    def verify(message: bytes, signature: bytes) -> bool:
        # RFC 7518 §3.4: exactly R || S, each padded to the curve size; never DER.
        if len(signature) != 2 * size:
            return False
        der = encode_dss_signature(from_bytes(signature[:size]), from_bytes(signature[size:]))
        try:
            check(der, message, scheme)
        except InvalidSignature:
            return False
        return True

    return verify


def _ec_signer(private: ec.EllipticCurvePrivateKey, spec: Algorithm) -> Signer:
    assert spec.hash is not None
    scheme = ec.ECDSA(spec.hash())
    size = spec.size

    def sign(message: bytes) -> bytes:
        r, s = decode_dss_signature(private.sign(message, scheme))
        return r.to_bytes(size) + s.to_bytes(size)

    return sign


def _rsa_padding(spec: Algorithm) -> padding.AsymmetricPadding:
    assert spec.hash is not None
    if spec.pss:
        # RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash output.
        return padding.PSS(mgf=padding.MGF1(spec.hash()), salt_length=spec.hash().digest_size)
    return padding.PKCS1v15()


def _rsa_verifier(public: rsa.RSAPublicKey, spec: Algorithm) -> Verifier:
    assert spec.hash is not None
    check = public.verify
    pad = _rsa_padding(spec)
    digest = spec.hash()

    def verify(message: bytes, signature: bytes) -> bool:
        try:
            check(signature, message, pad, digest)
        except InvalidSignature:
            return False
        return True

    return verify


def _rsa_signer(private: rsa.RSAPrivateKey, spec: Algorithm) -> Signer:
    assert spec.hash is not None
    pad = _rsa_padding(spec)
    digest = spec.hash()

    def sign(message: bytes) -> bytes:
        return private.sign(message, pad, digest)

    return sign


# --- base64url helpers for JWK members -----------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_member(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise UnusableKey(f"JWK member {name!r} must be a base64url string")
    try:
        return base64.b64decode(
            value.translate(_TO_STD) + "=" * (-len(value) % 4), validate=True
        )
    except (binascii.Error, ValueError):
        raise UnusableKey(f"JWK member {name!r} is not valid base64url") from None


_TO_STD = str.maketrans({"-": "+", "_": "/", "+": "!", "/": "!", "=": "!"})


def thumbprint(public_jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url): a stable, content-derived kid."""
    required = {
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
        "RSA": ("e", "kty", "n"),
        "oct": ("k", "kty"),
    }.get(str(public_jwk.get("kty")))
    if required is None:
        raise UnusableKey("cannot take the thumbprint of an unknown key type")
    canonical = json.dumps(
        {name: public_jwk[name] for name in required}, separators=(",", ":"), sort_keys=True
    )
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


# --- the key ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key with its one algorithm, its lifecycle, and its prepared crypto.

    ``verify_signature(signing_input, signature) -> bool`` and ``create_signature`` are
    built once at load; the token header never chooses either.
    """

    kid: str
    alg: str
    verify_signature: Verifier = field(repr=False, compare=False)
    create_signature: Signer | None = field(default=None, repr=False, compare=False)
    status: KeyStatus = ACTIVE
    created_at: float = 0.0
    not_after: float | None = None  # when it stops signing (rotation)
    retire_at: float | None = None  # when it stops verifying
    private_key: PrivateKey | None = field(default=None, repr=False, compare=False)
    public_key: PublicKey | None = field(default=None, repr=False, compare=False)
    secret: bytes | None = field(default=None, repr=False, compare=False)
    activate_at: float | None = None  # when it starts signing; None: from creation
    revoked_at: float | None = None

    def state(self, now: float) -> KeyState:
        """What the key is at ``now``; a pure function of its stored fields."""
        if self.status == REVOKED:
            return "revoked"
        if self.status == RETIRED or (self.retire_at is not None and now >= self.retire_at):
            return "retired"
        if self.status == VERIFY_ONLY or (self.not_after is not None and now >= self.not_after):
            return "verify_only"
        if self.activate_at is not None and now < self.activate_at:
            return "published"
        return "signing"

    def next_change(self, now: float) -> tuple[KeyState, float] | None:
        """The next state the key enters and when, or None when nothing is scheduled."""
        current = self.state(now)
        for when in sorted(t for t in (self.activate_at, self.not_after, self.retire_at)
                           if t is not None and t > now):
            if (upcoming := self.state(when)) != current:
                return upcoming, when
        return None

    def signs_at(self, now: float) -> bool:
        """Whether this key may sign a token at ``now``."""
        return self.create_signature is not None and self.state(now) == "signing"

    @property
    def activation(self) -> float:
        """When the key started (or starts) signing, to rank signers: newest wins."""
        return self.created_at if self.activate_at is None else self.activate_at

    @property
    def spec(self) -> Algorithm:
        return ALGORITHMS[self.alg]

    @property
    def symmetric(self) -> bool:
        return self.secret is not None

    @property
    def has_private(self) -> bool:
        return self.private_key is not None or self.secret is not None

    @property
    def can_sign(self) -> bool:
        return self.status == ACTIVE and self.create_signature is not None

    @property
    def usable(self) -> bool:
        """Whether it may verify: every key but a retired or revoked one (the poll step
        retires keys as their time comes; a token of a key due to retire has expired)."""
        return self.status not in _ENDED

    def with_status(
        self,
        status: KeyStatus,
        *,
        not_after: float | None = None,
        retire_at: float | None = None,
    ) -> SigningKey:
        return replace(
            self,
            status=status,
            not_after=self.not_after if not_after is None else not_after,
            retire_at=self.retire_at if retire_at is None else retire_at,
        )

    def public_jwk(self) -> dict[str, Any] | None:
        """The public JWK (``use: sig``, ``alg``, ``kid``), or None for an HMAC key."""
        if self.public_key is None:
            return None
        jwk = _public_members(self.public_key)
        jwk.update({"use": "sig", "alg": self.alg, "kid": self.kid})
        return jwk

    def private_jwk(self) -> dict[str, Any]:
        """The full JWK including private members; for the store and key files only."""
        if self.secret is not None:
            return {"kty": "oct", "k": b64url(self.secret), "alg": self.alg, "kid": self.kid}
        if self.private_key is None:
            raise ConfigurationError(f"key {self.kid} has no private part")
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            jwk = OKPAlgorithm.to_jwk(self.private_key, as_dict=True)
        elif isinstance(self.private_key, ec.EllipticCurvePrivateKey):
            jwk = ECAlgorithm.to_jwk(self.private_key, as_dict=True)
        else:
            jwk = RSAAlgorithm.to_jwk(self.private_key, as_dict=True)
        out = dict(jwk)
        out.update({"alg": self.alg, "kid": self.kid})
        return out

    def private_pem(self) -> bytes:
        if self.private_key is None:
            raise ConfigurationError(f"key {self.kid} has no private key to write as PEM")
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    # --- constructors ---

    @classmethod
    def generate(
        cls, alg: str = DEFAULT_ALGORITHM, *, kid: str | None = None, now: float = 0.0
    ) -> SigningKey:
        """A fresh key from the OS CSPRNG (through ``cryptography`` or ``secrets``)."""
        spec = _spec(alg)
        if spec.kty == "oct":
            return cls.from_secret(
                secrets.token_bytes(spec.size), alg=alg, kid=kid or secrets.token_urlsafe(12),
                created_at=now,
            )
        private: PrivateKey
        if spec.kty == "OKP":
            private = ed25519.Ed25519PrivateKey.generate()
        elif spec.kty == "EC":
            assert spec.crv is not None
            private = ec.generate_private_key(_CURVES[spec.crv]())
        else:
            private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_MIN_BITS)
        return cls._from_objects(alg, private=private, kid=kid, created_at=now)

    @classmethod
    def from_secret(
        cls,
        secret: bytes | str,
        *,
        alg: str = "HS256",
        kid: str | None = None,
        status: KeyStatus = ACTIVE,
        created_at: float = 0.0,
        allow_weak: bool = False,
    ) -> SigningKey:
        """An HMAC key. A short or guessable secret is refused (``WeakKeyError`` says why)
        unless ``allow_weak`` (only for inspecting or testing tokens made by others)."""
        spec = _spec(alg)
        if spec.kty != "oct":
            raise UnusableKey(f"{alg} is not an HMAC algorithm; a secret cannot be its key")
        raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if not raw:
            raise WeakKeyError("the HMAC secret is empty")
        reason = weak_secret_reason(raw, alg=alg)
        looks_public = b"-----BEGIN" in raw or raw.startswith((b"ssh-", b"ecdsa-sha2-"))
        if reason is not None and (not allow_weak or looks_public):
            raise WeakKeyError(reason)
        assert spec.hash is not None
        digest = spec.hash().name
        return cls(
            kid=_check_kid(kid) if kid is not None else thumbprint(
                {"kty": "oct", "k": b64url(raw)}
            ),
            alg=alg,
            verify_signature=_hmac_verifier(raw, digest),
            create_signature=_hmac_signer(raw, digest),
            status=status,
            created_at=created_at,
            secret=raw,
        )

    @classmethod
    def from_jwk(
        cls,
        jwk: Mapping[str, Any],
        *,
        alg: str | None = None,
        kid: str | None = None,
        status: KeyStatus = ACTIVE,
        created_at: float = 0.0,
        allow_weak: bool = False,
    ) -> SigningKey:
        """A key from a JWK (RFC 7517). The algorithm is the JWK's ``alg`` or ``alg=``;
        when both are given they must agree. ``use`` must be ``sig`` and ``key_ops``, when
        present, must allow verifying."""
        if not isinstance(jwk, Mapping):
            raise UnusableKey("a JWK must be a JSON object")
        declared = jwk.get("alg")
        if declared is not None and alg is not None and declared != alg:
            raise UnusableKey(f"the JWK is for {declared!r}, not {alg!r}")
        name = alg or declared or _implied_alg(jwk)
        if not isinstance(name, str):
            raise UnusableKey("the JWK does not say its algorithm; pass alg=")
        spec = _spec(name)
        use = jwk.get("use")
        if use is not None and use != "sig":
            raise UnusableKey(f"the JWK is for {use!r}, not for signatures")
        ops = jwk.get("key_ops")
        if ops is not None and (
            not isinstance(ops, list) or not ({"verify", "sign"} & set(map(str, ops)))
        ):
            raise UnusableKey("the JWK's key_ops do not allow signing or verifying")
        if jwk.get("kty") != spec.kty:
            raise UnusableKey(f"{name} needs a {spec.kty} key, not {jwk.get('kty')!r}")
        jwk_kid = jwk.get("kid")
        if jwk_kid is not None and not isinstance(jwk_kid, str):
            raise UnusableKey("the JWK's kid must be a string")
        kid = kid or jwk_kid
        if spec.kty == "oct":
            return cls.from_secret(
                _b64url_member(jwk, "k"), alg=name, kid=kid, status=status,
                created_at=created_at, allow_weak=allow_weak,
            )
        members = dict(jwk)
        if spec.kty in ("EC", "OKP") and members.get("crv") != spec.crv:
            raise UnusableKey(f"{name} needs curve {spec.crv}, not {members.get('crv')!r}")
        if spec.kty == "RSA":
            _check_rsa_members(members)
        try:
            loaded: Any
            if spec.kty == "OKP":
                loaded = OKPAlgorithm.from_jwk(members)
            elif spec.kty == "EC":
                loaded = ECAlgorithm.from_jwk(members)
            else:
                loaded = RSAAlgorithm.from_jwk(members)
        except (InvalidKeyError, ValueError, TypeError, KeyError, UnsupportedAlgorithm) as exc:
            raise UnusableKey(f"the {spec.kty} JWK is not a valid key: {exc}") from None
        if isinstance(loaded, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey,
                               rsa.RSAPrivateKey)):
            return cls._from_objects(
                name, private=loaded, kid=kid, status=status, created_at=created_at
            )
        if isinstance(loaded, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey,
                               rsa.RSAPublicKey)):
            return cls._from_objects(
                name, public=loaded, kid=kid, status=status, created_at=created_at
            )
        raise UnusableKey(f"unsupported key for {name}")

    @classmethod
    def from_pem(
        cls,
        data: bytes | str,
        *,
        alg: str | None = None,
        kid: str | None = None,
        password: bytes | None = None,
        status: KeyStatus = ACTIVE,
        created_at: float = 0.0,
    ) -> SigningKey:
        """A key from PEM (PKCS#8, traditional, SubjectPublicKeyInfo, X.509 certificate)
        or an OpenSSH public key. Ed25519 and EC keys imply their algorithm; RSA keys
        need ``alg=`` (RS256 or PS256 are both possible)."""
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        key: Any
        try:
            if b"PRIVATE KEY-----" in raw:
                key = serialization.load_pem_private_key(raw, password=password)
            elif b"-----BEGIN CERTIFICATE-----" in raw:
                from cryptography import x509

                key = x509.load_pem_x509_certificate(raw).public_key()
            elif b"-----BEGIN" in raw:
                key = serialization.load_pem_public_key(raw)
            elif raw.startswith((b"ssh-", b"ecdsa-sha2-")):
                key = serialization.load_ssh_public_key(raw)
            else:
                raise UnusableKey("not a PEM or OpenSSH key")
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise UnusableKey(f"cannot load the key: {exc}") from None
        name = alg or _alg_for_object(key)
        spec = _spec(name)
        if isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey,
                            rsa.RSAPrivateKey)):
            return cls._from_objects(
                spec.name, private=key, kid=kid, status=status, created_at=created_at
            )
        if isinstance(key, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey,
                            rsa.RSAPublicKey)):
            return cls._from_objects(
                spec.name, public=key, kid=kid, status=status, created_at=created_at
            )
        raise UnusableKey(f"unsupported key type {type(key).__name__}")

    @classmethod
    def from_text(
        cls, text: bytes | str, *, alg: str | None = None, kid: str | None = None
    ) -> SigningKey:
        """A key from whatever a file or an environment variable holds: a JWK (JSON),
        a PEM or OpenSSH key, or else an HMAC secret (``alg`` defaults to HS256)."""
        raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        stripped = raw.strip()
        if stripped.startswith(b"{"):
            try:
                jwk = json.loads(stripped)
            except ValueError:
                raise UnusableKey("the key looks like JSON but does not parse") from None
            return cls.from_jwk(jwk, alg=alg, kid=kid)
        if stripped.startswith((b"-----BEGIN", b"ssh-", b"ecdsa-sha2-")):
            return cls.from_pem(stripped, alg=alg, kid=kid)
        return cls.from_secret(stripped, alg=alg or "HS256", kid=kid)

    @classmethod
    def _from_objects(
        cls,
        alg: str,
        *,
        private: PrivateKey | None = None,
        public: PublicKey | None = None,
        kid: str | None = None,
        status: KeyStatus = ACTIVE,
        created_at: float = 0.0,
    ) -> SigningKey:
        spec = _spec(alg)
        if private is not None:
            public = private.public_key()
        assert public is not None
        signer: Signer | None = None
        verifier: Verifier
        if spec.kty == "OKP":
            if not isinstance(public, ed25519.Ed25519PublicKey):
                raise UnusableKey(f"{alg} needs an Ed25519 key")
            verifier = _eddsa_verifier(public)
            if isinstance(private, ed25519.Ed25519PrivateKey):
                signer = private.sign
        elif spec.kty == "EC":
            if not isinstance(public, ec.EllipticCurvePublicKey):
                raise UnusableKey(f"{alg} needs an EC key")
            curve = _CURVE_NAMES.get(public.curve.name)
            if curve != spec.crv:
                raise UnusableKey(f"{alg} needs curve {spec.crv}, not {public.curve.name}")
            verifier = _ec_verifier(public, spec)
            if isinstance(private, ec.EllipticCurvePrivateKey):
                signer = _ec_signer(private, spec)
        elif spec.kty == "RSA":
            if not isinstance(public, rsa.RSAPublicKey):
                raise UnusableKey(f"{alg} needs an RSA key")
            _check_rsa(public)
            verifier = _rsa_verifier(public, spec)
            if isinstance(private, rsa.RSAPrivateKey):
                signer = _rsa_signer(private, spec)
        else:
            raise UnusableKey(f"{alg} is an HMAC algorithm; use a secret")
        public_members = _public_members(public)
        return cls(
            kid=_check_kid(kid) if kid is not None else thumbprint(public_members),
            alg=alg,
            verify_signature=verifier,
            create_signature=signer,
            status=status,
            created_at=created_at,
            private_key=private,
            public_key=public,
        )


def _spec(alg: object) -> Algorithm:
    spec = ALGORITHMS.get(alg) if isinstance(alg, str) else None
    if spec is None:
        raise UnusableKey(
            f"unsupported algorithm {str(alg)[:20]!r}; supported: {', '.join(ALGORITHMS)}"
        )
    return spec


def _check_kid(kid: object) -> str:
    if not isinstance(kid, str) or not kid or len(kid) > KID_MAX:
        raise UnusableKey(f"a kid must be a non-empty string of at most {KID_MAX} characters")
    return kid


def _implied_alg(jwk: Mapping[str, Any]) -> str | None:
    """The algorithm a JWK without ``alg`` can only mean (EC by curve, Ed25519);
    RSA and oct keys stay ambiguous and need an explicit ``alg``."""
    if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
        return "EdDSA"
    if jwk.get("kty") == "EC":
        return {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}.get(str(jwk.get("crv")))
    return None


def _alg_for_object(key: object) -> str:
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "EdDSA"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        crv = _CURVE_NAMES.get(key.curve.name)
        for name, spec in ALGORITHMS.items():
            if spec.kty == "EC" and spec.crv == crv:
                return name
        raise UnusableKey(f"unsupported curve {key.curve.name}")
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        raise UnusableKey("an RSA key does not imply its algorithm; pass alg= (RS256 or PS256)")
    raise UnusableKey(f"unsupported key type {type(key).__name__}")


def _check_rsa_members(jwk: Mapping[str, Any]) -> None:
    """Size, exponent and ROCA checks on the public numbers, before loading the key,
    so a weak key is reported as weak rather than as whatever the loader trips on."""
    n = int.from_bytes(_b64url_member(jwk, "n"))
    e = int.from_bytes(_b64url_member(jwk, "e"))
    if n.bit_length() < RSA_MIN_BITS:
        raise WeakKeyError(f"RSA keys need at least {RSA_MIN_BITS} bits; this one has "
                           f"{n.bit_length()}")
    if e < 3 or e % 2 == 0:
        raise WeakKeyError("RSA public exponent must be odd and at least 3")
    if has_roca_fingerprint(n):
        raise WeakKeyError("RSA key has the ROCA fingerprint (CVE-2017-15361); replace it")


def _public_members(public: PublicKey) -> dict[str, Any]:
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    if isinstance(public, ec.EllipticCurvePublicKey):
        numbers = public.public_numbers()
        crv = _CURVE_NAMES[public.curve.name]
        size = (public.curve.key_size + 7) // 8
        return {
            "kty": "EC", "crv": crv,
            "x": b64url(numbers.x.to_bytes(size)), "y": b64url(numbers.y.to_bytes(size)),
        }
    numbers_rsa = public.public_numbers()
    return {
        "kty": "RSA",
        "n": b64url(numbers_rsa.n.to_bytes((numbers_rsa.n.bit_length() + 7) // 8)),
        "e": b64url(numbers_rsa.e.to_bytes((numbers_rsa.e.bit_length() + 7) // 8)),
    }


# --- the key set --------------------------------------------------------------------

KeySetListener = Callable[["KeySet"], None]


class KeySet:
    """The keys a service signs and verifies with, looked up by ``kid``.

    At most one key is the signer at any instant: of the keys whose signing window holds
    that instant, the most recently activated (``signer_at``; ``signer`` asks the set's
    clock). Verification uses every key that is not retired or revoked. The set is
    changed only by replacing its whole mapping, so a reader never sees a half-applied
    rotation; ``version`` moves on every change, which is how caches built on the set
    know to drop what they hold.
    """

    __slots__ = ("_candidates", "_keys", "_listeners", "_usable", "clock", "leeway",
                 "max_token_ttl", "version", "wrap")

    def __init__(
        self,
        keys: Iterable[SigningKey] = (),
        *,
        max_token_ttl: float = 600.0,
        leeway: float = 30.0,
        clock: Clock | None = None,
        wrap: KeyWrap | None = None,
    ) -> None:
        self.max_token_ttl = float(max_token_ttl)
        self.leeway = float(leeway)
        self.clock: Clock = clock or SystemClock()
        self.wrap = wrap  # seals private halves when the set is written to a store
        self.version = 0
        self._listeners: list[KeySetListener] = []
        self._keys: Mapping[str, SigningKey] = MappingProxyType({})
        self._usable: Mapping[str, SigningKey] = MappingProxyType({})
        self._candidates: tuple[SigningKey, ...] = ()
        self._install(list(keys))

    def _install(self, keys: list[SigningKey]) -> None:
        by_kid: dict[str, SigningKey] = {}
        for key in keys:
            if key.kid in by_kid:
                raise UnusableKey("two keys share one kid; a kid must name exactly one key")
            by_kid[key.kid] = key
        usable = {kid: k for kid, k in by_kid.items() if k.usable}
        candidates = [k for k in usable.values() if k.can_sign]
        self._keys = MappingProxyType(by_kid)
        self._usable = MappingProxyType(usable)
        # newest first, so ``signer_at`` takes the first one whose window holds ``now``
        self._candidates = tuple(sorted(candidates, key=lambda k: (k.activation, k.kid),
                                        reverse=True))
        self.version += 1
        for listener in list(self._listeners):
            listener(self)

    def on_change(self, listener: KeySetListener) -> None:
        """Call ``listener(keyset)`` after every change (caches, announcements)."""
        self._listeners.append(listener)

    # --- reading ---

    def signer_at(self, now: float) -> SigningKey:
        """The key that signs a token made at ``now``: checked at sign time, so a key
        is never used before its activation or after it stopped signing."""
        for key in self._candidates:
            if key.signs_at(now):
                return key
        raise ConfigurationError("the key set has no active signing key")

    @property
    def signer(self) -> SigningKey:
        return self.signer_at(self.clock.now())

    @property
    def has_signer(self) -> bool:
        now = self.clock.now()
        return any(k.signs_at(now) for k in self._candidates)

    def get(self, kid: str) -> SigningKey | None:
        """The key named ``kid`` if it may still verify (not retired)."""
        return self._usable.get(kid)

    def select(self, kid: object) -> SigningKey:
        """The key a token with header ``kid`` must verify under.

        Without a kid the choice is unambiguous only when the set holds one usable key.
        """
        if kid is None:
            if len(self._usable) == 1:
                return next(iter(self._usable.values()))
            raise UnknownKey("the token has no kid and the key set holds several keys")
        key = self._usable.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise UnknownKey("no key matches the token's kid")
        return key

    def all(self) -> list[SigningKey]:
        """Every key including retired ones, oldest first."""
        return sorted(self._keys.values(), key=lambda k: (k.created_at, k.kid))

    def __iter__(self) -> Iterator[SigningKey]:
        return iter(list(self._usable.values()))

    def __len__(self) -> int:
        return len(self._usable)

    def __contains__(self, kid: object) -> bool:
        return kid in self._usable

    def public_jwks(self) -> dict[str, Any]:
        """The JWK Set other services verify with: public members only, usable keys only."""
        keys = [jwk for k in self.all() if k.usable and (jwk := k.public_jwk()) is not None]
        return {"keys": keys}

    # --- building ---

    @classmethod
    def generate(
        cls, alg: str = DEFAULT_ALGORITHM, *, now: float = 0.0, max_token_ttl: float = 600.0,
        leeway: float = 30.0, clock: Clock | None = None,
    ) -> KeySet:
        return cls([SigningKey.generate(alg, now=now)], max_token_ttl=max_token_ttl,
                   leeway=leeway, clock=clock)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any], **options: Any) -> KeySet:
        return cls([SigningKey.from_jwk(jwk, **options)])

    @classmethod
    def from_pem(cls, data: bytes | str, **options: Any) -> KeySet:
        return cls([SigningKey.from_pem(data, **options)])

    @classmethod
    def from_jwks(
        cls,
        jwks: Mapping[str, Any],
        *,
        public_only: bool = False,
        skip_unusable: bool = False,
        allow_weak: bool = False,
    ) -> KeySet:
        """A verification set from a JWK Set (RFC 7517 §5).

        Refused whole: duplicate kids, a mix of secret and public-key keys, a mix of
        public and private keys, or (``public_only``, for sets fetched from elsewhere)
        any private or secret member. Keys for encryption are left out. A weak or
        malformed key refuses the set unless ``skip_unusable``.
        """
        raw = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(raw, list):
            raise UnusableKey("a JWK Set is an object with a \"keys\" array")
        entries = [k for k in raw if isinstance(k, Mapping)]
        if len(entries) != len(raw):
            raise UnusableKey("every member of \"keys\" must be a JSON object")
        kids = [k.get("kid") for k in entries if k.get("kid") is not None]
        if len(kids) != len(set(map(str, kids))):
            raise UnusableKey("the JWK Set has two keys with one kid")
        kinds = {"oct" if k.get("kty") == "oct" else "asymmetric" for k in entries}
        if len(kinds) > 1:
            raise UnusableKey("the JWK Set mixes HMAC secrets with public-key keys")
        private = {k.get("kty") == "oct" or "d" in k for k in entries}
        if len(private) > 1:
            raise UnusableKey("the JWK Set mixes public and private keys")
        if public_only and True in private:
            raise UnusableKey("a published JWK Set must not contain private or secret keys")
        keys: list[SigningKey] = []
        for entry in entries:
            if entry.get("use", "sig") != "sig":
                continue
            ops = entry.get("key_ops")
            if isinstance(ops, list) and not ({"verify", "sign"} & set(map(str, ops))):
                continue
            try:
                keys.append(SigningKey.from_jwk(entry, allow_weak=allow_weak))
            except (UnusableKey, WeakKeyError):
                if not skip_unusable:
                    raise
        if not keys:
            raise UnusableKey("the JWK Set holds no usable signature key")
        return cls(keys)

    # --- changing ---

    def replace_keys(self, keys: Iterable[SigningKey]) -> None:
        """Swap in a new key list at once (a reload from the store or a JWKS refresh)."""
        self._install(list(keys))

    def add(self, key: SigningKey) -> None:
        self._install([*self._keys.values(), key])

    def remove(self, kid: str) -> SigningKey | None:
        """Drop a key at once, e.g. after a compromise; its tokens stop verifying."""
        key = self._keys.get(kid)
        if key is not None:
            self._install([k for k in self._keys.values() if k.kid != kid])
        return key

    def rotate(self, new_key: SigningKey | None = None, *, now: float,
               alg: str | None = None, prepublish: float = 0.0) -> RotationResult:
        """Bring in ``new_key`` (or a fresh key of ``alg``, default the signer's): it is
        published at once and signs from ``now + prepublish`` (0: at once).

        At that instant every key still due to sign stops signing and verifies until
        ``activation + max_token_ttl + leeway``: by then each token it signed has
        expired, so it can retire without breaking anyone.
        """
        if prepublish < 0:
            raise ConfigurationError("the pre-publication period cannot be negative")
        if new_key is None:
            current = next(iter(self._candidates), None)
            name = alg or (current.alg if current is not None else DEFAULT_ALGORITHM)
            new_key = SigningKey.generate(name, now=now)
        elif new_key.status != ACTIVE or not new_key.can_sign:
            raise ConfigurationError("the new signer must be an active key with a private part")
        activate_at = now + prepublish
        retire_at = activate_at + self.max_token_ttl + self.leeway
        # The status stays "active": the times alone say when it stops signing, so an
        # instance reading this record computes the same state at the same instant.
        demoted = [
            k.with_status(ACTIVE, not_after=activate_at, retire_at=retire_at)
            for k in self._keys.values()
            if k.status == ACTIVE and (k.not_after is None or k.not_after > activate_at)
        ]
        changed = {k.kid for k in demoted}
        kept = [k for k in self._keys.values() if k.kid not in changed]
        new_key = replace(new_key, created_at=max(new_key.created_at, now),
                          activate_at=activate_at)
        self._install([*kept, *demoted, new_key])
        return RotationResult(new_key, tuple(demoted), ())

    def revoke(self, kid: str, *, now: float) -> SigningKey:
        """End ``kid`` at once: it neither signs nor verifies again. The revoked key
        (its private half dropped); ``InvalidInput`` when the set has no such key."""
        key = self._keys.get(kid)
        if key is None:
            raise InvalidInput(f"no key with kid {kid[:KID_MAX]!r}")
        revoked = _public_half(key, status=REVOKED, revoked_at=now)
        self._install([*(k for k in self._keys.values() if k.kid != kid), revoked])
        return revoked

    def retire_expired(self, now: float) -> list[SigningKey]:
        """Retire verify-only keys whose ``retire_at`` has passed; the keys retired, so
        the caller can announce each "kid retired"."""
        retired = [
            k.with_status(RETIRED) for k in self._keys.values()
            if k.status not in _ENDED and k.retire_at is not None and k.retire_at <= now
        ]
        if retired:
            done = {k.kid for k in retired}
            self._install([*(k for k in self._keys.values() if k.kid not in done), *retired])
        return retired


@dataclass(frozen=True, slots=True)
class RotationResult:
    """What a rotation changed: the new signer, the keys turned verify-only, and any
    keys retired on the way (to announce)."""

    signer: SigningKey
    demoted: tuple[SigningKey, ...]
    retired: tuple[SigningKey, ...]


# --- persistence --------------------------------------------------------------------


def _public_half(key: SigningKey, *, status: KeyStatus,
                 revoked_at: float | None = None) -> SigningKey:
    """``key`` ended: it keeps its public half for listing and nothing that could sign
    or verify."""
    return replace(key, status=status, revoked_at=revoked_at, verify_signature=_never,
                   create_signature=None, private_key=None, secret=None)


def _aad(kid: object, alg: object) -> bytes:
    return f"{kid}\0{alg}".encode()


def to_record(key: SigningKey, wrap: KeyWrap | None = None) -> JSON:
    """The stored form. A retired or revoked key keeps only its public half (an HMAC
    key nothing): it will never sign or verify again, so its secret has no reason to
    exist. Every other key keeps its private half, so a restart can still sign with
    it and verify what it signed; with ``wrap`` that half is sealed (``keywrap``)."""
    sealed: JSON | None = None
    if key.status in _ENDED or not key.has_private:
        jwk = key.public_jwk()
    elif wrap is not None:
        jwk = key.public_jwk()
        sealed = wrap.seal(key.private_jwk(), aad=_aad(key.kid, key.alg))
    else:
        jwk = key.private_jwk()
    record: JSON = {
        "kid": key.kid,
        "alg": key.alg,
        "status": key.status,
        "created_at": key.created_at,
        "activate_at": key.activate_at,
        "not_after": key.not_after,
        "retire_at": key.retire_at,
        "revoked_at": key.revoked_at,
        "jwk": jwk,
    }
    if sealed is not None:
        record["sealed"] = sealed
    return record


def _never(message: bytes, signature: bytes) -> bool:
    return False


def _optional_time(value: JSON, name: str) -> float | None:
    raw = value.get(name)
    return None if raw is None else float(raw)


def from_record(value: JSON, wrap: KeyWrap | None = None, *,
                public_only: bool = False) -> SigningKey:
    """The key a record holds. A sealed private half is opened with ``wrap``, or left
    out with ``public_only`` (listing, publishing), else refused: a service without its
    KEK must not quietly carry on without its signing keys."""
    status = value.get("status")
    if status not in (ACTIVE, VERIFY_ONLY, RETIRED, REVOKED):
        raise UnusableKey(f"stored key has an unknown status {status!r}")
    created_at = float(value.get("created_at") or 0.0)
    jwk = value.get("jwk")
    sealed = value.get("sealed")
    if status not in _ENDED and isinstance(sealed, dict) and not public_only:
        if wrap is None:
            raise UnusableKey("the stored signing keys are encrypted; set "
                              "AUTHSTATE_KEY_ENCRYPTION_KEY (or _FILE)")
        jwk = wrap.open(sealed, aad=_aad(value.get("kid"), value.get("alg")))
    if jwk is None:
        key = SigningKey(kid=str(value["kid"]), alg=_spec(value["alg"]).name,
                         verify_signature=_never, status=status, created_at=created_at)
    else:
        key = SigningKey.from_jwk(jwk, alg=value["alg"], kid=value["kid"],
                                  status=status, created_at=created_at)
    key = replace(
        key,
        activate_at=_optional_time(value, "activate_at"),
        not_after=_optional_time(value, "not_after"),
        retire_at=_optional_time(value, "retire_at"),
        revoked_at=_optional_time(value, "revoked_at"),
    )
    return _public_half(key, status=status, revoked_at=key.revoked_at) \
        if status in _ENDED else key


def _record_expiry(key: SigningKey, now: float) -> float | None:
    return now + RETIRED_KEEP if key.status in _ENDED else None


def _fingerprint(key: SigningKey) -> tuple[Any, ...]:
    return (key.kid, key.status, key.activate_at, key.not_after, key.retire_at)


async def bump_version(store: Store) -> int:
    """Record that the stored key set changed; the new version. Every writer of a key
    calls it after writing, so a reader that polls the version never misses a change."""
    return await store.incr(VERSION_KIND, VERSION_KEY)


async def stored_version(store: Store) -> int | None:
    """The key set's version as stored, or None when there is no version record (a
    store from before versions, or one that lost its data)."""
    record = await store.get(VERSION_KIND, VERSION_KEY)
    return None if record is None else int(record.value["n"])


async def _put(store: Store, key: SigningKey, now: float, wrap: KeyWrap | None) -> None:
    await store.put(KIND, key.kid, to_record(key, wrap), expires_at=_record_expiry(key, now))


async def save(store: Store, keyset: KeySet, *, now: float = 0.0) -> None:
    """Write every key of the set (insert or replace)."""
    for key in keyset.all():
        await _put(store, key, now, keyset.wrap)
    await bump_version(store)


async def load(
    store: Store, *, max_token_ttl: float = 600.0, leeway: float = 30.0,
    clock: Clock | None = None, wrap: KeyWrap | None = None, public_only: bool = False,
) -> KeySet:
    """The key set as the store holds it (retired and revoked keys included, for
    listing; ``public_only`` for listing and publishing without the KEK)."""
    records = await store.scan(KIND, limit=10_000)
    return KeySet([from_record(r.value, wrap, public_only=public_only) for r in records],
                  max_token_ttl=max_token_ttl, leeway=leeway, clock=clock, wrap=wrap)


async def rewrap(store: Store, wrap: KeyWrap | None, *, clock: Clock,
                 opener: KeyWrap | None = None) -> int:
    """Re-write every stored private key under ``wrap``'s current KEK (None: as plain
    JWKs), opening each with ``opener`` (default ``wrap``). How many were re-written."""
    now = clock.now()
    count = 0
    for record in await store.scan(KIND, limit=10_000):
        key = from_record(record.value, opener or wrap)
        if key.status in _ENDED or not key.has_private:
            continue
        await _put(store, key, now, wrap)
        count += 1
    await bump_version(store)
    return count


async def sync(store: Store, keyset: KeySet) -> bool:
    """Reload ``keyset`` in place from the store (another instance or the CLI changed
    it); True when something changed."""
    records = await store.scan(KIND, limit=10_000)
    fresh = [from_record(r.value, keyset.wrap) for r in records]
    if {_fingerprint(k) for k in fresh} == {_fingerprint(k) for k in keyset.all()}:
        return False
    keyset.replace_keys(fresh)
    return True


async def load_or_create(
    store: Store,
    *,
    clock: Clock,
    algorithm: str = DEFAULT_ALGORITHM,
    max_token_ttl: float,
    leeway: float = 30.0,
    audit: AuditLog | None = None,
    wrap: KeyWrap | None = None,
) -> KeySet:
    """The shared key set, creating a signer if the store has none that signs now (a
    first start, or a store that lost its keys).

    Two instances starting at once race on one only-if-absent ``create`` of a genesis
    record; the loser adopts the winner's key, so there is one signer, not two.
    """
    keyset = await load(store, max_token_ttl=max_token_ttl, leeway=leeway, clock=clock,
                        wrap=wrap)
    if keyset.has_signer:
        await retire_expired(store, keyset, clock=clock, audit=audit)
        return keyset
    now = clock.now()
    candidate = SigningKey.generate(algorithm, now=now)
    record = to_record(candidate, wrap)
    won = await store.create(GENESIS_KIND, "genesis", record, expires_at=now + GENESIS_TTL)
    if not won:
        genesis = await store.get(GENESIS_KIND, "genesis")
        if genesis is not None:
            record = genesis.value
    elif audit is not None:
        await audit.record("key_generated", detail={"kid": candidate.kid, "alg": candidate.alg})
    if await store.create(KIND, str(record["kid"]), record):
        await bump_version(store)
    keyset = await load(store, max_token_ttl=max_token_ttl, leeway=leeway, clock=clock,
                        wrap=wrap)
    if not keyset.has_signer:
        raise ConfigurationError("the store holds keys but none can sign; run `authstate "
                                 "keys rotate --now`")
    return keyset


async def rotate(
    store: Store,
    keyset: KeySet,
    *,
    clock: Clock,
    new_key: SigningKey | None = None,
    algorithm: str | None = None,
    prepublish: float = 0.0,
    audit: AuditLog | None = None,
) -> RotationResult:
    """Rotate and persist (see ``KeySet.rotate``): the new key is written first, then
    the old signers' end times, then the version, so a reader in between sees two
    signers (the newer wins) rather than none."""
    await sync(store, keyset)  # rotate what the store holds, not a stale copy
    now = clock.now()
    retired = await retire_expired(store, keyset, clock=clock, audit=audit, bump=False)
    result = keyset.rotate(new_key, now=now, alg=algorithm, prepublish=prepublish)
    await _put(store, result.signer, now, keyset.wrap)
    for key in result.demoted:
        await _put(store, key, now, keyset.wrap)
    await bump_version(store)
    if audit is not None:
        await audit.record("key_rotated", detail={
            "kid": result.signer.kid, "alg": result.signer.alg,
            "demoted": [k.kid for k in result.demoted],
            "activate_at": result.signer.activate_at,
        })
    return RotationResult(result.signer, result.demoted, tuple(retired))


@dataclass(frozen=True, slots=True)
class Revocation:
    """What ``revoke`` did: the revoked key, and the key that signs in its place when
    the revoked one was signing (promoted from published, or made at once)."""

    revoked: SigningKey
    replacement: SigningKey | None


async def revoke(
    store: Store,
    keyset: KeySet,
    kid: str,
    *,
    clock: Clock,
    audit: AuditLog | None = None,
) -> Revocation:
    """Revoke ``kid`` at once: every token it signed is refused from now on.

    Revoking the key that signs now never leaves the service without a signer: a
    published key waiting for its turn signs at once, else a new key of the same
    algorithm is made and signs at once (verifiers whose cached JWKS lacks it refetch
    on the unknown kid). ``InvalidInput`` for a kid the store does not hold.
    """
    await sync(store, keyset)
    now = clock.now()
    target = next((k for k in keyset.all() if k.kid == kid), None)
    if target is None:
        raise InvalidInput(f"no key with kid {kid[:KID_MAX]!r}")
    was_signing = target.signs_at(now)
    revoked = keyset.revoke(kid, now=now)
    await _put(store, revoked, now, keyset.wrap)
    replacement: SigningKey | None = None
    if was_signing and not keyset.has_signer:
        waiting = [k for k in keyset if k.create_signature is not None
                   and k.state(now) == "published"]
        if waiting:
            newest = max(waiting, key=lambda k: (k.activation, k.kid))
            replacement = replace(newest, activate_at=now)
            keyset.replace_keys([*(k for k in keyset.all() if k.kid != newest.kid),
                                 replacement])
            await _put(store, replacement, now, keyset.wrap)
        else:
            made = keyset.rotate(now=now, alg=target.alg)
            replacement = made.signer
            for key in (made.signer, *made.demoted):
                await _put(store, key, now, keyset.wrap)
    await bump_version(store)
    if audit is not None:
        await audit.record("key_revoked", detail={
            "kid": kid, "alg": target.alg,
            "replacement": replacement.kid if replacement is not None else None,
        })
    return Revocation(revoked, replacement)


async def retire_expired(
    store: Store, keyset: KeySet, *, clock: Clock, audit: AuditLog | None = None,
    bump: bool = True,
) -> list[SigningKey]:
    """Retire due keys in the set and the store; the retired keys, to announce.

    Every instance runs this from its poll, so the store is written only when its
    record is not retired yet: the first instance to see the time come does it."""
    now = clock.now()
    retired = keyset.retire_expired(now)
    wrote = False
    for key in retired:
        stored = await store.get(KIND, key.kid)
        if stored is not None and stored.value.get("status") in _ENDED:
            continue
        await _put(store, key, now, keyset.wrap)
        wrote = True
        if audit is not None:
            await audit.record("key_retired", detail={"kid": key.kid, "alg": key.alg})
    if wrote and bump:
        await bump_version(store)
    return retired


async def drop_private_halves(store: Store, keyset: KeySet, *, clock: Clock) -> bool:
    """Keep only the public half of asymmetric keys that stopped signing: they verify
    until they retire, but their private half has no use left (HMAC keys verify with
    their secret and keep it). Done a leeway after ``not_after``, so an instance whose
    clock runs a little behind has stopped signing with the key too. True when it wrote.
    """
    now = clock.now()
    due = [k for k in keyset.all()
           if k.status in (ACTIVE, VERIFY_ONLY) and k.private_key is not None
           and k.not_after is not None and k.not_after + keyset.leeway <= now]
    if not due:
        return False
    public = []
    for key in due:
        half = SigningKey.from_jwk(key.public_jwk() or {}, alg=key.alg, kid=key.kid,
                                   status=VERIFY_ONLY, created_at=key.created_at)
        public.append(replace(half, activate_at=key.activate_at, not_after=key.not_after,
                              retire_at=key.retire_at))
    done = {k.kid for k in public}
    keyset.replace_keys([*(k for k in keyset.all() if k.kid not in done), *public])
    wrote = False
    for key in public:
        stored = await store.get(KIND, key.kid)
        jwk = stored.value.get("jwk") if stored is not None else None
        private = (isinstance(jwk, dict) and "d" in jwk) or (
            stored is not None and "sealed" in stored.value)
        if stored is None or not private:
            continue
        await _put(store, key, now, keyset.wrap)
        wrote = True
    if wrote:
        await bump_version(store)
    return wrote


class KeyWatcher:
    """Keeps one instance's key set in step with the store, by polling its version.

    ``poll`` is one cheap read of the version record; only when it moved is the key set
    reloaded. It is the whole mechanism on SQLite (no bus) and the backstop behind the
    bus elsewhere. A version that went backwards, a version record that vanished, or a
    set that can no longer sign means the store lost the keys (a Redis without
    persistence restarted): the set is reloaded, and a new signer made if none is left,
    rather than signing on with a key the store no longer holds.
    """

    def __init__(
        self,
        store: Store,
        keyset: KeySet,
        *,
        clock: Clock,
        algorithm: str = DEFAULT_ALGORITHM,
        audit: AuditLog | None = None,
    ) -> None:
        self.store = store
        self.keyset = keyset
        self.clock = clock
        self.algorithm = algorithm
        self.audit = audit
        self.seen: int | None = None
        self.reloads = 0
        # One reload at a time, and none during a local change: an install always comes
        # from a read that started after the previous install, so a slow read can never
        # put back a key set older than one already in place (a revoked key, say).
        self.lock = asyncio.Lock()

    async def sync(self) -> bool:
        """Reload from the store now (a bus event or a resync asked); True on change."""
        async with self.lock:
            return await sync(self.store, self.keyset)

    async def start(self) -> None:
        """Load (or create) the set and note the version it was loaded at."""
        version = await stored_version(self.store)
        if version is None:
            version = await bump_version(self.store)
        loaded = await load_or_create(
            self.store, clock=self.clock, algorithm=self.algorithm,
            max_token_ttl=self.keyset.max_token_ttl, leeway=self.keyset.leeway,
            audit=self.audit, wrap=self.keyset.wrap,
        )
        self.keyset.replace_keys(loaded.all())
        self.seen = version

    async def poll(self) -> bool:
        """One step: reload when the stored version moved (or the keys were lost), then
        retire what is due. True when the key set changed."""
        async with self.lock:
            return await self._poll()

    async def _poll(self) -> bool:
        version = await stored_version(self.store)
        lost = self.seen is not None and (version is None or version < self.seen)
        if lost:
            logger.warning(
                "the store lost the key set (version %s, was %s): reloading; tokens "
                "signed by lost keys will be refused", version, self.seen,
            )
        changed = False
        if version != self.seen or not self.keyset.has_signer:
            before = self.keyset.version
            if lost or not self.keyset.has_signer:
                await self.start()
            else:
                await sync(self.store, self.keyset)
                self.seen = version
            changed = self.keyset.version != before
            self.reloads += 1
        retired = await retire_expired(self.store, self.keyset, clock=self.clock,
                                       audit=self.audit)
        halved = await drop_private_halves(self.store, self.keyset, clock=self.clock)
        return changed or bool(retired) or halved
