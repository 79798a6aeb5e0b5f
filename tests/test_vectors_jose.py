"""Public JOSE test vectors nobody on the project wrote: every applicable one runs.

Sources (vendored in tests/vectors/, see PROVENANCE.md there): Project Wycheproof's JSON Web Signature
and JSON Web Key tests, the RFC 7515/7517/7519/8037 examples, the RFC 7520 cookbook,
the PyJWT algorithm-confusion advisory GHSA-ffqj-6fqr-9h24, and jwt_tool's list of
common HMAC secrets (GPL-3.0: read here, never shipped).

The verifier under test is authstate's compact-JWS layer (``verify_compact``) with the
key from the vector; the algorithm is always the key's, never the token's.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

from authstate.errors import (
    AlgorithmNotAllowed,
    AuthstateError,
    InvalidToken,
    MalformedToken,
    TokenExpired,
    UnsupportedHeader,
    UnusableKey,
    WeakKeyError,
)
from authstate.jose.jwk import SigningKey, thumbprint
from authstate.jose.jws import sign_compact, verify_compact
from authstate.jose.weakkeys import weak_secret_reason
from authstate.keystore import KeySet
from authstate.tokens.access import check_times
from tests.conftest import VECTORS


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text("utf-8"))


WYCHEPROOF_JWS = load("wycheproof_json_web_signature_test.json")
WYCHEPROOF_JWK = load("wycheproof_json_web_key_test.json")
RFC = load("rfc7515_7516_7517_7519_8037_examples.json")
COOKBOOK = VECTORS / "ietf-jose-cookbook"

# tests/vectors/README.md, "Known data errors in the Wycheproof signature file": the
# verdict authstate gives instead of the file's, and why.
DATA_ERRORS: dict[int, tuple[str, str]] = {
    346: ("invalid", "RFC 7520 fig. 20: a PS256 key with a PS384 token; the key decides"),
    350: ("invalid", "RFC 7520 fig. 20: a PS256 key with a PS384 token; the key decides"),
    347: ("invalid", "RFC 7520 fig. 27: the key's alg 'ES521' is not a JWA name (ES512)"),
    351: ("invalid", "RFC 7520 fig. 27: the key's alg 'ES521' is not a JWA name (ES512)"),
    367: ("valid", "the same bytes as tcId 357, which is marked valid (open upstream issue)"),
    370: ("valid", "the same bytes as tcId 357, which is marked valid (open upstream issue)"),
    372: ("invalid", "the MAC does not match the signing input; only a lenient base64 "
                     "decoder accepts it"),
    373: ("invalid", "the MAC does not match the signing input; only a lenient base64 "
                     "decoder accepts it"),
}
# Wycheproof groups whose key authstate's key policy refuses but whose tests are about
# something else, so the key is loaded with allow_weak (the verify-others'-tokens mode).
WEAK_KEY_GROUPS = {
    "base64": "tests base64 strictness with an HMAC key of 32 zero bytes",
}


def wycheproof_cases(data: Any) -> list[Any]:
    return [
        pytest.param(group, case, id=f"tc{case['tcId']}-{case['comment']}")
        for group in data["testGroups"]
        for case in group["tests"]
    ]


@functools.cache
def _group_keys(group_json: str, allow_weak: bool) -> KeySet | AuthstateError:
    jwk = json.loads(group_json)
    try:
        return KeySet([SigningKey.from_jwk(jwk, allow_weak=allow_weak)])
    except (UnusableKey, WeakKeyError) as error:
        return error


def group_keys(group: dict[str, Any]) -> KeySet | AuthstateError:
    jwk = group.get("public") or group["private"]
    return _group_keys(json.dumps(jwk, sort_keys=True), group["comment"] in WEAK_KEY_GROUPS)


def as_compact(jws: Any) -> str:
    """JSON-serialised cases are passed as their text: a compact-only verifier refuses."""
    return jws if isinstance(jws, str) else json.dumps(jws)


def wycheproof_verdict(group: dict[str, Any], case: dict[str, Any]) -> tuple[str, str]:
    keys = group_keys(group)
    if isinstance(keys, AuthstateError):
        return "invalid", keys.code
    try:
        verify_compact(as_compact(case["jws"]), keys)
    except InvalidToken as error:
        return "invalid", error.code
    return "valid", ""


def expected_verdict(case: dict[str, Any]) -> str:
    override = DATA_ERRORS.get(case["tcId"])
    return override[0] if override else str(case["result"])


@pytest.mark.parametrize(("group", "case"), wycheproof_cases(WYCHEPROOF_JWS))
def test_wycheproof_json_web_signature(group: dict[str, Any], case: dict[str, Any]) -> None:
    verdict, code = wycheproof_verdict(group, case)
    expected = expected_verdict(case)
    if expected == "acceptable":
        return
    assert verdict == expected, f"{case['comment']}: {code}"


def test_wycheproof_signature_file_is_complete_and_its_data_errors_are_real() -> None:
    cases = {c["tcId"]: c for g in WYCHEPROOF_JWS["testGroups"] for c in g["tests"]}
    assert len(cases) == WYCHEPROOF_JWS["numberOfTests"] == 401
    assert cases[357]["jws"] == cases[367]["jws"] == cases[370]["jws"]
    assert cases[357]["result"] == "valid" and cases[367]["result"] == "invalid"
    for tc_id in DATA_ERRORS:
        assert expected_verdict(cases[tc_id]) != cases[tc_id]["result"]


def test_wycheproof_psychic_and_alg_none_cases_fail_for_the_right_reason() -> None:
    by_id = {c["tcId"]: (g, c) for g in WYCHEPROOF_JWS["testGroups"] for c in g["tests"]}
    for tc_id in (341, 342, 343, 344, 16):
        assert wycheproof_verdict(*by_id[tc_id]) == ("invalid", "algorithm_not_allowed")
    for tc_id in range(386, 402):  # r, s in {0, 1, n-1, n}: CVE-2022-21449 and kin
        assert wycheproof_verdict(*by_id[tc_id]) == ("invalid", "bad_signature")
    assert wycheproof_verdict(*by_id[31]) == ("invalid", "algorithm_not_allowed")
    assert wycheproof_verdict(*by_id[32]) == ("invalid", "unsupported_header")


@pytest.mark.parametrize(("group", "case"), wycheproof_cases(WYCHEPROOF_JWK))
def test_wycheproof_json_web_key_sets(group: dict[str, Any], case: dict[str, Any]) -> None:
    """The key-set loader refuses what the file marks invalid; valid sets verify."""
    jwks = group.get("public") or group["private"]
    try:
        keys = KeySet.from_jwks(jwks)
    except (UnusableKey, WeakKeyError):
        verdict = "invalid"
    else:
        try:
            verify_compact(case["jws"], keys)
            verdict = "valid"
        except InvalidToken:
            verdict = "invalid"
    assert verdict == case["result"], case["comment"]


# --- RFC 7515 / 7517 / 7519 / 8037 examples ------------------------------------------

RFC7515 = RFC.get("rfc7515", {})
PINNED = 1300819380 - 60  # RFC 7515's example claims expire at 1300819380 (March 2011)


@pytest.mark.parametrize("name", ["RFC7515_A1", "RFC7515_A2", "RFC7515_A3", "RFC7515_A4"])
def test_rfc7515_compact_examples_verify(name: str) -> None:
    example = RFC7515[name]
    key = SigningKey.from_jwk(example["key"], alg=example["alg"])
    verified = verify_compact(example["compact"], KeySet([key]))
    assert verified.payload.decode("utf-8") == example["payload"]
    assert verified.key.alg == example["alg"]
    if example["payload"].startswith("{"):
        claims = json.loads(verified.payload)
        assert check_times(claims, PINNED, 0) == 1300819380
        with pytest.raises(TokenExpired):
            check_times(claims, 1_800_000_000, 30)


def test_rfc7515_unsecured_json_and_crit_examples_are_refused() -> None:
    key = KeySet([SigningKey.from_jwk(RFC7515["RFC7515_A1"]["key"], alg="HS256")])
    with pytest.raises(AlgorithmNotAllowed):
        verify_compact(RFC7515["RFC7515_A5_unsecured"]["compact"], key)
    with pytest.raises(AlgorithmNotAllowed):
        verify_compact(RFC7515["RFC7515_AppendixE_crit_unknown"]["compact"], key)
    for name in ("RFC7515_A6_general_json", "RFC7515_A7_flattened_json"):
        with pytest.raises(MalformedToken):
            verify_compact(RFC7515[name]["serialized"], key)


def test_rfc7515_crit_is_refused_even_when_signed() -> None:
    key = SigningKey.from_jwk(RFC7515["RFC7515_A1"]["key"], alg="HS256")
    token = sign_compact(key, {"crit": ["http://example.com/UNDEFINED"],
                               "http://example.com/UNDEFINED": True}, b"{}")
    with pytest.raises(UnsupportedHeader):
        verify_compact(token, KeySet([key]))


def test_rfc7517_and_rfc7638_thumbprints() -> None:
    public = RFC["rfc7517"]["A.1_public_keys"]
    assert [thumbprint(k) for k in public["keys"]] == public["thumbprints"]
    okp = RFC["rfc8037"]["A.2_public_and_thumbprint"]
    assert [thumbprint(k) for k in okp["keys"]] == okp["thumbprints"]


def test_rfc7517_key_sets() -> None:
    section = RFC["rfc7517"]
    public = KeySet.from_jwks(section["A.1_public_keys"], public_only=True)
    assert [k.kid for k in public] == ["2011-04-29"], "the use: enc key is left out"
    private = KeySet.from_jwks(section["A.2_private_keys"])
    assert private.signer.kid == "2011-04-29" and private.signer.alg == "RS256"
    with pytest.raises(UnusableKey):
        KeySet.from_jwks(section["A.1_public_keys"] | {"keys": section["A.2_private_keys"]
                                                       ["keys"][1:]}, public_only=True)
    with pytest.raises(UnusableKey):
        KeySet.from_jwks(section["A.3_symmetric_keys"])
    assert SigningKey.from_jwk(section["B_x5c"], alg="RS256").kid == "1b94c"
    with pytest.raises(UnusableKey, match="enc"):
        SigningKey.from_jwk(section["C.1_rsa_private_key"], alg="RS256")


def test_rfc8037_ed25519() -> None:
    section = RFC["rfc8037"]
    (private,) = section["A.1_private"]["keys"]
    key = SigningKey.from_jwk(private)
    assert key.alg == "EdDSA" and key.public_jwk()["x"] == private["x"]  # type: ignore[index]
    example = section["A.4_Ed25519_jws"]
    compact = example["jws_serialization_compact"]
    assert verify_compact(compact, KeySet([key])).payload == example["payload"].encode()
    assert sign_compact(key, {}, example["payload"].encode()) == compact, "Ed25519 is "\
        "deterministic: re-signing gives the RFC's bytes"


def test_rfc7519_encrypted_tokens_are_not_signed_tokens() -> None:
    key = KeySet([SigningKey.generate("RS256")])
    for name in ("A.1_encrypted_jwt", "A.2_nested_jwt"):
        with pytest.raises(MalformedToken, match="3 dot-separated parts"):
            verify_compact(RFC["rfc7519"][name]["token"], key)


def test_wycheproof_jwe_is_never_taken_for_jws() -> None:
    data = load("wycheproof_json_web_encryption_test.json")
    keys = KeySet([SigningKey.generate("HS256")])
    count = 0
    for group in data["testGroups"]:
        for case in group["tests"]:
            count += 1
            with pytest.raises(InvalidToken):
                verify_compact(case["jwe"], keys)
    assert count == data.get("numberOfTests", 0) == 139


# --- RFC 7520 (the JOSE cookbook) ----------------------------------------------------

COOKBOOK_COMPACT = ["jws/4_1.rsa_v15_signature.json", "jws/4_2.rsa-pss_signature.json",
                    "jws/4_3.ecdsa_signature.json",
                    "jws/4_4.hmac-sha2_integrity_protection.json", "curve25519/jws.json"]


def cookbook(name: str) -> dict[str, Any]:
    return json.loads((COOKBOOK / name).read_text("utf-8"))  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", COOKBOOK_COMPACT)
def test_cookbook_compact_signatures(name: str) -> None:
    case = cookbook(name)
    key = SigningKey.from_jwk(case["input"]["key"], alg=case["input"]["alg"])
    verified = verify_compact(case["output"]["compact"], KeySet([key]))
    assert verified.payload.decode("utf-8") == case["input"]["payload"]
    if case.get("reproducible"):
        resigned = sign_compact(key, case["signing"]["protected"],
                                case["input"]["payload"].encode("utf-8"))
        assert resigned == case["output"]["compact"]


def test_cookbook_forms_authstate_does_not_accept() -> None:
    detached = cookbook("jws/4_5.signature_with_detached_content.json")
    key = KeySet([SigningKey.from_jwk(detached["input"]["key"])])
    with pytest.raises(InvalidToken):
        verify_compact(detached["output"]["compact"], key)
    for name in ("jws/4_6.protecting_specific_header_fields.json",
                 "jws/4_7.protecting_content_only.json", "jws/4_8.multiple_signatures.json"):
        case = cookbook(name)
        assert "compact" not in case["output"]
        with pytest.raises(MalformedToken):
            verify_compact(json.dumps(case["output"]["json"]), key)
    unencoded = cookbook("rfc7797/hmac-sha2_b64_false.json")
    hmac_key = KeySet([SigningKey.from_jwk(unencoded["input"]["key"])])
    with pytest.raises(InvalidToken):
        verify_compact(unencoded["output"]["compact"], hmac_key)


@pytest.mark.parametrize("name", sorted(p.name for p in (COOKBOOK / "jwk").glob("*.json")))
def test_cookbook_keys(name: str) -> None:
    jwk = cookbook(f"jwk/{name}")
    if jwk.get("use") == "enc":
        with pytest.raises(UnusableKey):
            SigningKey.from_jwk(jwk)
        return
    alg = jwk.get("alg") or ("RS256" if jwk["kty"] == "RSA" else None)
    key = SigningKey.from_jwk(jwk, alg=alg)
    assert key.kid == jwk["kid"] and key.has_private == ("d" in jwk or "k" in jwk)


# --- PyJWT advisory GHSA-ffqj-6fqr-9h24 (CVE-2022-29217) -----------------------------

ADVISORY = load("pyjwt_advisory_ghsa-ffqj-6fqr-9h24.json").get("cases", [])


@pytest.mark.parametrize("case", ADVISORY, ids=[c["name"] for c in ADVISORY])
def test_advisory_public_key_as_hmac_secret(case: dict[str, Any]) -> None:
    key = SigningKey.from_pem(case["public_key_openssh"])
    keys = KeySet([key])
    good = case.get("good_token_EdDSA") or case["good_token_ES256"]
    assert json.loads(verify_compact(good, keys).payload) == {"test": 1234}
    with pytest.raises(AlgorithmNotAllowed):
        verify_compact(case["attack_token_HS256"], keys)
    with pytest.raises(WeakKeyError):
        SigningKey.from_secret(case["public_key_openssh"], allow_weak=True)


# --- jwt_tool's common secrets (GPL-3.0; test data only) -----------------------------

COMMON = (VECTORS / "jwt_tool_jwt-common.txt")
# Random-looking secrets that are weak only because they were published (framework
# defaults, tutorials): no entropy estimate can see that, only a list can, so
# ``authstate inspect --wordlist FILE`` takes one.
PUBLISHED_RANDOM_LOOKING = {
    "872e4e50ce9990d8b041330c47c9ddd11bec6b503ae9386a99da8584e9bb12c4",
    "A43CC200A1BD292682598DA42DAA9FD14589F3D8BF832FFA206BE775259EE1EA",
    "a43cc200a1bd292682598da42daa9fd14589f3d8bf832ffa206be775259ee1ea",
    "R9MyWaEoyiMYViVWo8Fk4TUGWiSoaW6U1nOqXri8_XU",
}


def common_secrets() -> list[str]:
    return COMMON.read_text("utf-8").splitlines()


def test_every_common_secret_is_flagged() -> None:
    words = common_secrets()
    assert len(words) == 95
    unflagged = {w for w in words if weak_secret_reason(w) is None}
    assert unflagged == PUBLISHED_RANDOM_LOOKING
    assert all(weak_secret_reason(w, wordlist=words) is not None for w in words)
    for word in words:
        if word not in PUBLISHED_RANDOM_LOOKING:
            with pytest.raises(WeakKeyError):
                SigningKey.from_secret(word)


def test_the_shipped_list_is_not_the_gpl_list() -> None:
    """The package ships its own short list; beyond everyday words it shares only
    jwt.io's default secrets, which everyone's list has."""
    import authstate.jose.weakkeys as module

    shipped = set(module.COMMON_SECRETS)  # the list itself, not its module's prose
    overlap = {w for w in common_secrets() if len(w) > 12 and w in shipped}
    assert overlap <= {"your-256-bit-secret", "your-384-bit-secret", "your-512-bit-secret"}
    assert len(module.COMMON_SECRETS) < 60
