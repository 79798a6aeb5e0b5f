"""The JWKS client against a real HTTP server on 127.0.0.1 that we stop and restart."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from authstate.clock import FrozenClock
from authstate.errors import ConfigurationError, KeysUnavailable, UnknownKey
from authstate.jose.jwk import SigningKey
from authstate.jose.jwks import JWKSClient
from authstate.jose.jws import b64url_encode, sign_compact
from authstate.keystore import KeySet
from authstate.tokens.access import AccessTokens

ISSUER, AUDIENCE = "https://auth.example", "api"


class IssuerServer:
    """Serves ``document`` at /jwks.json; counts requests; can go down and come back."""

    def __init__(self) -> None:
        self.document: Any = {"keys": []}
        self.status = 200
        self.body: bytes | None = None
        self.hits = 0
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                body = owner.body if owner.body is not None else json.dumps(
                    owner.document).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"


@pytest.fixture
def server() -> Iterator[IssuerServer]:
    issuer = IssuerServer()
    issuer.start()
    try:
        yield issuer
    finally:
        issuer.stop()


@pytest.fixture
def issuer_keys(server: IssuerServer, clock: FrozenClock) -> KeySet:
    keys = KeySet.generate("EdDSA", now=clock.now())
    server.document = keys.public_jwks()
    return keys


@pytest.fixture
async def client(server: IssuerServer, clock: FrozenClock) -> AsyncIterator[JWKSClient]:
    jwks = JWKSClient(server.url, clock=clock, cache_ttl=300, min_refresh_interval=30,
                      max_stale=3600, timeout=2.0)
    try:
        yield jwks
    finally:
        await jwks.aclose()


def issuer_tokens(keys: KeySet, clock: FrozenClock) -> AccessTokens:
    return AccessTokens(keys, issuer=ISSUER, audience=AUDIENCE, clock=clock)


def verifier(client: JWKSClient, clock: FrozenClock) -> AccessTokens:
    return AccessTokens(client.keys, issuer=ISSUER, audience=AUDIENCE, clock=clock)


async def test_fetches_once_then_serves_from_cache(
    server: IssuerServer, issuer_keys: KeySet, client: JWKSClient, clock: FrozenClock
) -> None:
    token, claims = issuer_tokens(issuer_keys, clock).issue("u")
    tokens = verifier(client, clock)
    assert await client.verify(tokens, token) == claims
    assert await client.verify(tokens, token) == claims
    assert server.hits == 1 and client.fetches == 1
    assert [k.kid for k in client.keys] == [issuer_keys.signer.kid]
    assert not client.keys.has_signer, "a JWKS client can verify, never sign"


async def test_unknown_kid_refreshes_once_after_rotation(
    server: IssuerServer, issuer_keys: KeySet, client: JWKSClient, clock: FrozenClock
) -> None:
    issuing = issuer_tokens(issuer_keys, clock)
    tokens = verifier(client, clock)
    await client.verify(tokens, issuing.issue("u")[0])
    clock.advance(31)
    issuer_keys.rotate(now=clock.now())
    server.document = issuer_keys.public_jwks()
    token, claims = issuing.issue("u")
    assert await client.verify(tokens, token) == claims
    assert server.hits == 2
    assert len(client.keys) == 2, "the old key is still published while verify-only"


async def test_a_flood_of_random_kids_costs_one_fetch_per_interval(
    server: IssuerServer, issuer_keys: KeySet, client: JWKSClient, clock: FrozenClock
) -> None:
    tokens = verifier(client, clock)
    await client.refresh()
    attacker = SigningKey.generate("EdDSA")

    def forged() -> str:
        kid = secrets.token_hex(8)
        return sign_compact(attacker, {"kid": kid, "typ": "at+jwt"}, b"{}")

    for _ in range(50):
        with pytest.raises(UnknownKey):
            await client.verify(tokens, forged())
    assert server.hits == 1, "within the interval no kid makes it fetch again"
    clock.advance(30)
    results = await asyncio.gather(
        *(client.verify(tokens, forged()) for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, UnknownKey) for r in results)
    assert server.hits == 2, "concurrent misses share one fetch"


async def test_keeps_serving_cached_keys_while_the_issuer_is_down(
    server: IssuerServer, issuer_keys: KeySet, client: JWKSClient, clock: FrozenClock
) -> None:
    issuing = issuer_tokens(issuer_keys, clock)
    tokens = verifier(client, clock)
    await client.verify(tokens, issuing.issue("u")[0])
    server.stop()
    clock.advance(301)  # the cache is stale: a refresh is attempted and fails
    token, claims = issuing.issue("v")
    assert await client.verify(tokens, token) == claims
    assert client.fetches == 2 and client.last_error is not None
    assert "ConnectError" in client.last_error
    clock.advance(10)
    assert (await client.verify(tokens, issuing.issue("w")[0]))["sub"] == "w"
    assert client.fetches == 2, "a down issuer is retried once per interval, not per request"
    server.start()  # back on the same port
    clock.advance(30)
    assert (await client.verify(tokens, issuing.issue("x")[0]))["sub"] == "x"
    assert client.fetches == 3 and client.last_error is None and server.hits == 2


async def test_fails_closed_without_keys_or_when_too_stale(
    server: IssuerServer, issuer_keys: KeySet, client: JWKSClient, clock: FrozenClock
) -> None:
    token, _ = issuer_tokens(issuer_keys, clock).issue("u")
    tokens = verifier(client, clock)
    server.stop()
    with pytest.raises(KeysUnavailable) as raised:
        await client.verify(tokens, token)
    assert raised.value.code == "keys_unavailable"
    server.start()
    clock.advance(30)
    assert (await client.verify(tokens, token))["sub"] == "u"
    server.stop()
    clock.advance(3601)
    with pytest.raises(KeysUnavailable):
        await client.verify(tokens, token)
    assert len(client.keys) == 0, "keys older than max_stale are dropped"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"error": "boom"}'),
        (200, b"<html>not json</html>"),
        (200, b'{"keys": "nope"}'),
        (200, b"x" * (300 * 1024)),
    ],
)
async def test_bad_responses_keep_the_cached_keys(
    status: int, body: bytes, server: IssuerServer, issuer_keys: KeySet, client: JWKSClient,
    clock: FrozenClock,
) -> None:
    issuing = issuer_tokens(issuer_keys, clock)
    tokens = verifier(client, clock)
    await client.refresh()
    server.status, server.body = status, body
    clock.advance(301)
    assert await client.refresh() is False
    assert (await client.verify(tokens, issuing.issue("u")[0]))["sub"] == "u"


async def test_a_published_set_with_secrets_is_refused_whole(
    server: IssuerServer, issuer_keys: KeySet, client: JWKSClient, clock: FrozenClock
) -> None:
    good = issuer_keys.public_jwks()["keys"][0]
    server.document = {"keys": [good, issuer_keys.signer.private_jwk() | {"kid": "priv"}]}
    assert await client.refresh() is False and "private" in (client.last_error or "")
    server.document = {"keys": [good, {"kty": "oct", "k": b64url_encode(b"k" * 32).decode(),
                                       "alg": "HS256", "kid": "h"}]}
    clock.advance(30)
    assert await client.refresh() is False


async def test_weak_or_unknown_keys_are_left_out(
    server: IssuerServer, issuer_keys: KeySet, client: JWKSClient, clock: FrozenClock
) -> None:
    good = issuer_keys.public_jwks()["keys"][0]
    enc_key = SigningKey.generate("ES256").public_jwk() | {"use": "enc", "kid": "enc"}
    odd = {"kty": "EC", "crv": "P-256K", "x": "AA", "y": "AA", "kid": "odd"}
    server.document = {"keys": [good, enc_key, odd]}
    assert await client.refresh() is True
    assert [k.kid for k in client.keys] == [good["kid"]]


async def test_header_keys_never_reach_the_network(
    server: IssuerServer, issuer_keys: KeySet, client: JWKSClient, clock: FrozenClock
) -> None:
    tokens = verifier(client, clock)
    await client.refresh()
    attacker = SigningKey.generate("EdDSA", kid=issuer_keys.signer.kid)
    token = sign_compact(attacker, {"kid": attacker.kid, "typ": "at+jwt",
                                    "jku": server.url}, b"{}")
    with pytest.raises(Exception) as raised:
        await client.verify(tokens, token)
    assert raised.value.__class__.__name__ == "UnsupportedHeader"
    assert server.hits == 1


def test_only_https_except_loopback(clock: FrozenClock) -> None:
    with pytest.raises(ConfigurationError):
        JWKSClient("http://auth.example/jwks.json", clock=clock)
    with pytest.raises(ConfigurationError):
        JWKSClient("ftp://127.0.0.1/jwks.json", clock=clock)
    with pytest.raises(ConfigurationError):
        JWKSClient("https://a.example/jwks", clock=clock, min_refresh_interval=60, cache_ttl=10)
    JWKSClient("https://auth.example/.well-known/jwks.json", clock=clock)
    JWKSClient("http://localhost:8080/jwks.json", clock=clock)


async def test_verifier_must_share_the_clients_keys(
    server: IssuerServer, issuer_keys: KeySet, client: JWKSClient, clock: FrozenClock
) -> None:
    with pytest.raises(ConfigurationError):
        await client.verify(issuer_tokens(issuer_keys, clock), "x.y.z")
    await client.refresh()
    key = await client.get_key(issuer_keys.signer.kid)
    assert key.kid == issuer_keys.signer.kid
    with pytest.raises(UnknownKey):
        await client.get_key("nope")
