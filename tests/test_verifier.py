"""The verify-only path: a function or an edge worker imports the JOSE layer and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from authstate.clock import FrozenClock
from authstate.errors import (
    BadSignature,
    ConfigurationError,
    InvalidAudience,
    TokenExpired,
    UnusableKey,
)
from authstate.jose.jwk import SigningKey
from authstate.keystore import KeySet
from authstate.tokens.access import AccessTokens
from authstate.verifier import Verifier
from tests.test_jwks import IssuerServer

ISSUER, AUDIENCE = "https://auth.example", "api"

# What a verify-only process must never load: stores, the web, drivers, settings.
FORBIDDEN = (
    "fastapi", "starlette", "uvicorn", "jinja2", "redis", "psycopg", "psycopg_pool",
    "sqlite3", "pydantic", "pydantic_settings", "prometheus_client", "httpx",
    "authstate.config", "authstate.state", "authstate.web", "authstate.stores.memory",
    "authstate.stores.sqlite", "authstate.stores.redis", "authstate.stores.postgres",
    "authstate.bus",
)


def loaded_after(statement: str) -> list[str]:
    """Modules from FORBIDDEN that a fresh interpreter holds after ``statement``."""
    probe = (
        f"import sys\n{statement}\n"
        f"import json\nprint(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                         text=True, timeout=60)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_importing_the_verifier_loads_no_store_framework_or_driver() -> None:
    assert loaded_after("import authstate.verifier") == []


def test_importing_authstate_alone_loads_nothing_heavy() -> None:
    assert loaded_after("import authstate") == []


def test_the_public_name_reaches_the_same_class() -> None:
    assert loaded_after("from authstate import Verifier") == []


@pytest.fixture
def issuer(clock: FrozenClock) -> tuple[KeySet, AccessTokens]:
    keys = KeySet.generate("EdDSA", now=clock.now())
    return keys, AccessTokens(keys, issuer=ISSUER, audience=AUDIENCE, clock=clock)


def test_a_shipped_jwks_verifies_the_issuers_token(
    issuer: tuple[KeySet, AccessTokens], clock: FrozenClock
) -> None:
    keys, tokens = issuer
    token, claims = tokens.issue("alice", scope="read")
    verifier = Verifier.from_jwks(json.dumps(keys.public_jwks()), issuer=ISSUER,
                                  audience=AUDIENCE, clock=clock)
    assert verifier.verify(token) == claims
    assert verifier.verify(token)["sub"] == "alice"


def test_a_shipped_jwks_refuses_what_the_service_refuses(
    issuer: tuple[KeySet, AccessTokens], clock: FrozenClock
) -> None:
    keys, tokens = issuer
    token, _ = tokens.issue("alice")
    verifier = Verifier.from_jwks(keys.public_jwks(), issuer=ISSUER, audience=AUDIENCE,
                                  clock=clock)
    other = Verifier.from_jwks(keys.public_jwks(), issuer=ISSUER, audience="billing",
                               clock=clock)
    with pytest.raises(InvalidAudience):
        other.verify(token)
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    with pytest.raises(BadSignature):
        verifier.verify(forged)
    clock.advance(tokens.ttl + 31)
    with pytest.raises(TokenExpired):
        verifier.verify(token)


def test_a_jwks_with_a_private_or_secret_key_is_refused(clock: FrozenClock) -> None:
    private = KeySet.generate("ES256", now=clock.now()).signer.private_jwk()
    secret = SigningKey.from_secret("Zq3L8vR2nW5yT1xK7mB4cH9gF6dJ0sA2eU5iO8pQ3rE",
                                    alg="HS256", kid="s").private_jwk()
    for jwk in (private, secret):
        with pytest.raises(UnusableKey):
            Verifier.from_jwks({"keys": [jwk]}, issuer=ISSUER, audience=AUDIENCE, clock=clock)


@pytest.fixture
def jwks_server() -> Iterator[IssuerServer]:
    server = IssuerServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_jwks_url_is_fetched_on_first_use_then_cached(
    jwks_server: IssuerServer, issuer: tuple[KeySet, AccessTokens], clock: FrozenClock
) -> None:
    keys, tokens = issuer
    jwks_server.document = keys.public_jwks()
    token, claims = tokens.issue("bob")
    verifier = Verifier.from_url(jwks_server.url, issuer=ISSUER, audience=AUDIENCE,
                                 clock=clock)
    try:
        assert jwks_server.hits == 0
        assert await verifier.averify(token) == claims
        assert await verifier.averify(token) == claims
        assert jwks_server.hits == 1
        with pytest.raises(ConfigurationError):
            verifier.verify(token)  # keys from a URL need the async path
    finally:
        await verifier.aclose()


def test_a_jwks_url_must_be_https_off_loopback(clock: FrozenClock) -> None:
    with pytest.raises(ConfigurationError):
        Verifier.from_url("http://auth.example/jwks.json", issuer=ISSUER, audience=AUDIENCE,
                          clock=clock)
