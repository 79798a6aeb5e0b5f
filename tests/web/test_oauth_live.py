"""The code flow against a live ``authstate serve`` on 127.0.0.1 with synchronous
clients: requests-oauthlib's ``OAuth2Session`` and Authlib's requests ``OAuth2Session``.
The client and the user are made with the CLI, as an operator would."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from requests_oauthlib import OAuth2Session

from tests.web.live_service import PASSWORD, LiveService, authstate_command, live_service

EMAIL = "carol@example.com"
REDIRECT = "https://app.example/callback"


def cli(service: LiveService, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [*authstate_command(), *args, "--store", service.store], input=stdin, env=service.env,
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    with live_service(tmp_path_factory.mktemp("oauth")) as running:
        cli(running, "users", "add", EMAIL, "--password-stdin", "--json", stdin=PASSWORD + "\n")
        yield running


def add_client(service: LiveService, *flags: str) -> dict[str, str]:
    added: dict[str, str] = json.loads(cli(service, "clients", "add", "shop", "--redirect-uri",
                                           REDIRECT, "--first-party", *flags, "--json"))
    return added


def browser_visits(service: LiveService, url: str) -> str:
    """A logged-in browser opens the authorization URL; where it is sent back to."""
    with httpx.Client(base_url=service.url) as browser:
        assert browser.post("/auth/login", json={"email": EMAIL, "password": PASSWORD}).status_code == 200
        answer = browser.get(url)
    assert answer.status_code == 302, answer.text
    location: str = answer.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return location


def test_requests_oauthlib_code_flow_with_pkce(service: LiveService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the test server is plain http
    client = add_client(service)
    session = OAuth2Session(client["client_id"], redirect_uri=REDIRECT, pkce="S256")
    url, state = session.authorization_url(f"{service.url}/oauth/authorize")
    location = browser_visits(service, url)
    token = session.fetch_token(f"{service.url}/oauth/token", authorization_response=location,
                                client_secret=client["client_secret"])
    assert token["token_type"] == "Bearer" and token["refresh_token"].startswith("rt_")
    me = session.get(f"{service.url}/auth/me")
    assert me.status_code == 200 and me.json()["user"]["email"] == EMAIL
    refreshed = session.refresh_token(f"{service.url}/oauth/token",
                                      auth=(client["client_id"], client["client_secret"]))
    assert refreshed["access_token"] != token["access_token"]
    assert state in location


def test_authlib_requests_session_code_flow(service: LiveService) -> None:
    client = add_client(service, "--scope", "orders:read")
    with AuthlibSession(client["client_id"], client["client_secret"], redirect_uri=REDIRECT,
                        code_challenge_method="S256", scope="openid") as session:
        verifier = generate_token(48)
        url, _ = session.create_authorization_url(f"{service.url}/oauth/authorize",
                                                  code_verifier=verifier)
        token = session.fetch_token(f"{service.url}/oauth/token",
                                    authorization_response=browser_visits(service, url),
                                    code_verifier=verifier)
        assert token["scope"] == "openid"
        info = session.introspect_token(f"{service.url}/oauth/introspect", token=token["access_token"])
        assert info.json()["active"] is True and info.json()["client_id"] == client["client_id"]
        assert session.revoke_token(f"{service.url}/oauth/revoke", token=token["access_token"]).status_code == 200
        after = session.introspect_token(f"{service.url}/oauth/introspect", token=token["access_token"])
        assert after.json() == {"active": False}
