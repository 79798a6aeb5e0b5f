"""authstate's fast-path verifier held to PyJWT's: the same verdict and the same claims.

shared/ARCHITECTURE.md lets the per-request verify parse the compact form itself on the
condition that it agrees with PyJWT's ``decode`` on every public vector and on mutated
tokens. Where the two differ by design the difference is named here with its reason, and
the test checks that it is exactly that difference, so a change on either side shows.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import jwt as pyjwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt import PyJWK
from jwt import exceptions as pyjwt_errors
from jwt.api_jws import PyJWS

from authstate.clock import NUMERIC_DATE_MAX, FrozenClock
from authstate.errors import (
    AuthstateError,
    InvalidAudience,
    InvalidIssuer,
    InvalidToken,
    MissingClaim,
    TokenExpired,
    TokenNotYetValid,
)
from authstate.jose.jwk import SigningKey
from authstate.jose.jws import sign_compact, verify_compact
from authstate.keystore import KeySet
from authstate.tokens.access import AccessTokens
from tests.test_jwt_properties import ALGS, mutations, resigned_claims
from tests.test_vectors_jose import (
    ADVISORY,
    COOKBOOK_COMPACT,
    RFC7515,
    WYCHEPROOF_JWS,
    as_compact,
    cookbook,
    wycheproof_cases,
    wycheproof_verdict,
)

ISSUER, AUDIENCE, LEEWAY = "https://auth.example", "api", 30
NOW = 1_800_000_000
REQUIRED = ["exp", "iss", "aud", "sub", "jti"]

# Where PyJWT accepts and authstate refuses, on purpose.
VECTOR_DIVERGENCES = {
    353: "PyJWT does not check a key's use (RFC 7517 §4.2); a use: enc key never verifies",
    354: "PyJWT does not check a key's use (RFC 7517 §4.2); a use: enc key never verifies",
    355: "PyJWT does not check key_ops (RFC 7517 §4.3); an encrypt-only key never verifies",
    356: "PyJWT does not check key_ops (RFC 7517 §4.3); an encrypt-only key never verifies",
}
PADDING = "PyJWT accepts '=' padding (for AWS ALB); RFC 7515 §2 base64url has none"
NUMERIC_STRINGS = "PyJWT coerces times with int(); a NumericDate is a JSON number (RFC 7519 §2)"

ERROR_PAIRS: dict[type[AuthstateError], tuple[type[Exception], ...]] = {
    TokenExpired: (pyjwt.ExpiredSignatureError,),
    TokenNotYetValid: (pyjwt.ImmatureSignatureError,),
    InvalidAudience: (pyjwt.InvalidAudienceError,),
    InvalidIssuer: (pyjwt.InvalidIssuerError,),
    MissingClaim: (pyjwt_errors.MissingRequiredClaimError, pyjwt_errors.DecodeError,
                   pyjwt_errors.InvalidSubjectError, pyjwt_errors.InvalidJTIError,
                   pyjwt_errors.InvalidIssuedAtError),
}


@contextlib.contextmanager
def pyjwt_clock(now: float) -> Iterator[None]:
    """Pin the "now" PyJWT's claim checks read (``datetime.now`` in ``jwt.api_jwt``)."""

    class Pinned(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Pinned:  # type: ignore[override]
            return cls.fromtimestamp(now, tz or UTC)

    with mock.patch.object(pyjwt.api_jwt, "datetime", Pinned):
        yield


PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}


def pyjwt_jws(token: str | bytes, jwk: dict[str, Any], alg: str | None) -> bytes | Exception:
    """PyJWT's JWS verdict (verifying needs the public half; PyJWK keeps a private key
    private and cannot verify with it)."""
    jwk = {k: v for k, v in jwk.items() if k not in PRIVATE_MEMBERS}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            key = PyJWK(jwk, alg)
            decoded = PyJWS().decode_complete(token, key=key, algorithms=[key.algorithm_name])
    except Exception as error:  # PyJWT's whole hierarchy and key errors alike
        return error
    return decoded["payload"]  # type: ignore[no-any-return]


def pyjwt_jwt(token: str | bytes, key: SigningKey) -> dict[str, Any] | Exception:
    jwk = key.public_jwk() or key.private_jwk()
    try:
        with pyjwt_clock(NOW), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pyjwt.decode(
                token, PyJWK(jwk, key.alg), algorithms=[key.alg], audience=AUDIENCE,
                issuer=ISSUER, leeway=LEEWAY, options={"require": REQUIRED},
            )
    except Exception as error:
        return error


