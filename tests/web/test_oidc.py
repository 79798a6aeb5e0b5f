"""OpenID Connect on the service: the ID token (checked by Authlib as an RP does),
discovery (Authlib's metadata validation), UserInfo (RFC 6750 errors), the OIDC
authorization errors (§3.1.2.6), RP-initiated logout, and back-channel logout delivered
over real HTTP to a receiver that validates the logout token with PyJWT."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from authlib.jose import JsonWebKey
from authlib.jose import jwt as authlib_jwt
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata
from typer.testing import CliRunner

from authstate.cli import app
from authstate.clients import Client
from authstate.errors import RefreshReused
from authstate.oauth.backchannel import OUTBOX
from tests.conftest import fresh_namespace, require_service
from tests.web.api import PASSWORD, Api, running
from tests.web.oauth_support import (
    EMAIL,
    REDIRECT,
    add_client,
    authorize_params,
    exchange,
    new_verifier,
    query_of,
)
from tests.web.oidc_support import check_logout_token, receiver

BASE = "http://testserver"
AFTER_LOGOUT = "https://app.example/bye"


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running(refresh_grace=0) as api:  # a second use of a refresh token is reuse
        await api.add_user(EMAIL)
        yield api


async def browser(api: Api) -> httpx.AsyncClient:
    b = api.new_client()
    b.headers["X-CSRF-Token"] = await api.login(EMAIL, client=b)
    return b


async def sign_in(api: Api, b: httpx.AsyncClient, client: Client, secret: str | None,
                  *, scope: str = "openid email profile", nonce: str = "n-0S6_WzA2Mj") -> dict[str, Any]:
    verifier = new_verifier()
    params = authorize_params(client, verifier, scope=scope, nonce=nonce)
    answer = await b.get("/oauth/authorize?" + urlencode(params))
    assert answer.status_code == 302, answer.text
    code = query_of(answer.headers["location"])["code"]
    token = await exchange(api, client, secret, code, verifier)
    assert token.status_code == 200, token.text
    body: dict[str, Any] = token.json()
    return body


async def jwks(api: Api) -> dict[str, Any]:
    body: dict[str, Any] = (await api.client.get("/.well-known/jwks.json")).json()
    return body


async def test_id_token_passes_authlibs_validation(api: Api) -> None:
    client, secret = await add_client(api)
    b = await browser(api)
    tokens = await sign_in(api, b, client, secret)
    keys = JsonWebKey.import_key_set(await jwks(api))
    claims = authlib_jwt.decode(
        tokens["id_token"], keys, claims_cls=CodeIDToken,
        claims_options={"iss": {"value": BASE}},
        claims_params={"nonce": "n-0S6_WzA2Mj", "client_id": client.id,
                       "access_token": tokens["access_token"]},
    )
    claims.validate()  # iss, aud, exp, iat, auth_time, nonce and at_hash
    assert claims.header["typ"] == "JWT" and claims.header["alg"] == "EdDSA"
    assert claims["aud"] == client.id and claims["at_hash"]
    user = await api.state.find_user(EMAIL)
    session = (await api.state.sessions.for_user(user.id))[0]
    assert claims["sub"] == user.id and claims["sid"] == session.sid
    assert claims["auth_time"] == int(session.created_at)
    assert claims["email"] == EMAIL and claims["email_verified"] is False
    assert claims["preferred_username"] == EMAIL
    # a wrong access token does not match its at_hash: Authlib refuses
    wrong = authlib_jwt.decode(tokens["id_token"], keys, claims_cls=CodeIDToken,
                               claims_params={"nonce": "n-0S6_WzA2Mj", "client_id": client.id,
                                              "access_token": tokens["access_token"] + "x"})
    with pytest.raises(Exception, match="at_hash"):
        wrong.validate()


async def test_a_stored_eddsa_key_set_keeps_signing_under_the_rs256_default(
        tmp_path: Path) -> None:
    """The RS256 default applies to new key sets only: a store whose keys were made with
    EdDSA (the earlier default) keeps its signer, and discovery lists what it holds, not
    an algorithm it has no key for."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    async with running(store=url, key_algorithm="EdDSA") as before:
        kid = before.state.keys.signer.kid
        await before.add_user(EMAIL)
        client, secret = await add_client(before)
    async with running(store=url, key_algorithm=None) as after:
        assert after.state.settings.tokens.key_algorithm == "RS256"
        assert after.state.keys.signer.kid == kid and after.state.keys.signer.alg == "EdDSA"
        assert [key["alg"] for key in (await jwks(after))["keys"]] == ["EdDSA"]
        meta = (await after.client.get("/.well-known/openid-configuration")).json()
        assert meta["id_token_signing_alg_values_supported"] == ["EdDSA"]
        tokens = await sign_in(after, await browser(after), client, secret)
        claims = authlib_jwt.decode(tokens["id_token"], JsonWebKey.import_key_set(await jwks(after)))
        assert claims.header["alg"] == "EdDSA" and claims.header["kid"] == kid
        # the way to RS256: a rotation publishes the RSA key beside the EdDSA one, and
        # discovery then lists both (RS256 among them, as Discovery §3 asks)
        await after.state.rotate_keys(algorithm="RS256")
        meta = (await after.client.get("/.well-known/openid-configuration")).json()
        assert sorted(meta["id_token_signing_alg_values_supported"]) == ["EdDSA", "RS256"]


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256"])
async def test_id_tokens_of_every_asymmetric_key_pass_authlib(alg: str) -> None:
    """``at_hash`` takes the hash of the signing algorithm (SHA-256 for these)."""
    async with running(key_algorithm=alg) as api:
        await api.add_user(EMAIL)
        client, secret = await add_client(api)
        b = await browser(api)
        tokens = await sign_in(api, b, client, secret)
        claims = authlib_jwt.decode(
            tokens["id_token"], JsonWebKey.import_key_set(await jwks(api)),
            claims_cls=CodeIDToken, claims_options={"iss": {"value": BASE}},
            claims_params={"nonce": "n-0S6_WzA2Mj", "client_id": client.id,
                           "access_token": tokens["access_token"]},
        )
        claims.validate()
        assert claims.header["alg"] == alg


