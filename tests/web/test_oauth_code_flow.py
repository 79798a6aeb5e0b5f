"""The authorization code flow end to end with real client libraries (Authlib's
``AsyncOAuth2Client`` and ``OAuth2Session``, requests-oauthlib) against the service:
login page round trip, consent, PKCE, refresh, revoke, introspect, metadata, and the
README's ``require_scopes`` example accepting a token from ``/oauth/token``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from fastapi import Depends, FastAPI, Request

from authstate.web.dependencies import CurrentIdentity, require_scopes
from authstate.web.middleware import AuthMiddleware, BearerJWT
from tests.web.api import PASSWORD, Api, running
from tests.web.oauth_support import EMAIL, REDIRECT, add_client, query_of

BASE = "http://testserver"


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running() as api:
        user = await api.add_user(EMAIL)
        await api.state.users.set_scopes(user.id, ["orders:read"])
        yield api


def oauth_client(api: Api, client_id: str, secret: str | None, **kwargs: object) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=client_id, client_secret=secret, redirect_uri=REDIRECT,
        code_challenge_method="S256", transport=api.transport, base_url=BASE, **kwargs,
    )


async def browser_authorizes(api: Api, url: str) -> str:
    """A browser follows ``url``: the login page, then back to /oauth/authorize; the
    redirect to the app it ends with."""
    browser = api.new_client()
    first = await browser.get(url)
    assert first.status_code == 303
    login_url = first.headers["location"]
    assert login_url.startswith("/login?next=%2Foauth%2Fauthorize") or login_url.startswith("/login?next=/oauth/authorize")
    page = await browser.get(login_url)
    assert page.status_code == 200
    # the login form's redirects end at the app: CSP form-action must allow its origin
    assert "form-action 'self' https://app.example;" in page.headers["content-security-policy"]
    csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    next_url = page.text.split('name="next" value="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert next_url.startswith("/oauth/authorize?")
    logged_in = await browser.post("/login", data={
        "csrf_token": csrf, "next": next_url, "email": EMAIL, "password": PASSWORD})
    assert logged_in.status_code == 303 and logged_in.headers["location"] == next_url
    back = await browser.get(next_url)
    await browser.aclose()
    assert back.status_code == 302, back.text
    location: str = back.headers["location"]
    return location


async def test_authlib_code_flow_with_pkce_refresh_introspect_revoke(api: Api) -> None:
    client, secret = await add_client(api, scopes=("orders:read",))
    assert secret is not None
    async with oauth_client(api, client.id, secret, scope="openid orders:read") as oc:
        verifier = generate_token(48)
        url, state = oc.create_authorization_url(f"{BASE}/oauth/authorize", code_verifier=verifier)
        location = await browser_authorizes(api, url)
        assert location.startswith(REDIRECT) and query_of(location)["state"] == state
        token = await oc.fetch_token(f"{BASE}/oauth/token", authorization_response=location,
                                     code_verifier=verifier)
        assert token["scope"] == "openid orders:read" and token["token_type"] == "Bearer"
        me = await oc.get("/auth/me")  # Authlib sends the bearer token
        assert me.status_code == 200 and me.json()["user"]["email"] == EMAIL

        info = (await oc.introspect_token(f"{BASE}/oauth/introspect", token=token["access_token"])).json()
        assert info["active"] is True and info["client_id"] == client.id
        assert info["scope"] == "openid orders:read" and info["token_type"] == "Bearer"
        refresh_info = (await oc.introspect_token(f"{BASE}/oauth/introspect", token=token["refresh_token"])).json()
        assert refresh_info["active"] is True and "token_type" not in refresh_info

        refreshed = await oc.refresh_token(f"{BASE}/oauth/token")
        assert refreshed["refresh_token"] != token["refresh_token"]
        assert refreshed["scope"] == "openid orders:read"
        revoked = await oc.revoke_token(f"{BASE}/oauth/revoke", token=refreshed["refresh_token"])
        assert revoked.status_code == 200
        after = (await oc.introspect_token(f"{BASE}/oauth/introspect", token=refreshed["refresh_token"])).json()
        assert after == {"active": False}


async def test_authlib_public_client_and_client_secret_post(api: Api) -> None:
    public, none = await add_client(api, public=True)
    assert none is None
    async with oauth_client(api, public.id, None, token_endpoint_auth_method="none") as oc:
        verifier = generate_token(48)
        url, _ = oc.create_authorization_url(f"{BASE}/oauth/authorize", code_verifier=verifier)
        token = await oc.fetch_token(f"{BASE}/oauth/token",
                                     authorization_response=await browser_authorizes(api, url),
                                     code_verifier=verifier)
        assert "access_token" in token
        refreshed = await oc.refresh_token(f"{BASE}/oauth/token")
        assert "access_token" in refreshed
    confidential, secret = await add_client(api)
    async with oauth_client(api, confidential.id, secret, token_endpoint_auth_method="client_secret_post") as oc:
        verifier = generate_token(48)
        url, _ = oc.create_authorization_url(f"{BASE}/oauth/authorize", code_verifier=verifier)
        token = await oc.fetch_token(f"{BASE}/oauth/token",
                                     authorization_response=await browser_authorizes(api, url),
                                     code_verifier=verifier)
        assert "scope" not in token and "access_token" in token


async def test_third_party_client_gets_a_consent_page(api: Api) -> None:
    client, secret = await add_client(api, first_party=False, scopes=("orders:read",))
    async with oauth_client(api, client.id, secret, scope="orders:read") as oc:
        verifier = generate_token(48)
        url, state = oc.create_authorization_url(f"{BASE}/oauth/authorize", code_verifier=verifier)
        await api.login(EMAIL)
        page = await api.client.get(url)
        assert page.status_code == 200 and "orders:read" in page.text and "shop" in page.text
        assert "form-action 'self' https://app.example" in page.headers["content-security-policy"]
        fields = dict(
            (part.split('name="', 1)[1].split('"', 1)[0], part.split('value="', 1)[1].split('"', 1)[0])
            for part in page.text.split("<input")[1:] if 'type="hidden"' in part
        )
        no_csrf = await api.client.post("/oauth/authorize", data={**fields, "csrf_token": "x", "decision": "allow"})
        assert no_csrf.status_code == 403 and "location" not in no_csrf.headers
        denied = await api.client.post("/oauth/authorize", data={**fields, "decision": "deny"})
        assert denied.status_code == 303
        assert query_of(denied.headers["location"]) | {} == {
            "error": "access_denied", "error_description": "the user said no", "state": state,
            "iss": BASE}
        allowed = await api.client.post("/oauth/authorize", data={**fields, "decision": "allow"})
        assert allowed.status_code == 303
        token = await oc.fetch_token(f"{BASE}/oauth/token",
                                     authorization_response=allowed.headers["location"],
                                     code_verifier=verifier)
        assert token["scope"] == "orders:read"


async def test_login_page_next_is_same_origin_only(api: Api) -> None:
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        page = await api.client.get("/login", params={"next": evil})
        assert 'name="next" value="/account"' in page.text, evil


async def test_readme_require_scopes_accepts_a_token_from_the_service(api: Api) -> None:
    app = FastAPI()

    @app.get("/me")
    async def me(identity: CurrentIdentity) -> dict[str, str]:
        return {"user": identity.user_id}

    @app.get("/orders", dependencies=[Depends(require_scopes("orders:read"))])
    async def orders(request: Request) -> list[str]:
        return sorted(request.auth.scopes)  # what Starlette's @requires reads

    app.add_middleware(AuthMiddleware, authenticators=[BearerJWT(api.state)])
    client, secret = await add_client(api, scopes=("orders:read",), grant_types=("password", "refresh_token"))
    assert secret is not None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as resource:
        for scope, expected in (("orders:read", 200), ("", 403)):
            data = {"grant_type": "password", "username": EMAIL, "password": PASSWORD,
                    "client_id": client.id, "client_secret": secret}
            if scope:
                data["scope"] = scope
            token = (await api.client.post("/oauth/token", data=data)).json()
            assert token.get("scope", "") == scope
            r = await resource.get("/orders", headers={"Authorization": f"Bearer {token['access_token']}"})
            assert r.status_code == expected, (scope, r.text)
            if expected == 200:
                assert r.json() == ["authenticated", "orders:read"]
            if expected == 403:
                assert 'insufficient_scope' in r.headers["www-authenticate"]
        claims = api.state.tokens.verify(token["access_token"])
        assert claims["client_id"] == client.id  # RFC 9068 §2.2


async def test_metadata_passes_authlib_validation() -> None:
    async with running(issuer="https://auth.example") as api:  # RFC 8414 §2: https issuer
        meta = (await api.client.get("/.well-known/oauth-authorization-server")).json()
    AuthorizationServerMetadata(meta).validate()
    assert meta["response_types_supported"] == ["code"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert urlsplit(meta["authorization_endpoint"]).path == "/oauth/authorize"
    assert set(meta["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post", "none"}
