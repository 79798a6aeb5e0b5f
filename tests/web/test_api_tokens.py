"""Tokens through the HTTP API: the hybrid exchange, the OAuth endpoints, discovery,
the admin revoke and the password change, each refused by ``/auth/me`` at once."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from authstate.clock import FrozenClock
from tests.web.api import PASSWORD, Api, running


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(1_800_000_000.0)


@pytest.fixture
async def api(clock: FrozenClock) -> AsyncIterator[Api]:
    async with running(clock=clock) as api:
        yield api


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def password_grant(api: Api, email: str, password: str = PASSWORD) -> httpx.Response:
    return await api.client.post(
        "/oauth/token", data={"grant_type": "password", "username": email, "password": password}
    )


async def me_status(api: Api, token: str) -> int:
    async with api.new_client() as fresh:
        return (await fresh.get("/auth/me", headers=bearer(token))).status_code


async def test_session_exchange_gives_a_jwt_that_me_accepts(api: Api, clock: FrozenClock) -> None:
    user = await api.add_user("alice@example.com")
    csrf = await api.login("alice@example.com")
    r = await api.client.post("/auth/token", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 600
    assert body["access_token"].count(".") == 2
    async with api.new_client() as fresh:
        me = await fresh.get("/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["user"]["id"] == user.id and me.json()["auth"]["method"] == "jwt"
    assert me.json()["csrf_token"] is None
    r2 = await api.client.post("/auth/token", headers=bearer(body["access_token"]))
    assert r2.status_code == 400 and r2.json()["code"] == "session_required"
    clock.advance(600 + 30 + 1)  # ttl plus the verifier's leeway
    assert await me_status(api, body["access_token"]) == 401  # expired


async def test_logout_of_the_session_kills_its_access_token_at_once(api: Api) -> None:
    await api.add_user("bob@example.com")
    csrf = await api.login("bob@example.com")
    token = (await api.client.post("/auth/token", headers={"X-CSRF-Token": csrf})).json()["access_token"]
    assert await me_status(api, token) == 200
    assert (await api.client.post("/auth/logout", headers={"X-CSRF-Token": csrf})).status_code == 204
    assert await me_status(api, token) == 401


async def test_password_grant_and_refresh_rotation(api: Api, clock: FrozenClock) -> None:
    user = await api.add_user("carol@example.com")
    r = await password_grant(api, "carol@example.com")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    pair = r.json()
    assert pair["token_type"] == "Bearer" and pair["expires_in"] > 0
    assert {"access_token", "refresh_token"} <= pair.keys()
    assert "set-cookie" not in r.headers
    async with api.new_client() as fresh:
        me = await fresh.get("/auth/me", headers=bearer(pair["access_token"]))
    assert me.json()["user"]["id"] == user.id

    clock.advance(30)
    r2 = await api.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]})
    assert r2.status_code == 200
    rotated = r2.json()
    assert rotated["refresh_token"] != pair["refresh_token"]
    assert await me_status(api, rotated["access_token"]) == 200

    clock.advance(60)  # past the grace window: the spent token is a theft signal
    reused = await api.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]})
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert await me_status(api, rotated["access_token"]) == 401  # the family's session ended


async def test_password_grant_errors_are_rfc6749(api: Api) -> None:
    await api.add_user("dave@example.com")
    wrong = await password_grant(api, "dave@example.com", "wrong password")
    unknown = await password_grant(api, "nobody@example.com", "wrong password")
    assert wrong.status_code == unknown.status_code == 400
    assert wrong.json() == unknown.json() == {"error": "invalid_grant", "error_description": "wrong username or password"}
    assert wrong.headers["cache-control"] == "no-store"
    cases = [
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({}, "invalid_request"),
        ({"grant_type": "password", "username": "dave@example.com"}, "invalid_request"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "rt_bogus"}, "invalid_grant"),
    ]
    for data, error in cases:
        r = await api.client.post("/oauth/token", data=data)
        assert r.status_code == 400 and r.json()["error"] == error, (data, r.text)
    as_json = await api.client.post("/oauth/token", json={"grant_type": "password"})
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"


async def test_password_grant_is_throttled(api: Api) -> None:
    await api.add_user("erin@example.com")
    for _ in range(5):
        assert (await password_grant(api, "erin@example.com", "wrong password")).status_code == 400
    r = await password_grant(api, "erin@example.com")
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert r.json()["error"] == "invalid_request"  # not slow_down: that is RFC 8628's device flow


async def test_introspection_needs_a_client_and_reports_revocation(api: Api) -> None:
    await api.add_user("fay@example.com")
    client, secret = await api.state.clients.create("api gateway")
    token = (await password_grant(api, "fay@example.com")).json()["access_token"]

    anonymous = await api.client.post("/oauth/introspect", data={"token": token})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    assert anonymous.headers["www-authenticate"].startswith("Basic ")
    wrong = await api.client.post("/oauth/introspect", data={"token": token}, headers=basic(client.id, "x" + secret))
    assert wrong.status_code == 401
    garbage = await api.client.post("/oauth/introspect", data={"token": token}, headers={"Authorization": "Basic !!!"})
    assert garbage.status_code == 401

    good = await api.client.post("/oauth/introspect", data={"token": token}, headers=basic(client.id, secret))
    assert good.status_code == 200 and good.json()["active"] is True
    assert good.headers["cache-control"] == "no-store"
    missing = await api.client.post("/oauth/introspect", data={}, headers=basic(client.id, secret))
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"

    revoked = await api.client.post("/oauth/revoke", data={"token": token}, headers=basic(client.id, secret))
    assert revoked.status_code == 200
    after = await api.client.post("/oauth/introspect", data={"token": token}, headers=basic(client.id, secret))
    assert after.json() == {"active": False}
    assert await me_status(api, token) == 401


async def test_revocation_endpoint(api: Api) -> None:
    await api.add_user("gus@example.com")
    pair = (await password_grant(api, "gus@example.com")).json()
    assert await me_status(api, pair["access_token"]) == 200
    r = await api.client.post("/oauth/revoke", data={"token": pair["refresh_token"], "token_type_hint": "refresh_token"})
    assert r.status_code == 200
    refreshed = await api.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 400
    assert await me_status(api, pair["access_token"]) == 401  # its session ended with it
    unknown = await api.client.post("/oauth/revoke", data={"token": "never-issued"})
    assert unknown.status_code == 200  # RFC 7009 §2.2
    bad_client = await api.client.post("/oauth/revoke", data={"token": "x"}, headers=basic("c_nope", "nope"))
    assert bad_client.status_code == 401 and bad_client.json()["error"] == "invalid_client"
    missing = await api.client.post("/oauth/revoke", data={})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


async def test_logout_by_bearer_revokes_the_token_and_its_session(api: Api) -> None:
    await api.add_user("hal@example.com")
    pair = (await password_grant(api, "hal@example.com")).json()
    async with api.new_client() as fresh:
        r = await fresh.post("/auth/logout", headers=bearer(pair["access_token"]))
    assert r.status_code == 204
    assert await me_status(api, pair["access_token"]) == 401
    refreshed = await api.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 400


async def test_password_change_ends_everything_else_and_rotates_this_session(api: Api) -> None:
    await api.add_user("ivy@example.com")
    laptop = api.new_client()
    await api.login("ivy@example.com", client=laptop)
    pair = (await password_grant(api, "ivy@example.com")).json()
    csrf = await api.login("ivy@example.com")
    own_token = (await api.client.post("/auth/token", headers={"X-CSRF-Token": csrf})).json()["access_token"]
    before = api.client.cookies["authstate_session"]

    wrong = await api.client.post("/auth/password", headers={"X-CSRF-Token": csrf},
                                  json={"current_password": "not it at all", "new_password": "a new passphrase"})
    assert wrong.status_code == 403 and wrong.json()["code"] == "wrong_password"
    weak = await api.client.post("/auth/password", headers={"X-CSRF-Token": csrf},
                                 json={"current_password": PASSWORD, "new_password": "short"})
    assert weak.status_code == 422 and weak.json()["code"] == "invalid_input"

    r = await api.client.post("/auth/password", headers={"X-CSRF-Token": csrf},
                              json={"current_password": PASSWORD, "new_password": "a new passphrase"})
    assert r.status_code == 204
    after = api.client.cookies["authstate_session"]
    assert after != before and await api.state.authenticate_session(before) is None
    me = await api.client.get("/auth/me")
    assert me.status_code == 200 and me.json()["csrf_token"] == csrf  # same session, new ID
    assert (await laptop.get("/auth/me")).status_code == 401
    assert await me_status(api, pair["access_token"]) == 401
    assert await me_status(api, own_token) == 401
    refreshed = await api.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 400
    assert (await password_grant(api, "ivy@example.com")).status_code == 400
    assert (await password_grant(api, "ivy@example.com", "a new passphrase")).status_code == 200
    types = {e.type for e in (await api.state.audit.query(limit=200)).events}
    assert {"password_changed", "session_rotated", "user_version_bumped"} <= types
    await laptop.aclose()


async def test_admin_revoke(api: Api) -> None:
    victim = await api.add_user("jack@example.com")
    await api.add_user("root@example.com", admin=True)
    await api.add_user("plain@example.com")
    browser = api.new_client()
    await api.login("jack@example.com", client=browser)
    pair = (await password_grant(api, "jack@example.com")).json()

    plain = api.new_client()
    plain_csrf = await api.login("plain@example.com", client=plain)
    denied = await plain.post(f"/admin/users/{victim.id}/revoke", headers={"X-CSRF-Token": plain_csrf})
    assert denied.status_code == 403 and denied.json()["code"] == "forbidden"
    assert (await browser.get("/auth/me")).status_code == 200

    csrf = await api.login("root@example.com")
    r = await api.client.post(f"/admin/users/{victim.id}/revoke", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200
    assert r.json() == {"revoked_sessions": 2, "revoked_families": 1}
    assert (await browser.get("/auth/me")).status_code == 401
    assert await me_status(api, pair["access_token"]) == 401
    refreshed = await api.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 400
    missing = await api.client.post("/admin/users/u_AAAAAAAAAAAAAAAA/revoke", headers={"X-CSRF-Token": csrf})
    assert missing.status_code == 404
    root_token = (await api.client.post("/auth/token", headers={"X-CSRF-Token": csrf})).json()["access_token"]
    async with api.new_client() as fresh:
        by_bearer = await fresh.post(f"/admin/users/{victim.id}/revoke", headers=bearer(root_token))
    assert by_bearer.status_code == 200
    await browser.aclose()
    await plain.aclose()


async def test_jwks_and_metadata(api: Api) -> None:
    jwks = await api.client.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    keys = jwks.json()["keys"]
    assert keys and all("kid" in k and "d" not in k for k in keys)
    assert keys[0]["kty"] == "OKP" and keys[0]["crv"] == "Ed25519"
    meta = (await api.client.get("/.well-known/oauth-authorization-server")).json()
    assert meta["issuer"] == "http://testserver"
    assert meta["token_endpoint"] == "http://testserver/oauth/token"
    assert meta["jwks_uri"] == "http://testserver/.well-known/jwks.json"
    assert meta["introspection_endpoint"].endswith("/oauth/introspect")
    assert meta["revocation_endpoint"].endswith("/oauth/revoke")
    # issue 12: the code flow joined the (legacy) password grant
    assert set(meta["grant_types_supported"]) == {"authorization_code", "password", "refresh_token"}
    # a token the service issues verifies with the published keys (PyJWT as the reference)
    import jwt as pyjwt

    await api.add_user("kim@example.com")
    token = (await password_grant(api, "kim@example.com")).json()["access_token"]
    header = pyjwt.get_unverified_header(token)
    key = next(k for k in keys if k["kid"] == header["kid"])
    claims = pyjwt.decode(token, pyjwt.PyJWK(key).key, algorithms=["EdDSA"], audience="authstate",
                          options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})
    assert claims["iss"] == "http://testserver"


async def test_no_secret_reaches_a_log_line_an_audit_row_or_a_later_response(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import logging

    caplog.set_level(logging.DEBUG)
    await api.add_user("leo@example.com", admin=True)
    client, client_secret = await api.state.clients.create("gateway")
    later: list[httpx.Response] = []
    wrong = "wrong but plausible password"
    later.append(await password_grant(api, "leo@example.com", wrong))
    pair = (await password_grant(api, "leo@example.com")).json()
    login = await api.client.post("/auth/login", json={"email": "leo@example.com", "password": PASSWORD})
    csrf, session_id = login.json()["csrf_token"], api.client.cookies["authstate_session"]
    exchanged = (await api.client.post("/auth/token", headers={"X-CSRF-Token": csrf})).json()["access_token"]
    rotated = (await api.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]})).json()
    later.append(await api.client.get("/auth/me"))
    later.append(await api.client.get("/auth/sessions"))
    later.append(await api.client.post("/oauth/introspect", data={"token": rotated["access_token"]}, headers=basic(client.id, client_secret)))
    later.append(await api.client.post("/oauth/introspect", data={"token": rotated["refresh_token"]}, headers=basic(client.id, client_secret)))
    later.append(await api.client.post("/oauth/revoke", data={"token": rotated["refresh_token"]}))
    later.append(await api.client.post("/auth/password", headers={"X-CSRF-Token": csrf},
                                       json={"current_password": PASSWORD, "new_password": "the next passphrase"}))
    later.append(await api.client.post("/auth/logout", headers={"X-CSRF-Token": csrf}))
    secrets = {
        "password": PASSWORD, "wrong password": wrong, "new password": "the next passphrase",
        "session id": session_id, "client secret": client_secret,
        "access token": pair["access_token"], "refresh token": pair["refresh_token"],
        "rotated access": rotated["access_token"], "rotated refresh": rotated["refresh_token"],
        "exchanged access": exchanged,
    }
    audit = json.dumps([e.to_json() for e in (await api.state.audit.query(limit=500)).events])
    for where, text in [("logs", caplog.text), ("audit", audit),
                        *((f"{r.request.method} {r.request.url.path}", r.text + str(r.headers)) for r in later)]:
        for name, secret in secrets.items():
            assert secret not in text, f"the {name} appears in {where}"
