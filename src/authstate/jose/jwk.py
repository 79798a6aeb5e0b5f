"""One signing key: its one algorithm, its lifecycle fields, and its prepared crypto.

A key's algorithm is fixed when the key is made or loaded and is what a verifier uses;
the token header only has to agree with it (RFC 8725 §3.1). The cryptography objects
and the verify/sign callables are built once, at load (``authstate.jose.algorithms``),
so the per-request path only calls a prepared function.

Key material is checked when it is loaded, not when it is used (``authstate.jose.
weakkeys``), and a JWK declared for anything but signatures (``use``, ``key_ops``;
``signature_use_problem``) never verifies. A key exports itself as a public JWK (for
the JWKS), a private JWK (for the store) or PEM (for key files). How keys move through
their states over time, and live in the store, is ``authstate.keystore``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from authstate.errors import ConfigurationError, MalformedToken, UnusableKey, WeakKeyError
from authstate.jose.algorithms import (
    ALGORITHMS,
    CURVE_NAMES,
    CURVES,
    DEFAULT_ALGORITHM,
    Algorithm,
    PrivateKey,
    PublicKey,
    Signer,
    Verifier,
    hmac_signer,
    hmac_verifier,
)
from authstate.jose.algorithms import signer as prepare_signer
from authstate.jose.algorithms import spec as algorithm
from authstate.jose.algorithms import verifier as prepare_verifier
from authstate.jose.jws import b64url_decode, b64url_text
from authstate.jose.weakkeys import (
    RSA_MIN_BITS,
    SSH_PREFIXES,
    check_rsa_numbers,
    looks_like_public_key,
    weak_secret_reason,
)

KeyStatus = Literal["active", "verify_only", "retired", "revoked"]
ACTIVE: KeyStatus = "active"  # the lifecycle follows the key's timestamps
VERIFY_ONLY: KeyStatus = "verify_only"
RETIRED: KeyStatus = "retired"
REVOKED: KeyStatus = "revoked"
ENDED = (RETIRED, REVOKED)

# What a key is at a given instant, computed from its status and timestamps.
KeyState = Literal["published", "signing", "verify_only", "retired", "revoked"]

KID_MAX = 128


def _member(jwk: Mapping[str, Any], name: str) -> bytes:
    """A binary JWK member, through the one strict base64url codec (``jose.jws``)."""
    value = jwk.get(name)
    if not isinstance(value, str):
        raise UnusableKey(f"JWK member {name!r} must be a base64url string")
    try:
        return b64url_decode(value.encode("ascii"), name)
    except (UnicodeEncodeError, MalformedToken):
        raise UnusableKey(f"JWK member {name!r} is not valid base64url") from None


def signature_use_problem(jwk: Mapping[str, Any]) -> str | None:
    """Why this JWK may not sign or verify (RFC 7517 §4.2-4.3), or None when it may:
    ``use`` must be ``sig`` when present, and ``key_ops``, when present, a list that
    allows ``sign`` or ``verify``."""
    use = jwk.get("use")
    if use is not None and use != "sig":
        return f"the JWK is for {use!r}, not for signatures"
    ops = jwk.get("key_ops")
    if ops is not None and (
        not isinstance(ops, list) or not ({"verify", "sign"} & set(map(str, ops)))
    ):
        return "the JWK's key_ops do not allow signing or verifying"
    return None


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
    return b64url_text(hashlib.sha256(canonical.encode("utf-8")).digest())


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
        return self.status not in ENDED

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
            return {"kty": "oct", "k": b64url_text(self.secret), "alg": self.alg, "kid": self.kid}
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
        spec = algorithm(alg)
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
            private = ec.generate_private_key(CURVES[spec.crv]())
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
        spec = algorithm(alg)
        if spec.kty != "oct":
            raise UnusableKey(f"{alg} is not an HMAC algorithm; a secret cannot be its key")
        raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if not raw:
            raise WeakKeyError("the HMAC secret is empty")
        reason = weak_secret_reason(raw, alg=alg)
        if reason is not None and (not allow_weak or looks_like_public_key(raw)):
            raise WeakKeyError(reason)
        return cls(
            kid=_check_kid(kid) if kid is not None else thumbprint(
                {"kty": "oct", "k": b64url_text(raw)}
            ),
            alg=alg,
            verify_signature=hmac_verifier(raw, spec),
            create_signature=hmac_signer(raw, spec),
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
        spec = algorithm(name)
        problem = signature_use_problem(jwk)
        if problem is not None:
            raise UnusableKey(problem)
        if jwk.get("kty") != spec.kty:
            raise UnusableKey(f"{name} needs a {spec.kty} key, not {jwk.get('kty')!r}")
        jwk_kid = jwk.get("kid")
        if jwk_kid is not None and not isinstance(jwk_kid, str):
            raise UnusableKey("the JWK's kid must be a string")
        kid = kid or jwk_kid
        if spec.kty == "oct":
            return cls.from_secret(
                _member(jwk, "k"), alg=name, kid=kid, status=status,
                created_at=created_at, allow_weak=allow_weak,
            )
        members = dict(jwk)
        if spec.kty in ("EC", "OKP") and members.get("crv") != spec.crv:
            raise UnusableKey(f"{name} needs curve {spec.crv}, not {members.get('crv')!r}")
        if spec.kty == "RSA":
            # the weak-key checks on the public numbers, before loading, so a weak key is
            # reported as weak rather than as whatever the loader trips on
            check_rsa_numbers(int.from_bytes(_member(jwk, "n")), int.from_bytes(_member(jwk, "e")))
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
            elif raw.startswith(SSH_PREFIXES):
                key = serialization.load_ssh_public_key(raw)
            else:
                raise UnusableKey("not a PEM or OpenSSH key")
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise UnusableKey(f"cannot load the key: {exc}") from None
        name = alg or _alg_for_object(key)
        spec = algorithm(name)
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
        if stripped.startswith((b"-----BEGIN", *SSH_PREFIXES)):
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
        spec = algorithm(alg)
        if private is not None:
            public = private.public_key()
        assert public is not None
        verifier = prepare_verifier(public, spec)  # checks the key's type and curve
        if isinstance(public, rsa.RSAPublicKey):
            numbers = public.public_numbers()
            check_rsa_numbers(numbers.n, numbers.e)
        signer = prepare_signer(private, spec) if private is not None else None
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
        crv = CURVE_NAMES.get(key.curve.name)
        for name, spec in ALGORITHMS.items():
            if spec.kty == "EC" and spec.crv == crv:
                return name
        raise UnusableKey(f"unsupported curve {key.curve.name}")
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        raise UnusableKey("an RSA key does not imply its algorithm; pass alg= (RS256 or PS256)")
    raise UnusableKey(f"unsupported key type {type(key).__name__}")


def _public_members(public: PublicKey) -> dict[str, Any]:
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_text(raw)}
    if isinstance(public, ec.EllipticCurvePublicKey):
        numbers = public.public_numbers()
        crv = CURVE_NAMES[public.curve.name]
        size = (public.curve.key_size + 7) // 8
        return {
            "kty": "EC", "crv": crv,
            "x": b64url_text(numbers.x.to_bytes(size)), "y": b64url_text(numbers.y.to_bytes(size)),
        }
    numbers_rsa = public.public_numbers()
    return {
        "kty": "RSA",
        "n": b64url_text(numbers_rsa.n.to_bytes((numbers_rsa.n.bit_length() + 7) // 8)),
        "e": b64url_text(numbers_rsa.e.to_bytes((numbers_rsa.e.bit_length() + 7) // 8)),
    }
