"""Every error of ``/oauth/authorize`` (RFC 6749 §4.1.2.1) and ``/oauth/token`` (§5.2)
has an answer of the right kind, none a 500: before the redirect URI is trusted a page,
after it a redirect with ``error`` and ``state``; at the token endpoint a JSON error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authstate.clock import FrozenClock
from tests.web.api import Api, running
from tests.web.oauth_support import (
    EMAIL,
    REDIRECT,
    add_client,
    authorize,
    authorize_params,
    basic,
    exchange,
    get_code,
    new_verifier,
    query_of,
)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(1_800_000_000.0)


@pytest.fixture
async def api(clock: FrozenClock) -> AsyncIterator[Api]:
    async with running(clock=clock) as api:
        user = await api.add_user(EMAIL)
        await api.state.users.set_scopes(user.id, ["orders:read"])
        await api.login(EMAIL)
        yield api


async def test_untrusted_client_or_redirect_is_a_page_never_a_redirect(api: Api) -> None:
    client, _ = await add_client(api)
    verifier = new_verifier()
    cases = [
        authorize_params(client, verifier, client_id="c_AAAAAAAAAAAAAAAA"),  # unknown client
        authorize_params(client, verifier, client_id=""),  # no client
        authorize_params(client, verifier, redirect_uri="https://evil.example/cb"),
        authorize_params(client, verifier, redirect_uri=REDIRECT + "/x"),  # prefix: no match
        authorize_params(client, verifier, redirect_uri=REDIRECT + "?a=1"),
    ]
    for params in cases:
        r = await authorize(api, params)
        assert r.status_code == 400, params
        assert "location" not in r.headers
        assert r.headers["content-type"].startswith("text/html")
    repeated = await api.client.get("/oauth/authorize?" + urlencode(
        [*authorize_params(client, verifier).items(), ("redirect_uri", "https://evil.example/cb")]))
    assert repeated.status_code == 400 and "location" not in repeated.headers


async def test_errors_after_the_redirect_is_trusted_go_back_with_state(api: Api) -> None:
    client, _ = await add_client(api)
    intro, _ = await api.state.add_client("gateway")  # no grant types: a resource server
    verifier = new_verifier()
    cases = [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": ""}, "invalid_request"),
        ({"code_challenge": ""}, "invalid_request"),  # PKCE is required
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": ""}, "invalid_request"),  # RFC 7636 default is plain
        ({"code_challenge": "short"}, "invalid_request"),
        ({"scope": "admin:all"}, "invalid_scope"),  # the client may not have it
        ({"scope": "bad\u00e9scope"}, "invalid_scope"),
    ]
    for extra, error in cases:
        r = await authorize(api, authorize_params(client, verifier, **extra))
        assert r.status_code == 302, (extra, r.text)
        assert r.headers["location"].startswith(REDIRECT + "?")
        answer = query_of(r.headers["location"])
        assert answer["error"] == error and answer["state"] == "xyz", (extra, answer)
        assert answer["iss"] == "http://testserver" and "code" not in answer
    client2, _ = await add_client(api, scopes=("orders:write",))
    r = await authorize(api, authorize_params(client2, verifier, scope="orders:write"))
    assert query_of(r.headers["location"])["error"] == "invalid_scope"  # the user may not
    no_code = await api.state.add_client("ro", redirect_uris=(REDIRECT,), grant_types=("refresh_token",))
    r = await authorize(api, authorize_params(no_code[0], verifier))
    assert query_of(r.headers["location"])["error"] == "unauthorized_client"
    r = await authorize(api, authorize_params(client, verifier, nonce="n", **{"state": ""}))
    assert r.status_code == 302 and "state" not in query_of(r.headers["location"])
    assert intro.grant_types == ()


async def test_token_endpoint_code_errors(api: Api, clock: FrozenClock) -> None:
    client, secret = await add_client(api, scopes=("orders:read",))
    other, other_secret = await add_client(api)
    assert secret is not None and other_secret is not None
    verifier = new_verifier()

    code = await get_code(api, client, verifier)
    for extra, error, status in [
        ({"code_verifier": new_verifier()}, "invalid_grant", 400),  # wrong PKCE verifier
        ({"code_verifier": ""}, "invalid_request", 400),  # missing
        ({"redirect_uri": REDIRECT + "/other"}, "invalid_grant", 400),
        ({"code": "ac_" + "A" * 43}, "invalid_grant", 400),
        ({"code": "nonsense"}, "invalid_grant", 400),
    ]:
        given = extra.pop("code", code)
        r = await exchange(api, client, secret, given, verifier, **extra)
        assert (r.status_code, r.json()["error"]) == (status, error), (extra, r.text)
    foreign = await exchange(api, other, other_secret, code, verifier)  # issued to client
    assert foreign.status_code == 400 and foreign.json()["error"] == "invalid_grant"
    wrong_secret = await exchange(api, client, "x" + secret, code, verifier)
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
    assert wrong_secret.headers["www-authenticate"].startswith("Basic ")
    as_public = await exchange(api, client, None, code, verifier)  # no secret: not public
    assert as_public.status_code == 401 and as_public.json()["error"] == "invalid_client"
    no_client = await api.client.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "code_verifier": verifier})
    assert no_client.status_code == 401

    first = await exchange(api, client, secret, code, verifier)  # the failures burnt nothing
    assert first.status_code == 200, first.text
    tokens = first.json()
    assert "scope" not in tokens  # none asked, none granted
    again = await exchange(api, client, secret, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # the reuse revoked what the code gave: the access token and the refresh family
    async with api.new_client() as fresh:
        me = await fresh.get("/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 401
    refreshed = await api.client.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=basic(client.id, secret))
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"

    orphan = await get_code(api, client, verifier)
    csrf = (await api.client.get("/auth/me")).json()["csrf_token"]
    assert (await api.client.post("/auth/logout", headers={"X-CSRF-Token": csrf})).status_code == 204
    ended = await exchange(api, client, secret, orphan, verifier)  # its login has ended
    assert ended.status_code == 400 and ended.json()["error"] == "invalid_grant"
    await api.login(EMAIL)

    late = await get_code(api, client, verifier)
    clock.advance(61)  # codes live 60 s
    expired = await exchange(api, client, secret, late, verifier)
    assert expired.status_code == 400 and expired.json()["error"] == "invalid_grant"


async def test_client_authentication_errors(api: Api) -> None:
    client, secret = await add_client(api, grant_types=("password", "refresh_token"))
    assert secret is not None
    base = {"grant_type": "password", "username": EMAIL, "password": "correct horse battery staple"}
    wrong_basic = await api.client.post("/oauth/token", data=base, headers=basic(client.id, "nope"))
    wrong_post = await api.client.post("/oauth/token", data={**base, "client_id": client.id, "client_secret": "nope"})
    unknown = await api.client.post("/oauth/token", data={**base, "client_id": "c_AAAAAAAAAAAAAAAA", "client_secret": "x"})
    for r in (wrong_basic, wrong_post, unknown):
        assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
        assert r.headers["www-authenticate"].startswith("Basic ")
    both = await api.client.post("/oauth/token", data={**base, "client_secret": secret},
                                 headers=basic(client.id, secret))
    assert both.status_code == 400 and both.json()["error"] == "invalid_request"
    secret_without_id = await api.client.post("/oauth/token", data={**base, "client_secret": secret})
    assert secret_without_id.status_code == 400 and secret_without_id.json()["error"] == "invalid_request"
    good_basic = await api.client.post("/oauth/token", data=base, headers=basic(client.id, secret))
    good_post = await api.client.post("/oauth/token", data={**base, "client_id": client.id, "client_secret": secret})
    assert good_basic.status_code == good_post.status_code == 200
    # the client's refresh token is refused to a caller without the client
    stolen = await api.client.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": good_post.json()["refresh_token"]})
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    spa, _ = await add_client(api, public=True)
    public_introspects = await api.client.post("/oauth/introspect", data={
        "token": good_post.json()["access_token"], "client_id": spa.id})
    assert public_introspects.status_code == 401  # RFC 7662 §2.1: needs client authentication
    code_only, code_secret = await add_client(api)
    assert code_secret is not None
    denied = await api.client.post("/oauth/token", data=base, headers=basic(code_only.id, code_secret))
    assert denied.status_code == 400 and denied.json()["error"] == "unauthorized_client"


async def test_repeated_parameters_and_other_token_errors(api: Api) -> None:
    repeated = await api.client.post(
        "/oauth/token", content="grant_type=password&grant_type=refresh_token&username=a&password=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert repeated.status_code == 400 and repeated.json()["error"] == "invalid_request"
    for path in ("/oauth/introspect", "/oauth/revoke"):
        r = await api.client.post(path, content="token=a&token=b",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    scoped = await api.client.post("/oauth/token", data={
        "grant_type": "password", "username": EMAIL, "password": "correct horse battery staple",
        "scope": "orders:write"})
    assert scoped.status_code == 400 and scoped.json()["error"] == "invalid_scope"
    unsupported = await api.client.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert unsupported.json()["error"] == "unsupported_grant_type"


async def test_password_grant_can_be_switched_off() -> None:
    async with running(password_grant=False) as api:
        await api.add_user(EMAIL)
        r = await api.client.post("/oauth/token", data={
            "grant_type": "password", "username": EMAIL, "password": "correct horse battery staple"})
        assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
        meta = (await api.client.get("/.well-known/oauth-authorization-server")).json()
        assert "password" not in meta["grant_types_supported"]


NAMES = ["response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
         "code_challenge_method", "nonce", "grant_type", "code", "code_verifier",
         "refresh_token", "client_secret", "username", "password"]
VALUES = st.one_of(
    st.sampled_from(["code", "token", "S256", "plain", "authorization_code", "refresh_token",
                     "password", REDIRECT, "https://evil.example/", "c_AAAAAAAAAAAAAAAA",
                     "ac_" + "A" * 43, "rt_" + "A" * 43, "orders:read", ""]),
    st.text(max_size=40),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.lists(st.tuples(st.sampled_from(NAMES), VALUES), max_size=8))
async def test_no_input_makes_a_500(api: Api, params: list[tuple[str, str]]) -> None:
    """Random, repeated and malformed parameters: a page, a redirect or an RFC 6749
    error, never a 500 (the transport raises on an app exception)."""
    page = await api.client.get("/oauth/authorize?" + urlencode(params))
    assert page.status_code in (200, 302, 303, 400), page.text
    token = await api.client.post(
        "/oauth/token", content=urlencode(params),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert token.status_code in (200, 400, 401, 429), token.text
    if token.status_code != 200:
        assert token.json()["error"] in {
            "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
            "unsupported_grant_type", "invalid_scope"}