async def test_scopes_decide_the_id_token_and_its_claims(api: Api) -> None:
    client, secret = await add_client(api)
    b = await browser(api)
    plain = await sign_in(api, b, client, secret, scope="")
    assert "id_token" not in plain
    bare = await sign_in(api, b, client, secret, scope="openid")
    claims = authlib_jwt.decode(bare["id_token"], JsonWebKey.import_key_set(await jwks(api)))
    assert "email" not in claims and "preferred_username" not in claims
    # no id_token on refresh (a choice: OIDC Core §12.2 makes it optional)
    refreshed = await api.client.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": bare["refresh_token"]},
        auth=(client.id, secret or ""))
    assert refreshed.status_code == 200, refreshed.text
    assert "id_token" not in refreshed.json()


@pytest.mark.parametrize("alg", [None, "RS256"], ids=["default", "RS256"])
async def test_discovery_documents_pass_authlibs_validation(api: Api, alg: str | None) -> None:
    # Discovery §3: an https issuer, and RS256 among the ID token algorithms (Authlib
    # insists): the default key set (no algorithm configured) signs with RS256. The
    # ``api`` fixture's key set is pinned to EdDSA and lists only that.
    async with running(issuer="https://auth.example", key_algorithm=alg) as secure:
        assert secure.state.keys.signer.alg == "RS256"
        meta = (await secure.client.get("/.well-known/openid-configuration")).json()
        assert meta["id_token_signing_alg_values_supported"] == ["RS256"]
        OpenIDProviderMetadata(
            (await secure.client.get("/.well-known/openid-configuration")).json()).validate()
        AuthorizationServerMetadata((await secure.client.get(
            "/.well-known/oauth-authorization-server")).json()).validate()
    answer = await api.client.get("/.well-known/openid-configuration")
    assert answer.status_code == 200
    body = answer.json()
    assert body["issuer"] == BASE
    assert body["userinfo_endpoint"] == f"{BASE}/oauth/userinfo"
    assert body["end_session_endpoint"] == f"{BASE}/oauth/logout"
    assert body["id_token_signing_alg_values_supported"] == ["EdDSA"]
    assert body["response_types_supported"] == ["code"]
    assert body["subject_types_supported"] == ["public"]
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert body["backchannel_logout_supported"] is True
    assert body["backchannel_logout_session_supported"] is True
    assert "implicit" not in body["grant_types_supported"]
    # every endpoint it names answers (none is a 404)
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint",
                 "jwks_uri", "end_session_endpoint"):
        assert (await api.client.get(body[name])).status_code != 404, name