# --- the public vectors, at the JWS layer --------------------------------------------


@pytest.mark.parametrize(("group", "case"), wycheproof_cases(WYCHEPROOF_JWS))
def test_wycheproof_vectors_agree_with_pyjwt(group: dict[str, Any], case: dict[str, Any]
                                             ) -> None:
    jwk = group.get("public") or group["private"]
    mine, code = wycheproof_verdict(group, case)
    theirs = pyjwt_jws(as_compact(case["jws"]), jwk, jwk.get("alg"))
    theirs_verdict = "invalid" if isinstance(theirs, Exception) else "valid"
    if case["tcId"] in VECTOR_DIVERGENCES:
        assert (mine, theirs_verdict) == ("invalid", "valid"), VECTOR_DIVERGENCES[case["tcId"]]
        return
    assert mine == theirs_verdict, f"authstate {code or 'valid'}, PyJWT {theirs!r}"
    if mine == "valid":
        keys = KeySet([SigningKey.from_jwk(jwk, allow_weak=True)])
        assert verify_compact(case["jws"], keys).payload == theirs


def _rfc_and_cookbook() -> list[Any]:
    cases: list[Any] = []
    for name in ("RFC7515_A1", "RFC7515_A2", "RFC7515_A3", "RFC7515_A4"):
        example = RFC7515[name]
        cases.append(pytest.param(example["compact"], example["key"], example["alg"], id=name))
    for name in COOKBOOK_COMPACT:
        case = cookbook(name)
        cases.append(pytest.param(case["output"]["compact"], case["input"]["key"],
                                  case["input"]["alg"], id=name))
    return cases


@pytest.mark.parametrize(("token", "jwk", "alg"), _rfc_and_cookbook())
def test_rfc_and_cookbook_vectors_agree_with_pyjwt(token: str, jwk: dict[str, Any],
                                                   alg: str) -> None:
    mine = verify_compact(token, KeySet([SigningKey.from_jwk(jwk, alg=alg)])).payload
    assert pyjwt_jws(token, jwk, alg) == mine


def test_rfc7515_claims_agree_with_pyjwt_at_a_pinned_time() -> None:
    for name in ("RFC7515_A1", "RFC7515_A2", "RFC7515_A3"):
        example = RFC7515[name]
        key = SigningKey.from_jwk(example["key"], alg=example["alg"])
        mine = json.loads(verify_compact(example["compact"], KeySet([key])).payload)
        for now, expired in ((1300819380 - 10, False), (NOW, True)):
            with pyjwt_clock(now), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    public = key.public_jwk() or example["key"]
                    theirs: Any = pyjwt.decode(example["compact"], PyJWK(public, key.alg),
                                               algorithms=[key.alg], issuer="joe",
                                               options={"require": ["exp"]})
                except pyjwt.ExpiredSignatureError:
                    theirs = "expired"
            assert theirs == ("expired" if expired else mine)


@pytest.mark.parametrize("case", ADVISORY, ids=[c["name"] for c in ADVISORY])
def test_advisory_tokens_agree_with_pyjwt(case: dict[str, Any]) -> None:
    key = SigningKey.from_pem(case["public_key_openssh"])
    jwk = key.public_jwk()
    assert jwk is not None
    good = case.get("good_token_EdDSA") or case["good_token_ES256"]
    assert pyjwt_jws(good, jwk, key.alg) == verify_compact(good, KeySet([key])).payload
    assert isinstance(pyjwt_jws(case["attack_token_HS256"], jwk, key.alg), Exception)


# --- claims, over generated values ---------------------------------------------------

_time = st.one_of(
    st.integers(NOW - 2 * LEEWAY, NOW + 2 * LEEWAY),
    st.integers(0, 2**40),
    st.floats(NOW - 100, NOW + 100),
    st.sampled_from([NOW - LEEWAY, NOW - LEEWAY + 1, NOW + LEEWAY, NOW + LEEWAY + 1]),
)
_odd = st.one_of(st.none(), st.booleans(), st.text(max_size=6), st.lists(st.integers(),
                 max_size=2), st.sampled_from([str(NOW), "", float("nan"), 1e400]))


_REMOVE = object()


