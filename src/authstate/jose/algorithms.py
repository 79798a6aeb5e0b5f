"""The JWS algorithms authstate signs and verifies with, and their prepared callables.

One registry, built once at import: ``ALGORITHMS`` maps each ``alg`` name (RFC 7518 §3,
RFC 8037) to what it needs (key type, hash, curve, sizes), and ``verifier``/``signer``
build the callables for a loaded key through one mapping from key type to builder. The
key decides the algorithm (``authstate.jose.jwk``); the token header never does.

The callables are built once per key, at load, so the per-request path calls a
prepared function: ``verify(signing_input, signature) -> bool`` and
``sign(signing_input) -> signature``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from authstate.errors import UnusableKey

# The algorithm of a new key set: RS256, OpenID Connect's mandatory-to-implement ID token
# algorithm (Discovery §3 requires it in the metadata, so the default key set has to be
# able to sign it). Key sets already in a store keep their algorithm.
DEFAULT_ALGORITHM = "RS256"

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
        # RFC 7518 §3.2: a key of at least the hash size; "random" is checked in weakkeys.
        "HS256": Algorithm("HS256", "oct", hashes.SHA256, None, 32),
        "HS384": Algorithm("HS384", "oct", hashes.SHA384, None, 48),
        "HS512": Algorithm("HS512", "oct", hashes.SHA512, None, 64),
    }
)
CURVES: Mapping[str, type[ec.EllipticCurve]] = MappingProxyType(
    {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}
)
CURVE_NAMES: Mapping[str, str] = MappingProxyType(
    {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
)


def spec(alg: object) -> Algorithm:
    """The registered algorithm named ``alg``; ``UnusableKey`` for anything else."""
    found = ALGORITHMS.get(alg) if isinstance(alg, str) else None
    if found is None:
        raise UnusableKey(
            f"unsupported algorithm {str(alg)[:20]!r}; supported: {', '.join(ALGORITHMS)}"
        )
    return found


# --- HMAC (the key is a secret, not an object) ----------------------------------------


def hmac_verifier(secret: bytes, alg: Algorithm) -> Verifier:
    assert alg.hash is not None
    digest = alg.hash().name
    mac = hmac.digest
    same = hmac.compare_digest

    def verify(message: bytes, signature: bytes) -> bool:
        return same(mac(secret, message, digest), signature)

    return verify


def hmac_signer(secret: bytes, alg: Algorithm) -> Signer:
    assert alg.hash is not None
    digest = alg.hash().name

    def sign(message: bytes) -> bytes:
        return hmac.digest(secret, message, digest)

    return sign


# --- public-key algorithms ------------------------------------------------------------


def _eddsa_verifier(public: PublicKey, alg: Algorithm) -> Verifier:
    if not isinstance(public, ed25519.Ed25519PublicKey):
        raise UnusableKey(f"{alg.name} needs an Ed25519 key")
    check = public.verify

    def verify(message: bytes, signature: bytes) -> bool:
        try:
            check(signature, message)
        except InvalidSignature:
            return False
        return True

    return verify


def _eddsa_signer(private: PrivateKey, alg: Algorithm) -> Signer | None:
    return private.sign if isinstance(private, ed25519.Ed25519PrivateKey) else None


def _ec_verifier(public: PublicKey, alg: Algorithm) -> Verifier:
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise UnusableKey(f"{alg.name} needs an EC key")
    curve = CURVE_NAMES.get(public.curve.name)
    if curve != alg.crv:
        raise UnusableKey(f"{alg.name} needs curve {alg.crv}, not {public.curve.name}")
    assert alg.hash is not None
    check = public.verify
    size = alg.size
    scheme = ec.ECDSA(alg.hash())
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


def _ec_signer(private: PrivateKey, alg: Algorithm) -> Signer | None:
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        return None
    assert alg.hash is not None
    scheme = ec.ECDSA(alg.hash())
    size = alg.size

    def sign(message: bytes) -> bytes:
        r, s = decode_dss_signature(private.sign(message, scheme))
        return r.to_bytes(size) + s.to_bytes(size)

    return sign


def _rsa_padding(alg: Algorithm) -> padding.AsymmetricPadding:
    assert alg.hash is not None
    if alg.pss:
        # RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash output.
        return padding.PSS(mgf=padding.MGF1(alg.hash()), salt_length=alg.hash().digest_size)
    return padding.PKCS1v15()


def _rsa_verifier(public: PublicKey, alg: Algorithm) -> Verifier:
    if not isinstance(public, rsa.RSAPublicKey):
        raise UnusableKey(f"{alg.name} needs an RSA key")
    assert alg.hash is not None
    check = public.verify
    pad = _rsa_padding(alg)
    digest = alg.hash()

    def verify(message: bytes, signature: bytes) -> bool:
        try:
            check(signature, message, pad, digest)
        except InvalidSignature:
            return False
        return True

    return verify


def _rsa_signer(private: PrivateKey, alg: Algorithm) -> Signer | None:
    if not isinstance(private, rsa.RSAPrivateKey):
        return None
    assert alg.hash is not None
    pad = _rsa_padding(alg)
    digest = alg.hash()

    def sign(message: bytes) -> bytes:
        return private.sign(message, pad, digest)

    return sign


_VERIFIERS: Mapping[str, Callable[[PublicKey, Algorithm], Verifier]] = MappingProxyType(
    {"OKP": _eddsa_verifier, "EC": _ec_verifier, "RSA": _rsa_verifier}
)
_SIGNERS: Mapping[str, Callable[[PrivateKey, Algorithm], Signer | None]] = MappingProxyType(
    {"OKP": _eddsa_signer, "EC": _ec_signer, "RSA": _rsa_signer}
)


def verifier(public: PublicKey, alg: Algorithm) -> Verifier:
    """The prepared verify callable of ``public`` under ``alg``; ``UnusableKey`` when the
    key is not of the type (or curve) the algorithm needs."""
    build = _VERIFIERS.get(alg.kty)
    if build is None:
        raise UnusableKey(f"{alg.name} is an HMAC algorithm; use a secret")
    return build(public, alg)


def signer(private: PrivateKey, alg: Algorithm) -> Signer | None:
    """The prepared sign callable of ``private`` under ``alg`` (call ``verifier`` on its
    public half first: that is where the key type is checked)."""
    build = _SIGNERS.get(alg.kty)
    return None if build is None else build(private, alg)