async def test_userinfo_answers_as_rfc_6750_says(api: Api) -> None:
    client, secret = await add_client(api)
    b = await browser(api)
    tokens = await sign_in(api, b, client, secret)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    user = await api.state.find_user(EMAIL)
    for method in ("GET", "POST"):
        got = await api.client.request(method, "/oauth/userinfo", headers=bearer)
        assert got.status_code == 200, got.text
        assert got.json() == {"sub": user.id, "email": EMAIL, "email_verified": False,
                              "preferred_username": EMAIL}
        assert got.headers["cache-control"] == "no-store"
    none = await api.client.get("/oauth/userinfo")
    assert none.status_code == 401
    assert none.headers["www-authenticate"] == 'Bearer realm="authstate"'
    bad = await api.client.get("/oauth/userinfo", headers={"Authorization": "Bearer nope.nope.nope"})
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]
    no_openid = await sign_in(api, b, client, secret, scope="email")
    forbidden = await api.client.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {no_openid['access_token']}"})
    assert forbidden.status_code == 403
    assert 'error="insufficient_scope"' in forbidden.headers["www-authenticate"]
    # a revoked token is refused like an unknown one
    await api.state.revoke_user(user.id)
    gone = await api.client.get("/oauth/userinfo", headers=bearer)
    assert gone.status_code == 401


@pytest.mark.parametrize(("extra", "first_party", "logged_in", "error"), [
    ({"prompt": "none"}, True, False, "login_required"),
    ({"prompt": "none"}, False, True, "consent_required"),
    ({"prompt": "none consent"}, True, True, "invalid_request"),
    ({"prompt": "login"}, True, True, "invalid_request"),
    ({"request": "eyJhbGciOiJub25lIn0.e30."}, True, True, "request_not_supported"),
    ({"request_uri": "https://app.example/r"}, True, True, "request_uri_not_supported"),
])
async def test_oidc_authorization_errors_go_back_to_the_app(
    api: Api, extra: dict[str, str], first_party: bool, logged_in: bool, error: str,
) -> None:
    client, _ = await add_client(api, first_party=first_party)
    b = await browser(api) if logged_in else api.new_client()
    params = authorize_params(client, new_verifier(), scope="openid", **extra)
    answer = await b.get("/oauth/authorize?" + urlencode(params))
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"].startswith(REDIRECT + "?")
    got = query_of(answer.headers["location"])
    assert got["error"] == error and got["state"] == "xyz"


async def test_prompt_none_with_a_session_answers_at_once(api: Api) -> None:
    client, _ = await add_client(api)
    b = await browser(api)
    params = authorize_params(client, new_verifier(), scope="openid", prompt="none")
    answer = await b.get("/oauth/authorize?" + urlencode(params))
    assert answer.status_code == 302 and "code" in query_of(answer.headers["location"])


async def live_sessions(api: Api) -> int:
    user = await api.state.find_user(EMAIL)
    return len(await api.state.sessions.for_user(user.id))


