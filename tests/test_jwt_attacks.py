"""Each known way to get a forged JWT accepted, built here and refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from authstate.clock import FrozenClock
from authstate.errors import (
    AlgorithmNotAllowed,
    BadSignature,
    InvalidToken,
    MalformedToken,
    TokenExpired,
    TokenNotYetValid,
    TokenTooLarge,
    UnknownKey,
    UnsupportedHeader,
    WeakKeyError,
)
from authstate.jose.jwk import SigningKey
from authstate.jose.jws import b64url_encode, sign_compact
from authstate.keystore import KeySet
from authstate.tokens.access import AccessTokens

ISSUER, AUDIENCE = "https://auth.example", "api"
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def enc(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return b64url_encode(raw).decode()


def assemble(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    return f"{enc(header)}.{enc(claims)}.{b64url_encode(signature).decode()}"


@pytest.fixture(scope="module")
def keysets() -> dict[str, KeySet]:
    return {alg: KeySet.generate(alg) for alg in ("EdDSA", "ES256", "RS256", "HS256")}


@pytest.fixture
def tokens(keysets: dict[str, KeySet], clock: FrozenClock) -> dict[str, AccessTokens]:
    return {
        alg: AccessTokens(keys, issuer=ISSUER, audience=AUDIENCE, clock=clock, cache_size=0)
        for alg, keys in keysets.items()
    }


def claims_at(clock: FrozenClock, **changes: Any) -> dict[str, Any]:
    now = int(clock.now())
    return {"iss": ISSUER, "sub": "admin", "aud": AUDIENCE, "iat": now, "exp": now + 600,
            "jti": "x", **changes}


def hs256(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    signing_input = f"{enc(header)}.{enc(claims)}".encode()
    mac = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode()}.{b64url_encode(mac).decode()}"


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_public_key_used_as_an_hmac_secret(
    alg: str, keysets: dict[str, KeySet], tokens: dict[str, AccessTokens], clock: FrozenClock
) -> None:
    key = keysets[alg].signer
    assert key.public_key is not None
    forms = [
        key.public_key.public_bytes(serialization.Encoding.PEM,
                                    serialization.PublicFormat.SubjectPublicKeyInfo),
        key.public_key.public_bytes(serialization.Encoding.DER,
                                    serialization.PublicFormat.SubjectPublicKeyInfo),
        json.dumps(key.public_jwk()).encode(),
        key.public_key.public_bytes(serialization.Encoding.OpenSSH,
                                    serialization.PublicFormat.OpenSSH),
    ]
    for secret in forms:
        for header in ({"alg": "HS256", "kid": key.kid, "typ": "at+jwt"},
                       {"alg": "HS256", "typ": "at+jwt"}):
            with pytest.raises(AlgorithmNotAllowed) as raised:
                tokens[alg].verify(hs256(secret, header, claims_at(clock)))
            assert raised.value.code == "algorithm_not_allowed"
    with pytest.raises(WeakKeyError):
        SigningKey.from_secret(forms[0], allow_weak=True)


@pytest.mark.parametrize("spelling", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", [b"", b"\x00" * 32, b"garbage-signature"])
def test_alg_none_in_every_spelling(
    spelling: str, signature: bytes, keysets: dict[str, KeySet],
    tokens: dict[str, AccessTokens], clock: FrozenClock,
) -> None:
    for alg, verifier in tokens.items():
        kid = keysets[alg].signer.kid
        for header in ({"alg": spelling}, {"alg": spelling, "kid": kid, "typ": "at+jwt"}):
            with pytest.raises(AlgorithmNotAllowed, match="none"):
                verifier.verify(assemble(header, claims_at(clock), signature))


def test_missing_or_non_string_alg(tokens: dict[str, AccessTokens], clock: FrozenClock) -> None:
    for header in ({}, {"alg": None}, {"alg": ["EdDSA"]}, {"alg": 1}):
        with pytest.raises(AlgorithmNotAllowed):
            tokens["EdDSA"].verify(assemble(header, claims_at(clock), b"sig"))


def test_alg_of_another_family_is_refused(keysets: dict[str, KeySet],
                                          tokens: dict[str, AccessTokens],
                                          clock: FrozenClock) -> None:
    key = keysets["EdDSA"].signer
    signature = key.create_signature(b"x")  # type: ignore[misc]
    for alg in ("ES256", "RS256", "PS256", "HS512", "EdDSA "):
        header = {"alg": alg, "kid": key.kid, "typ": "at+jwt"}
        with pytest.raises(AlgorithmNotAllowed):
            tokens["EdDSA"].verify(assemble(header, claims_at(clock), signature))


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../../../dev/null",
        "/etc/passwd",
        "..\\..\\windows\\win.ini",
        "' OR '1'='1",
        "x' UNION SELECT 'secret' --",
        "key\x00.pem",
        "a" * 10_000,
    ],
)
def test_kid_injection_only_ever_looks_up(kid: str, tokens: dict[str, AccessTokens],
                                           clock: FrozenClock) -> None:
    header = {"alg": "HS256", "kid": kid, "typ": "at+jwt"}
    token = hs256(b"", header, claims_at(clock))  # /dev/null and '' as the "secret"
    with pytest.raises((UnknownKey, TokenTooLarge)):
        tokens["HS256"].verify(token)


@pytest.mark.parametrize("kid", [1, ["a"], {"a": 1}, True])
def test_non_string_kid_is_malformed(kid: Any, tokens: dict[str, AccessTokens],
                                     clock: FrozenClock) -> None:
    with pytest.raises(MalformedToken, match="kid"):
        tokens["HS256"].verify(assemble({"alg": "HS256", "kid": kid}, claims_at(clock), b"s"))


class _CountingHandler(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"keys": []}')

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def attacker_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CountingHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    _CountingHandler.hits = 0
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_key_headers_pointing_at_an_attacker_key_are_refused_unfetched(
    keysets: dict[str, KeySet], tokens: dict[str, AccessTokens], clock: FrozenClock,
    attacker_server: str,
) -> None:
    victim = keysets["EdDSA"].signer
    attacker = SigningKey.generate("EdDSA", kid=victim.kid)
    attacker_jwk = attacker.public_jwk()
    cert_like = base64.b64encode(b"0\x82 not a certificate").decode()
    for extra in (
        {"jwk": attacker_jwk},
        {"jku": f"{attacker_server}/jwks.json"},
        {"x5u": f"{attacker_server}/cert.pem"},
        {"x5c": [cert_like]},
    ):
        token = sign_compact(attacker, {"kid": victim.kid, "typ": "at+jwt", **extra},
                             json.dumps(claims_at(clock)).encode())
        with pytest.raises(UnsupportedHeader) as raised:
            tokens["EdDSA"].verify(token)
        assert raised.value.code == "unsupported_header"
    time.sleep(0.05)
    assert _CountingHandler.hits == 0, "nothing named in a token header is ever fetched"
    # without the header the attacker's signature simply does not verify
    plain = sign_compact(attacker, {"kid": victim.kid, "typ": "at+jwt"},
                         json.dumps(claims_at(clock)).encode())
    with pytest.raises(BadSignature):
        tokens["EdDSA"].verify(plain)


@pytest.mark.parametrize("crit", [["exp"], ["http://example.com/UNDEFINED"], [], "b64"])
def test_crit_and_b64_headers_are_refused(crit: Any, keysets: dict[str, KeySet],
                                          tokens: dict[str, AccessTokens],
                                          clock: FrozenClock) -> None:
    key = keysets["HS256"].signer
    payload = json.dumps(claims_at(clock)).encode()
    token = sign_compact(key, {"kid": key.kid, "typ": "at+jwt", "crit": crit}, payload)
    with pytest.raises(UnsupportedHeader, match="crit"):
        tokens["HS256"].verify(token)
    unencoded = sign_compact(key, {"kid": key.kid, "typ": "at+jwt", "b64": False}, payload)
    with pytest.raises(UnsupportedHeader, match="b64"):
        tokens["HS256"].verify(unencoded)


def _es256(keysets: dict[str, KeySet], clock: FrozenClock, signature: bytes) -> str:
    key = keysets["ES256"].signer
    return assemble({"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}, claims_at(clock),
                    signature)


@pytest.mark.parametrize(
    ("r", "s"),
    [(0, 0), (0, 1), (1, 0), (P256_ORDER, P256_ORDER), (P256_ORDER, 0), (1, P256_ORDER)],
)
def test_psychic_ecdsa_signatures(r: int, s: int, keysets: dict[str, KeySet],
                                  tokens: dict[str, AccessTokens], clock: FrozenClock) -> None:
    """CVE-2022-21449: r = s = 0 (and the order n itself) must never verify."""
    signature = r.to_bytes(32) + s.to_bytes(32)
    with pytest.raises(BadSignature):
        tokens["ES256"].verify(_es256(keysets, clock, signature))


def test_der_encoded_ecdsa_signature_is_not_accepted(keysets: dict[str, KeySet],
                                                     tokens: dict[str, AccessTokens],
                                                     clock: FrozenClock) -> None:
    key = keysets["ES256"].signer
    good = tokens["ES256"].issue("u")[0]
    signing_input = good.rsplit(".", 1)[0].encode()
    assert isinstance(key.private_key, ec.EllipticCurvePrivateKey)
    der = key.private_key.sign(signing_input, ec.ECDSA(key.spec.hash()))  # type: ignore[misc]
    forged = f"{signing_input.decode()}.{b64url_encode(der).decode()}"
    with pytest.raises(BadSignature):
        tokens["ES256"].verify(forged)
    r_s = encode_dss_signature(1, 1)
    with pytest.raises(BadSignature):
        tokens["ES256"].verify(_es256(keysets, clock, r_s))


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256", "HS256"])
def test_truncated_extended_and_empty_signatures(alg: str, tokens: dict[str, AccessTokens]
                                                 ) -> None:
    good, _ = tokens[alg].issue("u")
    head, sig = good.rsplit(".", 1)
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    zero = bytes(1)
    variants = [
        f"{head}.",
        f"{head}.{b64url_encode(raw[:-1]).decode()}",
        f"{head}.{b64url_encode(raw[: len(raw) // 2]).decode()}",
        f"{head}.{b64url_encode(raw[1:]).decode()}",
        f"{head}.{b64url_encode(raw + zero).decode()}",
        f"{head}.{b64url_encode(zero + raw).decode()}",
        f"{head}.{sig[:-1]}",
        f"{head}.{sig[:-4]}",
        head,
        f"{head}.{sig}.",
        f"{head}.{sig}.{sig}",
    ]
    for variant in variants:
        with pytest.raises(InvalidToken) as raised:
            tokens[alg].verify(variant)
        assert raised.value.code in {"bad_signature", "malformed_token"}
    assert tokens[alg].verify(good)["sub"] == "u"


def test_exp_just_past_and_nbf_just_ahead_of_the_leeway(keysets: dict[str, KeySet],
                                                        clock: FrozenClock) -> None:
    key = keysets["EdDSA"].signer
    verifier = AccessTokens(keysets["EdDSA"], issuer=ISSUER, audience=AUDIENCE, clock=clock,
                            leeway=30, cache_size=0)
    now = int(clock.now())

    def signed(**changes: Any) -> str:
        return sign_compact(key, {"kid": key.kid, "typ": "at+jwt"},
                            json.dumps(claims_at(clock, **changes)).encode())

    assert verifier.verify(signed(exp=now - 29, iat=now - 600))
    with pytest.raises(TokenExpired):
        verifier.verify(signed(exp=now - 30, iat=now - 600))
    assert verifier.verify(signed(nbf=now + 30))
    with pytest.raises(TokenNotYetValid):
        verifier.verify(signed(nbf=now + 31))
    assert verifier.verify(signed(iat=now + 30))
    with pytest.raises(TokenNotYetValid):
        verifier.verify(signed(iat=now + 31))


def test_a_mebibyte_token_is_refused_before_any_parsing(tokens: dict[str, AccessTokens]
                                                         ) -> None:
    good, _ = tokens["RS256"].issue("u")
    head, payload, sig = good.split(".")
    huge = f"{head}.{payload}{'A' * (1 << 20)}.{sig}"
    for candidate in (huge, huge.encode(), "." * (1 << 20), "\u00e9" * (1 << 20)):
        start = time.perf_counter()
        with pytest.raises(TokenTooLarge) as raised:
            tokens["RS256"].verify(candidate)
        assert time.perf_counter() - start < 0.05
        assert raised.value.code == "token_too_large"


def test_signature_by_another_key_of_the_same_kid(keysets: dict[str, KeySet],
                                                  tokens: dict[str, AccessTokens],
                                                  clock: FrozenClock) -> None:
    victim = keysets["EdDSA"].signer
    impostor = SigningKey._from_objects(
        "EdDSA", private=ed25519.Ed25519PrivateKey.generate(), kid=victim.kid
    )
    token = sign_compact(impostor, {"kid": victim.kid, "typ": "at+jwt"},
                         json.dumps(claims_at(clock)).encode())
    with pytest.raises(BadSignature):
        tokens["EdDSA"].verify(token)


def test_duplicate_header_members_cannot_smuggle_none(keysets: dict[str, KeySet],
                                                      tokens: dict[str, AccessTokens],
                                                      clock: FrozenClock) -> None:
    kid = keysets["EdDSA"].signer.kid
    header = f'{{"alg":"EdDSA","kid":"{kid}","typ":"at+jwt","alg":"none"}}'.encode()
    token = f"{enc(header)}.{enc(claims_at(clock))}."
    with pytest.raises(AlgorithmNotAllowed):
        tokens["EdDSA"].verify(token)


def test_header_cache_cannot_outlive_a_removed_key(clock: FrozenClock) -> None:
    keys = KeySet.generate("EdDSA")
    verifier = AccessTokens(keys, issuer=ISSUER, audience=AUDIENCE, clock=clock, cache_size=0)
    token, _ = verifier.issue("u")
    verifier.verify(token)
    keys.remove(keys.signer.kid)
    with pytest.raises(UnknownKey):
        verifier.verify(token)
