"""Verify another service's access tokens, and nothing else: for a function or an edge worker.

A Lambda or a worker that only checks tokens should not pay, at every cold start, for
what it never runs. This module imports the JOSE layer only (``jose``, the in-memory
``keystore.KeySet``, ``tokens.access``, ``clock``, ``errors``): no store backend, no
web framework, no database driver, no settings. With a JWKS URL the JWKS client (httpx)
is imported when the verifier is built, not before.
``benchmarks/verify_cold_start.py`` measures the import and the first verification, and
``tests/test_verifier.py`` holds the import list.

The checks are the service's own (``AccessTokens.verify``): the size cap, strict parsing,
the algorithm from the key found by ``kid``, then ``iss``, ``aud``, ``exp`` with a bounded
leeway, and the ``at+jwt`` type. What a stateless verifier cannot check is revocation:
a token stays valid here until it expires, so keep access tokens short-lived (the
default is 10 minutes) or verify through the issuer's introspection endpoint instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from authstate.clock import LEEWAY_DEFAULT, Clock, SystemClock
from authstate.errors import ConfigurationError
from authstate.keystore import KeySet
from authstate.tokens.access import AccessTokens

if TYPE_CHECKING:
    from authstate.jose.jwks import JWKSClient

__all__ = ["Verifier"]


class Verifier:
    """One issuer's access tokens for one audience, checked against its keys.

    Build it once per process (at import time in a function), from a JWK Set you ship
    (``from_jwks``) or the issuer's JWKS URL (``from_url``, fetched on first use, cached,
    refreshed on an unknown ``kid`` at most once per interval); then call ``verify``
    (static keys) or ``await averify`` (either) per request. Both return the claims or
    raise the precise ``authstate.errors.InvalidToken`` subclass.
    """

    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str,
        audience: str,
        leeway: int = LEEWAY_DEFAULT,
        clock: Clock | None = None,
        jwks: JWKSClient | None = None,
    ) -> None:
        self._jwks = jwks
        self._tokens = AccessTokens(
            keys, issuer=issuer, audience=audience, clock=clock or SystemClock(), leeway=leeway
        )

    @classmethod
    def from_jwks(
        cls,
        jwks: Mapping[str, Any] | str | bytes,
        *,
        issuer: str,
        audience: str,
        leeway: int = LEEWAY_DEFAULT,
        clock: Clock | None = None,
    ) -> Verifier:
        """Verify with a JWK Set given as a mapping or its JSON text. Only public keys are
        taken (a set carrying a private or secret key is refused whole, as from a URL);
        a shared HMAC secret goes through ``Verifier(KeySet([...]), ...)`` explicitly."""
        document = json.loads(jwks) if isinstance(jwks, (str, bytes)) else jwks
        keys = KeySet.from_jwks(document, public_only=True)
        return cls(keys, issuer=issuer, audience=audience, leeway=leeway, clock=clock)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        issuer: str,
        audience: str,
        leeway: int = LEEWAY_DEFAULT,
        clock: Clock | None = None,
        allow_http: bool = False,
    ) -> Verifier:
        """Verify with the JWK Set at ``url`` (https, or http on loopback or with
        ``allow_http``), through ``authstate.jose.jwks.JWKSClient``."""
        from authstate.jose.jwks import JWKSClient

        clock = clock or SystemClock()
        client = JWKSClient(url, clock=clock, allow_http=allow_http)
        return cls(
            client.keys, issuer=issuer, audience=audience, leeway=leeway, clock=clock,
            jwks=client,
        )

    def verify(self, token: str | bytes) -> dict[str, Any]:
        """The claims of ``token`` checked against static keys (``from_jwks``)."""
        if self._jwks is not None:
            raise ConfigurationError("a verifier on a JWKS URL fetches keys: use averify")
        return self._tokens.verify(token)

    async def averify(self, token: str | bytes) -> dict[str, Any]:
        """The claims of ``token``, fetching or refreshing the keys first when needed."""
        if self._jwks is None:
            return self._tokens.verify(token)
        return await self._jwks.verify(self._tokens, token)

    async def aclose(self) -> None:
        """Close the JWKS client's connections (a no-op with static keys)."""
        if self._jwks is not None:
            await self._jwks.aclose()