async def test_rp_logout_with_the_sessions_id_token_ends_it_and_returns(api: Api) -> None:
    client, secret = await add_client(api, post_logout_redirect_uris=(AFTER_LOGOUT,))
    b = await browser(api)
    tokens = await sign_in(api, b, client, secret)
    assert await live_sessions(api) == 1
    answer = await b.get("/oauth/logout?" + urlencode({
        "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": AFTER_LOGOUT,
        "state": "st8"}))
    assert answer.status_code == 303
    assert answer.headers["location"] == AFTER_LOGOUT + "?state=st8"
    assert await live_sessions(api) == 0
    audited = (await api.state.audit.query(type="rp_logout")).events
    assert [e.detail for e in audited] == [{"client_id": client.id, "confirmed": False}]
    # the tokens of the session went with it
    userinfo = await api.client.get("/oauth/userinfo",
                                    headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.status_code == 401


async def test_an_rps_form_post_becomes_the_same_get(api: Api) -> None:
    """A cross-site POST carries no SameSite=Lax cookie; the GET it is turned into does."""
    client, secret = await add_client(api, post_logout_redirect_uris=(AFTER_LOGOUT,))
    b = await browser(api)
    tokens = await sign_in(api, b, client, secret)
    form = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": AFTER_LOGOUT,
            "state": "p1"}
    posted = await b.post("/oauth/logout", data=form)
    assert posted.status_code == 303 and await live_sessions(api) == 1
    assert posted.headers["location"] == "/oauth/logout?" + urlencode(form)
    done = await b.get(posted.headers["location"])
    assert done.status_code == 303 and done.headers["location"] == AFTER_LOGOUT + "?state=p1"
    assert await live_sessions(api) == 0


async def test_rp_logout_without_a_hint_is_confirmed_with_csrf(api: Api) -> None:
    client, _ = await add_client(api, post_logout_redirect_uris=(AFTER_LOGOUT,))
    b = await browser(api)
    asked = await b.get("/oauth/logout?" + urlencode({
        "client_id": client.id, "post_logout_redirect_uri": AFTER_LOGOUT, "state": "s1"}))
    assert asked.status_code == 200 and "Log out?" in asked.text
    assert await live_sessions(api) == 1
    csrf = asked.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    form = {"client_id": client.id, "post_logout_redirect_uri": AFTER_LOGOUT, "state": "s1",
            "decision": "logout"}
    forged = await b.post("/oauth/logout", data={**form, "csrf_token": "forged"})
    assert forged.status_code == 403 and await live_sessions(api) == 1
    stay = await b.post("/oauth/logout", data={**form, "decision": "stay", "csrf_token": csrf})
    assert stay.status_code == 303 and await live_sessions(api) == 1
    done = await b.post("/oauth/logout", data={**form, "csrf_token": csrf})
    assert done.status_code == 303 and done.headers["location"] == AFTER_LOGOUT + "?state=s1"
    assert await live_sessions(api) == 0


