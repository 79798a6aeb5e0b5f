"""Issue 10 §4: a NumericDate from outside is bounded where it comes in.

A validly signed token with ``exp`` = 10^30 used to pass the claims check and overflow
``datetime.fromtimestamp`` later (HTTP 500 at ``/auth/me``). Every time claim is now a
JSON number between 1970 and the end of year 9999, or the token is refused with a
precise error: ``invalid_claim`` out of range, ``missing_claim`` not a number.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from authstate.clock import NUMERIC_DATE_MAX, FrozenClock, numeric_date
from authstate.errors import InvalidClaim, InvalidToken, MissingClaim
from authstate.inspection import report
from authstate.jose.jwk import SigningKey
from authstate.jose.jws import sign_compact
from authstate.keystore import KeySet
from authstate.tokens.access import AccessTokens
from authstate.web.middleware import Credentials, Introspection
from tests.web.api import Api, running

NOW = 1_800_000_000
ISSUER = "https://auth.example"
AUDIENCE = "api"
OUT_OF_RANGE = [10**30, 1e30, NUMERIC_DATE_MAX + 1, 2**63, -1, -1e12]


def forge(key: SigningKey, claims: dict[str, Any]) -> str:
    return sign_compact(key, {"kid": key.kid, "typ": "at+jwt"}, json.dumps(claims).encode())


def good_claims(**changes: Any) -> dict[str, Any]:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "jti": "j", "iat": NOW,
              "exp": NOW + 600}
    claims.update(changes)
    return claims


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate("HS256", kid="k")


@pytest.fixture
def verifier(key: SigningKey) -> AccessTokens:
    return AccessTokens(KeySet([key]), issuer=ISSUER, audience=AUDIENCE,
                        clock=FrozenClock(NOW), cache_size=0)


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_a_time_claim_out_of_range_is_invalid_claim(
    verifier: AccessTokens, key: SigningKey, name: str, value: float
) -> None:
    with pytest.raises(InvalidClaim) as caught:
        verifier.verify(forge(key, good_claims(**{name: value})))
    assert caught.value.code == "invalid_claim"
    assert name in caught.value.message


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [True, False, "1800000000", None, [NOW]])
def test_a_time_claim_that_is_no_number_is_missing_claim(
    verifier: AccessTokens, key: SigningKey, name: str, value: object
) -> None:
    claims = good_claims(**{name: value})
    if value is None and name != "exp":
        claims.pop(name)  # an absent iat/nbf is fine; None for exp means "no exp"
        verifier.verify(forge(key, claims))
        return
    with pytest.raises(MissingClaim):
        verifier.verify(forge(key, claims))


def test_float_times_in_range_are_whole_seconds(verifier: AccessTokens, key: SigningKey) -> None:
    claims = verifier.verify(forge(key, good_claims(iat=NOW - 0.5, nbf=NOW - 1.5, exp=NOW + 600.9)))
    assert claims["exp"] == NOW + 600.9
    assert verifier.check_claims(claims, NOW) == NOW + 600


def test_the_bounds_themselves() -> None:
    assert numeric_date(0, "iat") == 0
    assert numeric_date(float(NUMERIC_DATE_MAX), "exp") == NUMERIC_DATE_MAX
    for value in (float("inf"), float("nan")):
        with pytest.raises(MissingClaim):
            numeric_date(value, "exp")


async def service_token(api: Api, **changes: Any) -> str:
    """A token the service itself signed, with some claims changed and re-signed with
    the service's own signing key: validly signed, as an insider or a bug would mint."""
    if await api.state.users.by_email("dora@example.com") is None:
        await api.add_user("dora@example.com")
    csrf = await api.login("dora@example.com")
    issued = await api.client.post("/auth/token", headers={"X-CSRF-Token": csrf})
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    header, payload, _ = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    signer = api.state.keys.signer
    head = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    return sign_compact(signer, head, json.dumps(claims).encode())


@pytest.mark.parametrize(
    "changes",
    [{"exp": 10**30}, {"exp": 1e30}, {"iat": -1}, {"nbf": 10**30}, {"iat": True}],
)
async def test_http_me_answers_401_not_500(changes: dict[str, Any]) -> None:
    async with running(raise_app_exceptions=False) as api:
        token = await service_token(api, **changes)
        answer = await httpx.AsyncClient(
            transport=api.transport, base_url="http://testserver"
        ).get("/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, answer.text
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        unchanged = await service_token(api)  # the same path with sane times works
        ok = await api.new_client().get("/auth/me", headers={"Authorization": f"Bearer {unchanged}"})
        assert ok.status_code == 200


async def test_introspection_of_an_overflowing_exp_is_refused_at_the_resource() -> None:
    """An introspection endpoint (another service, here a small ASGI app) that answers
    ``active`` with ``exp`` = 10^30 is not believed: ``exp`` would reach a datetime."""
    answers: list[dict[str, Any]] = []

    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        body = json.dumps(answers[-1]).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=upstream))
    guard = Introspection("http://idp/introspect", client_id="c", client_secret="s",
                          client=client, clock=FrozenClock(NOW))
    credentials = Credentials({"headers": [(b"authorization", b"Bearer at_" + b"A" * 43)]})
    try:
        # token_type: since issue 12 an answer must say it is an access token
        answers.append({"active": True, "sub": "u", "exp": NOW + 60, "token_type": "Bearer"})
        identity = await guard.authenticate(credentials)
        assert identity is not None and identity.expires_at == NOW + 60
        for exp in (10**30, -5, True, "soon"):
            answers.append({"active": True, "sub": "u", "exp": exp, "token_type": "Bearer"})
            with pytest.raises(InvalidToken):
                await guard.authenticate(
                    Credentials({"headers": [(b"authorization", b"Bearer at_" + b"A" * 43)]})
                )
    finally:
        await client.aclose()


@pytest.mark.parametrize("value", [10**30, -1e12, -1])
def test_inspect_reports_an_out_of_range_time_instead_of_crashing(
    key: SigningKey, value: float
) -> None:
    result = report(forge(key, good_claims(exp=value)), keys=KeySet([key]), secret=None,
                    now=NOW, wordlist=[])
    assert result["valid"] is False
    assert "the exp claim is out of range" in result["problems"]
    assert "exp" not in result["times"]
