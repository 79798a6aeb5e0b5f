"""Property: any change to a valid token's bytes is refused, or yields the same claims.

And whatever the bytes, the verifier only ever raises ``InvalidToken`` subclasses: a
crash on hostile input would be a bug turned into a 500 (or worse, into "valid").
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authstate.clock import FrozenClock
from authstate.errors import InvalidToken
from authstate.jose.jws import b64url_encode
from authstate.keystore import KeySet
from authstate.tokens.access import AccessTokens

ISSUER, AUDIENCE = "https://auth.example", "api"
NOW = 1_800_000_000
ALGS = ("EdDSA", "ES256", "RS256", "HS256")
ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
PROFILE = settings(max_examples=150, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow])


def build(alg: str) -> tuple[AccessTokens, bytes, dict[str, Any]]:
    clock = FrozenClock(NOW)
    tokens = AccessTokens(KeySet.generate(alg, now=NOW), issuer=ISSUER, audience=AUDIENCE,
                          clock=clock, cache_size=0)
    token, claims = tokens.issue("user-1", sid="s-1", scope="read", ver=2)
    return tokens, token.encode(), claims


FIXTURES = {alg: build(alg) for alg in ALGS}

byte_choice = st.one_of(st.sampled_from(list(ALPHABET) + list(b".=+/ \n\x00")),
                        st.integers(0, 255))


@st.composite
def mutations(draw: st.DrawFn, token: bytes) -> bytes:
    """A sequence of byte-level edits: replace, insert, delete, truncate, swap parts."""
    data = bytearray(token)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "swap",
                                     "case", "dot"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "replace" and data:
            data[at] = draw(byte_choice)
        elif kind == "insert":
            data.insert(at, draw(byte_choice))
        elif kind == "delete" and data:
            del data[at: at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[at:]
        elif kind == "swap":
            parts = bytes(data).split(b".")
            i, j = draw(st.integers(0, len(parts) - 1)), draw(st.integers(0, len(parts) - 1))
            parts[i], parts[j] = parts[j], parts[i]
            data = bytearray(b".".join(parts))
        elif kind == "case" and data and chr(data[at]).isalpha():
            data[at] = ord(chr(data[at]).swapcase())
        elif kind == "dot":
            data.insert(at, ord("."))
    return bytes(data)


@st.composite
def resigned_claims(draw: st.DrawFn, token: bytes) -> bytes:
    """Edit the claims and re-encode them but keep the old signature (the classic
    tamper: "sub": "admin", a later exp)."""
    header, payload, signature = token.split(b".")
    claims = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    name = draw(st.sampled_from(sorted(claims)))
    claims[name] = draw(st.one_of(st.just("admin"), st.integers(), st.none(),
                                  st.just(claims[name] + 1) if isinstance(claims[name], int)
                                  else st.just(str(claims[name]) + "x")))
    return header + b"." + b64url_encode(json.dumps(claims).encode()) + b"." + signature


def outcome(tokens: AccessTokens, token: bytes) -> dict[str, Any] | InvalidToken:
    try:
        return tokens.verify(token)
    except InvalidToken as error:  # anything else propagates and fails the test
        return error


@pytest.mark.parametrize("alg", ALGS)
def test_byte_mutations_are_refused_or_harmless(alg: str) -> None:
    tokens, token, claims = FIXTURES[alg]

    @PROFILE
    @given(mutations(token))
    def check(mutated: bytes) -> None:
        result = outcome(tokens, mutated)
        if mutated == token:
            assert result == claims
        else:
            assert isinstance(result, InvalidToken) or result == claims

    check()


@pytest.mark.parametrize("alg", ALGS)
def test_tampered_claims_never_verify(alg: str) -> None:
    tokens, token, claims = FIXTURES[alg]

    @PROFILE
    @given(resigned_claims(token))
    def check(tampered: bytes) -> None:
        result = outcome(tokens, tampered)
        assert isinstance(result, InvalidToken) or result == claims

    check()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_arbitrary_input_only_raises_invalid_token(junk: bytes | str) -> None:
    tokens = FIXTURES["HS256"][0]
    assert isinstance(outcome(tokens, junk), InvalidToken)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    header=st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "jwk", "b64", "x"]),
                           st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                                     st.lists(st.text(max_size=4), max_size=2))),
    payload=st.binary(max_size=64),
    signature=st.binary(max_size=80),
)
def test_well_formed_but_hostile_headers_only_raise_invalid_token(
    header: dict[str, Any], payload: bytes, signature: bytes
) -> None:
    tokens = FIXTURES["EdDSA"][0]
    token = b".".join(b64url_encode(p) for p in (json.dumps(header).encode(), payload, signature))
    assert isinstance(outcome(tokens, token), InvalidToken)
