"""Support for the OAuth tests (not a test module): a service with a user, a browser that
logged in, and clients registered through ``AuthState.add_client``."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from authstate.clients import Client
from tests.web.api import Api

REDIRECT = "https://app.example/callback"
EMAIL = "alice@example.com"


def challenge_of(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def new_verifier() -> str:
    return secrets.token_urlsafe(48)


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def add_client(api: Api, **options: Any) -> tuple[Client, str | None]:
    options.setdefault("redirect_uris", (REDIRECT,))
    options.setdefault("first_party", True)
    return await api.state.add_client("shop", **options)


def authorize_params(client: Client, verifier: str, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code", "client_id": client.id, "redirect_uri": REDIRECT,
        "code_challenge": challenge_of(verifier), "code_challenge_method": "S256",
        "state": "xyz",
    }
    params.update(extra)
    return {k: v for k, v in params.items() if v != ""}


async def authorize(api: Api, params: dict[str, str], browser: httpx.AsyncClient | None = None) -> httpx.Response:
    return await (browser or api.client).get("/oauth/authorize?" + urlencode(params))


async def get_code(api: Api, client: Client, verifier: str, **extra: str) -> str:
    r = await authorize(api, authorize_params(client, verifier, **extra))
    assert r.status_code == 302, r.text
    answer = query_of(r.headers["location"])
    assert answer["state"] == "xyz" and "error" not in answer, answer
    return answer["code"]


async def exchange(api: Api, client: Client, secret: str | None, code: str, verifier: str,
                   **extra: str) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": verifier, **extra}
    if secret is None:
        data["client_id"] = client.id
        return await api.client.post("/oauth/token", data=data)
    return await api.client.post("/oauth/token", data=data, headers=basic(client.id, secret))