@st.composite
def claim_sets(draw: st.DrawFn) -> dict[str, Any]:
    """Right claims with up to three perturbations: a claim removed, given an odd value,
    or (for times) moved around the leeway boundaries."""
    claims: dict[str, Any] = {"iss": ISSUER, "sub": "user", "aud": AUDIENCE, "iat": NOW,
                              "exp": NOW + 600, "jti": "j"}
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["exp", "nbf", "iat", "iss", "aud", "sub", "jti"]))
        if name in ("exp", "nbf", "iat"):
            value = draw(st.one_of(_time, _odd, st.just(_REMOVE)))
        elif name == "aud":
            value = draw(st.one_of(_odd, st.just(_REMOVE), st.lists(
                st.sampled_from([AUDIENCE, "x", 3]), max_size=3)))
        else:
            value = draw(st.one_of(_odd, st.just(_REMOVE), st.just("other")))
        if value is _REMOVE:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


@pytest.fixture(scope="module")
def hs_key() -> SigningKey:
    return SigningKey.generate("HS256", kid="k")


def _coerced_times(claims: dict[str, Any]) -> bool:
    return any(
        isinstance(claims.get(name), (str, bool)) for name in ("exp", "nbf", "iat")
    )


def _out_of_range_times(claims: dict[str, Any]) -> bool:
    """A NumericDate past year 9999: PyJWT takes it, authstate refuses it (issue 10 §4:
    ``exp`` = 10^30 overflowed ``datetime`` downstream), so here only ours is checked."""
    return any(
        type(claims.get(name)) in (int, float)
        and not 0 <= claims[name] <= NUMERIC_DATE_MAX
        for name in ("exp", "nbf", "iat")
    )


def test_claim_rules_agree_with_pyjwt(hs_key: SigningKey) -> None:
    verifier = AccessTokens(KeySet([hs_key]), issuer=ISSUER, audience=AUDIENCE,
                            clock=FrozenClock(NOW), leeway=LEEWAY, cache_size=0)
    seen = {"agree": 0, "coerced": 0, "accepted": 0}

    @settings(max_examples=400, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(claim_sets())
    def check(claims: dict[str, Any]) -> None:
        token = sign_compact(hs_key, {"kid": "k", "typ": "at+jwt"}, json.dumps(claims).encode())
        try:
            mine: Any = verifier.verify(token)
        except InvalidToken as error:
            mine = error
        theirs = pyjwt_jwt(token, hs_key)
        if _coerced_times(claims):  # NUMERIC_STRINGS: we refuse; PyJWT may go either way
            assert isinstance(mine, InvalidToken), (claims, mine)
            seen["coerced"] += 1
            return
        if _out_of_range_times(claims):  # refused, InvalidClaim unless an earlier check
            assert isinstance(mine, InvalidToken), (claims, mine)
            seen["coerced"] += 1
            return
        if isinstance(mine, InvalidToken):
            assert isinstance(theirs, ERROR_PAIRS[type(mine)]), (claims, mine, theirs)
        else:
            assert mine == theirs
            seen["accepted"] += 1
        seen["agree"] += 1

    check()
    assert seen["agree"] > 250 and seen["accepted"] > 30, seen


# --- mutated tokens ------------------------------------------------------------------


@pytest.fixture(scope="module")
def issued() -> dict[str, tuple[AccessTokens, bytes, SigningKey]]:
    out = {}
    for alg in ALGS:
        keys = KeySet.generate(alg, now=NOW)
        tokens = AccessTokens(keys, issuer=ISSUER, audience=AUDIENCE, clock=FrozenClock(NOW),
                              leeway=LEEWAY, cache_size=0)
        out[alg] = (tokens, tokens.issue("user", sid="s", scope="read")[0].encode(),
                    keys.signer)
    return out


@pytest.mark.parametrize("alg", ALGS)
def test_mutated_tokens_agree_with_pyjwt(
    alg: str, issued: dict[str, tuple[AccessTokens, bytes, SigningKey]]
) -> None:
    tokens, token, key = issued[alg]

    @settings(max_examples=150, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.one_of(mutations(token), resigned_claims(token)))
    def check(mutated: bytes) -> None:
        try:
            mine: Any = tokens.verify(mutated)
        except InvalidToken as error:
            mine = error
        theirs = pyjwt_jwt(mutated, key)
        if isinstance(mine, InvalidToken) and not isinstance(theirs, Exception):
            assert b"=" in mutated, PADDING
            assert mine.code == "malformed_token"
            return
        if isinstance(mine, InvalidToken):
            assert isinstance(theirs, Exception)
        else:
            assert mine == theirs

    check()
