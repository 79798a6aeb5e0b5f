"""A JWKS client for services that verify another service's tokens.

The issuer's JWK Set is fetched with httpx, cached, and refreshed when it is older than
``cache_ttl`` or when a token names a kid it does not hold (the issuer rotated). Every
fetch attempt, good or bad, starts a ``min_refresh_interval`` during which no other fetch
happens, so a flood of tokens with random kids costs one request per interval, not one
per token. When the issuer cannot be reached the cached keys keep verifying for up to
``max_stale``; with no keys at all verification fails closed (``KeysUnavailable``).

What is fetched is checked like any key material (``KeySet.from_jwks`` with
``public_only``): a published set carrying a private or secret key is refused whole, and
a single weak or malformed key is left out. Keys are never taken from token headers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import httpx

from authstate.clock import Clock
from authstate.errors import (
    ConfigurationError,
    KeysUnavailable,
    UnknownKey,
    UnusableKey,
    WeakKeyError,
)
from authstate.jwt import AccessTokens
from authstate.keys import KeySet, SigningKey

logger = logging.getLogger("authstate.jwks")

CACHE_TTL = 300.0
MIN_REFRESH_INTERVAL = 30.0
MAX_STALE = 86400.0
TIMEOUT = 5.0
MAX_BYTES = 256 * 1024


class JWKSFetchError(Exception):
    """One failed fetch; logged and absorbed while cached keys remain."""


def _loopback(host: str | None) -> bool:
    if host in (None, ""):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False


class JWKSClient:
    """The keys published at ``url``, as a ``KeySet`` kept up to date in place.

    Build verifiers on ``client.keys`` (``AccessTokens(client.keys, ...)``) and verify
    through ``await client.verify(tokens, token)``, which refreshes when it must.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Clock,
        http: httpx.AsyncClient | None = None,
        cache_ttl: float = CACHE_TTL,
        min_refresh_interval: float = MIN_REFRESH_INTERVAL,
        max_stale: float = MAX_STALE,
        timeout: float = TIMEOUT,
        max_bytes: int = MAX_BYTES,
        allow_http: bool = False,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" and not (
            parts.scheme == "http" and (allow_http or _loopback(parts.hostname))
        ):
            raise ConfigurationError("a JWKS URL must be https:// (http only for loopback)")
        if min_refresh_interval <= 0 or cache_ttl < min_refresh_interval:
            raise ConfigurationError("need 0 < min_refresh_interval <= cache_ttl")
        self.url = url
        self.keys = KeySet()
        self.cache_ttl = cache_ttl
        self.min_refresh_interval = min_refresh_interval
        self.max_stale = max_stale
        self.max_bytes = max_bytes
        self.fetches = 0
        self.last_error: str | None = None
        self._clock = clock
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._lock = asyncio.Lock()

    @property
    def fetched_at(self) -> float | None:
        return self._fetched_at

    @property
    def fresh(self) -> bool:
        """Whether the keys are younger than ``cache_ttl``: ``ensure_fresh`` would not
        fetch, so a verification needs no await (the sync face's fast path)."""
        at = self._fetched_at
        return at is not None and self._clock.now() - at < self.cache_ttl

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self.min_refresh_interval

    async def refresh(self, *, force: bool = False) -> bool:
        """Fetch now if the rate limit allows (``force`` ignores it); True when the keys
        were fetched. A failed fetch keeps the cached keys and returns False."""
        async with self._lock:
            now = self._clock.now()
            if not force and not self._may_fetch(now):
                return False
            self._attempted_at = now
            self.fetches += 1
            try:
                fetched = await self._fetch()
            except JWKSFetchError as exc:
                self.last_error = str(exc)
                logger.warning("JWKS fetch from %s failed: %s; keeping %d cached keys",
                               self.url, exc, len(self.keys))
                return False
            self.last_error = None
            self._fetched_at = self._clock.now()
            old = {(k.kid, k.alg, json.dumps(k.public_jwk(), sort_keys=True)) for k in self.keys}
            new = {(k.kid, k.alg, json.dumps(k.public_jwk(), sort_keys=True)) for k in fetched}
            if old != new:
                self.keys.replace_keys(list(fetched))
            return True

    async def _fetch(self) -> KeySet:
        try:
            async with self._http.stream(
                "GET", self.url, headers={"Accept": "application/json"}
            ) as response:
                if response.status_code != 200:
                    raise JWKSFetchError(f"HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise JWKSFetchError(f"the JWK Set is larger than {self.max_bytes} bytes")
        except httpx.HTTPError as exc:
            raise JWKSFetchError(f"{type(exc).__name__}: {exc}") from None
        try:
            document: Any = json.loads(bytes(body))
        except ValueError:
            raise JWKSFetchError("the response is not JSON") from None
        try:
            return KeySet.from_jwks(document, public_only=True, skip_unusable=True)
        except (UnusableKey, WeakKeyError) as exc:
            raise JWKSFetchError(f"the JWK Set is refused: {exc.message}") from None

    async def ensure_fresh(self) -> None:
        """Refresh when the cache is older than ``cache_ttl`` (within the rate limit);
        fail closed when there are no keys or they are older than ``max_stale``."""
        now = self._clock.now()
        if self._fetched_at is None or now - self._fetched_at >= self.cache_ttl:
            await self.refresh()
        now = self._clock.now()
        if self._fetched_at is None or now - self._fetched_at > self.max_stale:
            if len(self.keys):
                logger.error("JWKS from %s is older than %d s; dropping it", self.url,
                             int(self.max_stale))
                self.keys.replace_keys([])
            raise KeysUnavailable("the issuer's keys cannot be fetched")

    async def get_key(self, kid: str | None) -> SigningKey:
        """The key for ``kid``, refreshing once (rate-limited) when it is unknown."""
        await self.ensure_fresh()
        try:
            return self.keys.select(kid)
        except UnknownKey:
            if kid is None or not await self.refresh():
                raise
            return self.keys.select(kid)

    async def verify(self, tokens: AccessTokens, token: str | bytes) -> dict[str, Any]:
        """``tokens.verify(token)`` (``tokens`` built on ``self.keys``), refreshing the
        keys first when they are stale, and once more when the kid is unknown."""
        if tokens.keys is not self.keys:
            raise ConfigurationError("the verifier must be built on this client's keys")
        await self.ensure_fresh()
        try:
            return tokens.verify(token)
        except UnknownKey:
            if not await self.refresh():
                raise
            return tokens.verify(token)

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()
