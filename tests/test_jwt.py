"""Access tokens: minimal claims, bounded lifetimes, precise errors, the verified cache."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from authstate.clock import FrozenClock
from authstate.errors import (
    ConfigurationError,
    InvalidAudience,
    InvalidInput,
    InvalidIssuer,
    InvalidToken,
    MalformedToken,
    MissingClaim,
    TokenExpired,
    TokenNotYetValid,
    UnknownKey,
    UnsupportedHeader,
)
from authstate.jose.jwk import SigningKey
from authstate.jose.jws import (
    MAX_TOKEN_BYTES,
    b64url_decode,
    b64url_encode,
    sign_compact,
    verify_compact,
)
from authstate.keystore import KeySet
from authstate.tokens.access import AccessTokens, VerifiedTokenCache, check_times

ISSUER = "https://auth.example"
AUDIENCE = "api"
ALGS = ["EdDSA", "ES256", "RS256", "PS256", "HS256"]


@pytest.fixture(scope="module")
def keysets() -> dict[str, KeySet]:
    return {alg: KeySet.generate(alg, now=1_800_000_000.0) for alg in ALGS}


def tokens_for(keys: KeySet, clock: FrozenClock, **options: Any) -> AccessTokens:
    return AccessTokens(keys, issuer=ISSUER, audience=AUDIENCE, clock=clock, **options)


def segments(token: str) -> list[dict[str, Any]]:
    return [json.loads(b64url_decode(p.encode())) for p in token.split(".")[:2]]


def forge(key: SigningKey, claims: dict[str, Any], **header: Any) -> str:
    """A token signed by ``key`` with arbitrary claims (to test the claim rules)."""
    return sign_compact(key, {"kid": key.kid, "typ": "at+jwt", **header},
                        json.dumps(claims).encode())


def good_claims(clock: FrozenClock, **changes: Any) -> dict[str, Any]:
    now = int(clock.now())
    claims = {"iss": ISSUER, "sub": "u1", "aud": AUDIENCE, "iat": now, "exp": now + 600,
              "jti": "j1"}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize("alg", ALGS)
def test_issue_makes_minimal_claims_and_verify_returns_them(
    alg: str, keysets: dict[str, KeySet], clock: FrozenClock
) -> None:
    tokens = tokens_for(keysets[alg], clock)
    token, claims = tokens.issue("user-1")
    assert set(claims) == {"iss", "sub", "aud", "iat", "exp", "jti"}
    assert claims["exp"] - claims["iat"] == 600 and claims["iat"] == int(clock.now())
    header, payload = segments(token)
    assert header == {"alg": alg, "kid": keysets[alg].signer.kid, "typ": "at+jwt"}
    assert payload == claims
    assert tokens.verify(token) == claims
    assert tokens.verify(token.encode()) == claims


def test_optional_claims_only_when_given(keysets: dict[str, KeySet], clock: FrozenClock) -> None:
    tokens = tokens_for(keysets["EdDSA"], clock)
    token, claims = tokens.issue("u", sid="opaque-sid", scope=["read", "write"], ver=3,
                                 extra={"client_id": "cli"})
    assert claims["sid"] == "opaque-sid" and claims["scope"] == "read write"
    assert claims["ver"] == 3 and claims["client_id"] == "cli"
    assert tokens.verify(token) == claims
    assert tokens.issue("u", scope="a b")[1]["scope"] == "a b"
    for reserved in ("exp", "aud", "sid", "iss"):
        with pytest.raises(InvalidInput, match=reserved):
            tokens.issue("u", extra={reserved: "x"})
    with pytest.raises(InvalidInput):
        tokens.issue("")
    with pytest.raises(InvalidInput):
        tokens.issue("u", ver=True)  # type: ignore[arg-type]


def test_lifetime_rules(keysets: dict[str, KeySet], clock: FrozenClock) -> None:
    keys = keysets["EdDSA"]
    assert tokens_for(keys, clock).ttl == 600
    with pytest.raises(ConfigurationError, match="allow_long_lifetime"):
        tokens_for(keys, clock, ttl=3601)
    long_lived = tokens_for(keys, clock, ttl=7200, allow_long_lifetime=True)
    assert long_lived.issue("u")[1]["exp"] - int(clock.now()) == 7200
    assert keys.max_token_ttl >= 7200, "keys retire only after the longest token expires"
    tokens = tokens_for(keys, clock, ttl=300)
    assert tokens.issue("u", ttl=60)[1]["exp"] - int(clock.now()) == 60
    with pytest.raises(InvalidInput):
        tokens.issue("u", ttl=301)
    with pytest.raises(InvalidInput):
        tokens.issue("u", ttl=0)
    for ttl in (0, -5, 1.5, True):
        with pytest.raises(ConfigurationError):
            tokens_for(keys, clock, ttl=ttl)


@pytest.mark.parametrize("leeway", [-1, 301, 1e9, True])
def test_leeway_is_bounded(leeway: Any, keysets: dict[str, KeySet], clock: FrozenClock) -> None:
    with pytest.raises(ConfigurationError, match="leeway"):
        tokens_for(keysets["EdDSA"], clock, leeway=leeway)


def test_configuration_needs_issuer_and_audience(keysets: dict[str, KeySet],
                                                  clock: FrozenClock) -> None:
    with pytest.raises(ConfigurationError):
        AccessTokens(keysets["EdDSA"], issuer="", audience="a", clock=clock)
    with pytest.raises(ConfigurationError):
        AccessTokens(keysets["EdDSA"], issuer="i", audience="", clock=clock)


def test_expiry_with_leeway(keysets: dict[str, KeySet], clock: FrozenClock) -> None:
    tokens = tokens_for(keysets["ES256"], clock, leeway=30, cache_size=0)
    token, claims = tokens.issue("u")
    clock.set(claims["exp"] + 29)
    assert tokens.verify(token) == claims
    clock.set(claims["exp"] + 30)
    with pytest.raises(TokenExpired) as raised:
        tokens.verify(token)
    assert raised.value.code == "token_expired" and "30 s ago" in raised.value.message


def test_not_before_and_issued_in_the_future(keysets: dict[str, KeySet],
                                             clock: FrozenClock) -> None:
    key = keysets["EdDSA"].signer
    tokens = tokens_for(keysets["EdDSA"], clock, leeway=10, cache_size=0)
    now = int(clock.now())
    assert tokens.verify(forge(key, good_claims(clock, nbf=now + 10)))["nbf"] == now + 10
    with pytest.raises(TokenNotYetValid) as raised:
        tokens.verify(forge(key, good_claims(clock, nbf=now + 11)))
    assert raised.value.code == "token_not_yet_valid"
    with pytest.raises(TokenNotYetValid, match="future"):
        tokens.verify(forge(key, good_claims(clock, iat=now + 11)))


@pytest.mark.parametrize(
    ("changes", "error", "code"),
    [
        ({"exp": None}, MissingClaim, "missing_claim"),
        ({"iss": None}, MissingClaim, "missing_claim"),
        ({"aud": None}, MissingClaim, "missing_claim"),
        ({"sub": None}, MissingClaim, "missing_claim"),
        ({"jti": None}, MissingClaim, "missing_claim"),
        ({"aud": ""}, MissingClaim, "missing_claim"),
        ({"aud": []}, MissingClaim, "missing_claim"),
        ({"exp": "1900000000"}, MissingClaim, "missing_claim"),
        ({"exp": True}, MissingClaim, "missing_claim"),
        ({"nbf": "0"}, MissingClaim, "missing_claim"),
        ({"sub": 42}, MissingClaim, "missing_claim"),
        ({"jti": ["a"]}, MissingClaim, "missing_claim"),
        ({"iss": "https://evil.example"}, InvalidIssuer, "invalid_issuer"),
        ({"iss": ["https://auth.example"]}, InvalidIssuer, "invalid_issuer"),
        ({"aud": "other"}, InvalidAudience, "invalid_audience"),
        ({"aud": ["other", 1]}, InvalidAudience, "invalid_audience"),
        ({"aud": {"api": True}}, InvalidAudience, "invalid_audience"),
    ],
)
def test_each_claim_failure_has_its_own_error(
    changes: dict[str, Any], error: type[InvalidToken], code: str,
    keysets: dict[str, KeySet], clock: FrozenClock,
) -> None:
    key = keysets["HS256"].signer
    tokens = tokens_for(keysets["HS256"], clock)
    with pytest.raises(error) as raised:
        tokens.verify(forge(key, good_claims(clock, **changes)))
    assert raised.value.code == code
    assert isinstance(raised.value, InvalidToken)


def test_audience_list_and_float_times(keysets: dict[str, KeySet], clock: FrozenClock) -> None:
    key = keysets["EdDSA"].signer
    tokens = tokens_for(keysets["EdDSA"], clock)
    claims = good_claims(clock, aud=["other", AUDIENCE], exp=clock.now() + 0.5)
    assert tokens.verify(forge(key, claims))["aud"] == ["other", AUDIENCE]


def test_payload_must_be_a_json_object(keysets: dict[str, KeySet], clock: FrozenClock) -> None:
    key = keysets["EdDSA"].signer
    tokens = tokens_for(keysets["EdDSA"], clock)
    for payload in (b"[]", b"not json", b"\xff\xfe", b'"s"', b"1"):
        token = sign_compact(key, {"kid": key.kid, "typ": "at+jwt"}, payload)
        with pytest.raises(MalformedToken, match="payload"):
            tokens.verify(token)


def test_token_type_is_checked(keysets: dict[str, KeySet], clock: FrozenClock) -> None:
    key = keysets["EdDSA"].signer
    tokens = tokens_for(keysets["EdDSA"], clock)
    for typ in ("JWT", "id+jwt", None):
        with pytest.raises(UnsupportedHeader, match="at\\+jwt"):
            tokens.verify(forge(key, good_claims(clock), typ=typ))
    assert tokens.verify(forge(key, good_claims(clock), typ="application/AT+JWT"))
    untyped = tokens_for(keysets["EdDSA"], clock, token_type=None)
    assert untyped.verify(forge(key, good_claims(clock), typ="JWT"))["sub"] == "u1"


def test_tokens_from_another_key_set_name_an_unknown_key(keysets: dict[str, KeySet],
                                                         clock: FrozenClock) -> None:
    token, _ = tokens_for(keysets["EdDSA"], clock).issue("u")
    with pytest.raises(UnknownKey) as raised:
        tokens_for(KeySet.generate("EdDSA"), clock).verify(token)
    assert raised.value.code == "unknown_key"


def test_a_verifier_needs_only_the_public_jwks(keysets: dict[str, KeySet],
                                               clock: FrozenClock) -> None:
    token, claims = tokens_for(keysets["RS256"], clock).issue("u")
    public = KeySet.from_jwks(keysets["RS256"].public_jwks(), public_only=True)
    verifier = tokens_for(public, clock)
    assert verifier.verify(token) == claims
    with pytest.raises(ConfigurationError):
        verifier.issue("u")


def test_rotated_out_key_verifies_until_retired(clock: FrozenClock) -> None:
    keys = KeySet.generate("EdDSA", now=clock.now())
    tokens = tokens_for(keys, clock, cache_size=0)
    old_token, _ = tokens.issue("u")
    keys.rotate(now=clock.now())
    new_token, _ = tokens.issue("u")
    assert segments(new_token)[0]["kid"] == keys.signer.kid != segments(old_token)[0]["kid"]
    clock.advance(599)
    assert tokens.verify(old_token)["sub"] == "u"
    keys.retire_expired(clock.now() + 31)
    with pytest.raises(UnknownKey):
        tokens.verify(old_token)


def test_size_cap_and_types(keysets: dict[str, KeySet], clock: FrozenClock) -> None:
    tokens = tokens_for(keysets["EdDSA"], clock)
    with pytest.raises(InvalidToken) as raised:
        tokens.verify("a" * (MAX_TOKEN_BYTES + 1))
    assert raised.value.code == "token_too_large"
    with pytest.raises(MalformedToken):
        tokens.verify(12345)  # type: ignore[arg-type]
    with pytest.raises(MalformedToken, match="non-ASCII"):
        tokens.verify("é.é.é")
    with pytest.raises(InvalidInput, match="over"):
        tokens.issue("u", extra={"blob": "x" * MAX_TOKEN_BYTES})


def test_base64url_is_strict() -> None:
    assert b64url_decode(b"") == b""
    assert b64url_decode(b"YQ") == b"a" and b64url_encode(b"a") == b"YQ"
    assert b64url_decode(b"-_-_") == base64.urlsafe_b64decode("-_-_")
    for bad in (b"YQ==", b"YR", b"Y", b"Y+Q", b"a/bc", b"YW J", b"YWJ\n", b"YQ=", b"!!!!"):
        with pytest.raises(MalformedToken):
            b64url_decode(bad)


def test_jws_layer_signs_reproducibly_and_verifies_arbitrary_payloads() -> None:
    key = SigningKey.generate("HS256", kid="k")
    token = sign_compact(key, {"kid": "k"}, b"\x00\xffanything")
    assert token == sign_compact(key, {"kid": "k"}, b"\x00\xffanything")
    verified = verify_compact(token, KeySet([key]))
    assert verified.payload == b"\x00\xffanything" and verified.key is key
    assert verified.header == {"kid": "k", "alg": "HS256"}


def test_check_times_alone() -> None:
    assert check_times({"exp": 100}, 90, 0) == 100
    with pytest.raises(TokenExpired):
        check_times({"exp": 100}, 100, 0)
    with pytest.raises(MissingClaim):
        check_times({}, 0, 0)


# --- the verified-token cache --------------------------------------------------------


def test_repeat_verify_hits_the_cache_until_exp(keysets: dict[str, KeySet],
                                                clock: FrozenClock) -> None:
    tokens = tokens_for(keysets["ES256"], clock, leeway=30)
    token, claims = tokens.issue("u")
    cache = tokens.cache
    assert cache is not None
    assert tokens.verify(token) == claims and (cache.hits, cache.misses) == (0, 1)
    first = tokens.verify(token)
    assert first == claims and cache.hits == 1
    first["sub"] = "mallory"
    assert tokens.verify(token)["sub"] == "u", "callers get copies, the cache stays intact"
    clock.set(claims["exp"])
    assert tokens.verify(token) == claims, "within leeway: verified again, not cached"
    assert cache.hits == 2 and len(cache) == 0
    clock.set(claims["exp"] + 30)
    with pytest.raises(TokenExpired):
        tokens.verify(token)


def test_forget_and_invalidate(keysets: dict[str, KeySet], clock: FrozenClock) -> None:
    tokens = tokens_for(keysets["EdDSA"], clock)
    cache = tokens.cache
    assert cache is not None
    issued = [tokens.issue(user, sid=f"s-{user}") for user in ("a", "b", "c")]
    for token, _ in issued:
        tokens.verify(token)
    assert len(cache) == 3
    assert cache.forget(issued[0][1]["jti"]) is True
    assert cache.forget(issued[0][1]["jti"]) is False and len(cache) == 2
    assert cache.invalidate(lambda claims: claims.get("sid") == "s-b") == 1
    misses = cache.misses
    tokens.verify(issued[1][0])
    assert cache.misses == misses + 1
    clock.advance(601)
    assert cache.prune(clock.now()) == 2 and len(cache) == 0


def test_cache_is_bounded_lru(keysets: dict[str, KeySet], clock: FrozenClock) -> None:
    tokens = tokens_for(keysets["HS256"], clock, cache_size=2)
    cache = tokens.cache
    assert cache is not None and cache.maxsize == 2
    a, b, c = (tokens.issue(u)[0] for u in "abc")
    tokens.verify(a)
    tokens.verify(b)
    tokens.verify(a)  # a is now the most recent
    tokens.verify(c)  # evicts b
    hits = cache.hits
    tokens.verify(a)
    assert cache.hits == hits + 1
    tokens.verify(b)
    assert cache.hits == hits + 1 and len(cache) == 2
    with pytest.raises(ConfigurationError):
        VerifiedTokenCache(0)


def test_key_set_change_clears_the_cache(clock: FrozenClock) -> None:
    keys = KeySet.generate("EdDSA", now=clock.now())
    tokens = tokens_for(keys, clock)
    token, _ = tokens.issue("u")
    tokens.verify(token)
    assert tokens.cache is not None and len(tokens.cache) == 1
    keys.remove(keys.signer.kid)
    with pytest.raises(UnknownKey):
        tokens.verify(token)
    assert len(tokens.cache) == 0