async def test_rp_logout_refuses_unregistered_uris_and_foreign_hints(api: Api) -> None:
    client, secret = await add_client(api, post_logout_redirect_uris=(AFTER_LOGOUT,))
    other, _ = await add_client(api)
    b = await browser(api)
    tokens = await sign_in(api, b, client, secret)
    cases = [
        {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": AFTER_LOGOUT + "/x"},
        {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": REDIRECT},
        {"id_token_hint": tokens["id_token"] + "x", "post_logout_redirect_uri": AFTER_LOGOUT},
        {"id_token_hint": tokens["access_token"]},  # an access token is no ID token
        {"id_token_hint": tokens["id_token"], "client_id": other.id},
        {"post_logout_redirect_uri": AFTER_LOGOUT},  # which client's?
        {"client_id": other.id, "post_logout_redirect_uri": AFTER_LOGOUT},
    ]
    for params in cases:
        answer = await b.get("/oauth/logout?" + urlencode(params))
        assert answer.status_code == 400, params
        assert "location" not in answer.headers
    repeated = await b.get(f"/oauth/logout?state=a&state=b&client_id={client.id}")
    assert repeated.status_code == 400
    assert await live_sessions(api) == 1


async def test_rp_logout_without_a_session_just_returns(api: Api) -> None:
    client, secret = await add_client(api, post_logout_redirect_uris=(AFTER_LOGOUT,))
    b = await browser(api)
    tokens = await sign_in(api, b, client, secret)
    stranger = api.new_client()
    answer = await stranger.get("/oauth/logout?" + urlencode({
        "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": AFTER_LOGOUT}))
    assert answer.status_code == 303 and answer.headers["location"] == AFTER_LOGOUT
    assert await live_sessions(api) == 1  # someone else's browser ends nothing
    page = await stranger.get("/oauth/logout")
    assert page.status_code == 200 and "Logged out" in page.text


# -- back-channel logout -----------------------------------------------------------


async def _ended_by(api: Api, how: str, b: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    user = await api.state.find_user(EMAIL)
    if how == "logout":
        answer = await b.post("/auth/logout")
        assert answer.status_code in (200, 204), answer.text
    elif how == "admin_revoke":
        await api.state.revoke_user(user.id)
    elif how == "disable":
        admin = await api.add_user("root@example.com", admin=True)
        assert admin.is_admin
        await api.state.disable_user(user.id)
    elif how == "password_change":
        await api.state.change_password(user.id, PASSWORD, PASSWORD + " again")
    elif how == "refresh_reuse":
        first = await api.state.refresh_tokens(tokens["refresh_token"])
        assert first.refresh_token
        with pytest.raises(RefreshReused):
            await api.state.refresh_tokens(tokens["refresh_token"])
    elif how == "end_session":
        session = (await api.state.sessions.for_user(user.id))[0]
        await api.state.end_session(user.id, session.handle)


@pytest.mark.parametrize("how", ["logout", "admin_revoke", "disable", "password_change",
                                 "refresh_reuse", "end_session"])
async def test_every_session_end_sends_a_logout_token(api: Api, how: str) -> None:
    with receiver() as rp:
        client, secret = await add_client(api, backchannel_logout_uri=rp.url)
        bystander, bsecret = await add_client(api)  # no back-channel URI: not called
        b = await browser(api)
        tokens = await sign_in(api, b, client, secret)
        await sign_in(api, b, bystander, bsecret)
        user = await api.state.find_user(EMAIL)
        sid = (await api.state.sessions.for_user(user.id))[0].sid
        await _ended_by(api, how, b, tokens)
        await api.state.backchannel.drain()
        received = rp.wait_for(1)
    assert len(received) == 1 and rp.requests == 1
    claims = check_logout_token(received[0], await jwks(api), issuer=BASE, client_id=client.id)
    assert claims["sub"] == user.id and claims["sid"] == sid
    sent = (await api.state.audit.query(type="backchannel_logout_sent")).events
    assert [e.detail["client_id"] for e in sent] == [client.id]
    assert received[0] not in str([e.detail for e in sent])  # the token is not audited


async def test_a_password_grant_client_is_told_too(api: Api) -> None:
    """A client holding tokens from the (legacy) password grant's session hears of its end."""
    with receiver() as rp:
        client, secret = await add_client(api, backchannel_logout_uri=rp.url,
                                          grant_types=("password", "refresh_token"))
        answer = await api.client.post("/oauth/token", auth=(client.id, secret or ""), data={
            "grant_type": "password", "username": EMAIL, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        user = await api.state.find_user(EMAIL)
        await api.state.revoke_user(user.id)
        await api.state.backchannel.drain()
        received = rp.wait_for(1)
    check_logout_token(received[0], await jwks(api), issuer=BASE, client_id=client.id)


async def test_prompt_consent_asks_even_for_a_first_party_app(api: Api) -> None:
    client, _ = await add_client(api)
    b = await browser(api)
    params = authorize_params(client, new_verifier(), scope="openid", prompt="consent")
    page = await b.get("/oauth/authorize?" + urlencode(params))
    assert page.status_code == 200 and "Allow shop?" in page.text
    assert 'name="prompt" value="consent"' in page.text


async def test_a_slow_receiver_does_not_hold_up_the_logout(api: Api) -> None:
    """The request that ends the session answers while the RP has not answered yet."""
    with receiver(hold=True) as rp:
        client, secret = await add_client(api, backchannel_logout_uri=rp.url)
        b = await browser(api)
        await sign_in(api, b, client, secret)
        answer = await b.post("/auth/logout")
        assert answer.status_code == 204
        assert rp.tokens == []  # the receiver is still holding the POST (or has not got it)
        assert await api.state.store.scan(OUTBOX) != []  # the delivery is pending
        rp.release.set()
        await api.state.backchannel.drain()
        assert len(rp.wait_for(1)) == 1
    assert await api.state.store.scan(OUTBOX) == []


async def test_a_failing_receiver_is_retried_with_backoff(api: Api) -> None:
    api.state.backchannel.backoff = 0.01  # the schedule is 1 s, 2 s, 4 s... by default
    with receiver(fail_first=2) as rp:
        client, secret = await add_client(api, backchannel_logout_uri=rp.url)
        b = await browser(api)
        await sign_in(api, b, client, secret)
        user = await api.state.find_user(EMAIL)
        await api.state.revoke_user(user.id)  # returns before any delivery
        await api.state.backchannel.drain()
        received = rp.wait_for(1)
    assert rp.requests == 3 and len(received) == 1
    check_logout_token(received[0], await jwks(api), issuer=BASE, client_id=client.id)
    sent = (await api.state.audit.query(type="backchannel_logout_sent")).events
    assert sent[0].detail["attempts"] == 3
    assert await api.state.store.scan(OUTBOX) == []


async def test_a_dead_receiver_is_given_up_and_audited(api: Api) -> None:
    api.state.backchannel.backoff = 0.01
    api.state.backchannel.attempts = 3
    with receiver(fail_first=1000) as rp:
        client, secret = await add_client(api, backchannel_logout_uri=rp.url)
        b = await browser(api)
        await sign_in(api, b, client, secret)
        user = await api.state.find_user(EMAIL)
        await api.state.revoke_user(user.id)
        await api.state.backchannel.drain()
    assert rp.requests == 3
    failed = (await api.state.audit.query(type="backchannel_logout_failed")).events
    assert failed[0].detail == {"client_id": client.id, "attempts": 3, "error": "HTTP 500"}
    assert await api.state.store.scan(OUTBOX) == []


async def test_closing_waits_for_no_retry_and_leaves_the_entry(api: Api) -> None:
    """An instance that stops between attempts leaves its entry; a pump resumes it."""
    api.state.backchannel.backoff = 3600.0  # the retry would come in an hour
    with receiver(fail_first=1) as rp:
        client, secret = await add_client(api, backchannel_logout_uri=rp.url)
        b = await browser(api)
        await sign_in(api, b, client, secret)
        user = await api.state.find_user(EMAIL)
        await api.state.revoke_user(user.id)
        await asyncio.to_thread(rp.wait_requests, 1)
        await asyncio.wait_for(api.state.backchannel.close(), 10)  # not an hour
        [entry] = await api.state.store.scan(OUTBOX)
        assert entry.value["attempt"] == 1 and rp.tokens == []
        # another instance's pump, once the entry's deadline has passed
        await api.state.store.patch(OUTBOX, entry.key, {"due": api.state.clock.now() - 1})
        api.state.backchannel.start()
        assert await api.state.backchannel.pump() == 1
        await api.state.backchannel.drain()
        received = rp.wait_for(1)
    check_logout_token(received[0], await jwks(api), issuer=BASE, client_id=client.id)
    assert rp.requests == 2 and await api.state.store.scan(OUTBOX) == []


async def test_the_outbox_survives_a_stopped_deliverer(api: Api) -> None:
    """An entry left by a process that died mid-delivery is taken over by the pump."""
    with receiver() as rp:
        client, secret = await add_client(api, backchannel_logout_uri=rp.url)
        b = await browser(api)
        await sign_in(api, b, client, secret)
        user = await api.state.find_user(EMAIL)
        sid = (await api.state.sessions.for_user(user.id))[0].sid
        now = api.state.clock.now()
        await api.state.store.put(OUTBOX, "left-behind", {
            "client_id": client.id, "uri": rp.url, "user_id": user.id, "sid": sid,
            "attempt": 1, "due": now - 1}, expires_at=now + 600)
        assert await api.state.backchannel.pump() == 1
        await api.state.backchannel.drain()
        received = rp.wait_for(1)
    claims = check_logout_token(received[0], await jwks(api), issuer=BASE, client_id=client.id)
    assert claims["jti"] == "left-behind" and claims["sid"] == sid
    assert await api.state.store.scan(OUTBOX) == []


async def test_the_logout_token_check_is_a_real_check(api: Api) -> None:
    """The receiver's validation refuses a logout token meant for another client."""
    with receiver() as rp:
        client, secret = await add_client(api, backchannel_logout_uri=rp.url)
        b = await browser(api)
        await sign_in(api, b, client, secret)
        await b.post("/auth/logout")
        await api.state.backchannel.drain()
        token = rp.wait_for(1)[0]
    keys = await jwks(api)
    check_logout_token(token, keys, issuer=BASE, client_id=client.id)
    with pytest.raises(jwt.InvalidAudienceError):
        check_logout_token(token, keys, issuer=BASE, client_id="c_someone_else_00")
    with pytest.raises(jwt.InvalidIssuerError):
        check_logout_token(token, keys, issuer="https://elsewhere", client_id=client.id)


async def test_clients_without_a_backchannel_uri_cost_no_delivery(api: Api) -> None:
    client, secret = await add_client(api)
    b = await browser(api)
    await sign_in(api, b, client, secret)
    user = await api.state.find_user(EMAIL)
    assert await api.state.store.list_by_user("oidc_rp", user.id) == []  # nothing noted
    await api.state.revoke_user(user.id)
    assert await api.state.store.scan(OUTBOX) == []


def test_clients_add_registers_post_logout_redirect_uris(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    runner = CliRunner()
    added = runner.invoke(app, [
        "clients", "add", "shop", "--redirect-uri", "https://shop.example/cb",
        "--post-logout-redirect-uri", "https://shop.example/bye",
        "--post-logout-redirect-uri", "http://127.0.0.1:9/bye",
        "--backchannel-logout-uri", "https://shop.example/bcl", "--store", url, "--json"])
    assert added.exit_code == 0, added.output
    shop = json.loads(added.stdout)
    assert shop["post_logout_redirect_uris"] == ["https://shop.example/bye", "http://127.0.0.1:9/bye"]
    listed = json.loads(runner.invoke(app, ["clients", "list", "--store", url, "--json"]).stdout)
    assert listed[0]["post_logout_redirect_uris"] == shop["post_logout_redirect_uris"]
    bad = runner.invoke(app, ["clients", "add", "evil", "--redirect-uri", "https://e.example/cb",
                              "--post-logout-redirect-uri", "https://*.example/", "--store", url])
    assert bad.exit_code == 1 and "wildcards" in bad.output


@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgres"])
async def test_back_channel_logout_on_every_store(backend: str, tmp_path: Path) -> None:
    """The per-session client records and the outbox are plain store records: the same
    on every backend (SQLite file, the shared Redis and PostgreSQL, own namespace)."""
    url = f"sqlite:///{tmp_path / 'a.db'}" if backend == "sqlite" else require_service(backend)
    async with running(store=url, namespace=fresh_namespace(), refresh_grace=0) as api:
        try:
            await api.add_user(EMAIL)
            with receiver() as rp:
                client, secret = await add_client(api, backchannel_logout_uri=rp.url)
                b = await browser(api)
                await sign_in(api, b, client, secret)
                user = await api.state.find_user(EMAIL)
                sid = (await api.state.sessions.for_user(user.id))[0].sid
                await api.state.revoke_user(user.id)
                await api.state.backchannel.drain()
                received = rp.wait_for(1)
            claims = check_logout_token(received[0], await jwks(api), issuer=BASE,
                                        client_id=client.id)
            assert claims["sid"] == sid
            assert await api.state.store.scan(OUTBOX) == []
            assert await api.state.store.list_by_user("oidc_rp", user.id) == []
        finally:
            drop = getattr(api.state.store, "drop_namespace", None)
            if drop is not None:
                await drop()
