"""Refresh tokens: opaque, rotated on every use, and a stolen one gives itself away.

A refresh token is 256 random bits; the store keeps only its SHA-256. Every token belongs
to a *family* (one login on one session ``sid``) and every use **rotates** it: the token
is marked spent and a successor is created in one atomic ``store.spend``, so of any number
of concurrent uses exactly one wins.

A spent token presented again means two parties hold it, so the family and its session
are revoked and ``RefreshReused`` is raised, unless it comes within the short ``grace``
window, where it is a legitimate race (two tabs, a retried request) and receives **the
same** successor pair. That pair is kept on the spent record encrypted with AES-GCM under
a key derived (HKDF-SHA256) from the presented token itself, so the store holds nothing
that grants access without the token that was just spent.

A spent token is remembered only for ``reuse_window`` after it was spent (never past
its own expiry): long enough to recognise a thief's or a victim's late use, short enough
that one record per rotation does not pile up for the whole ``ttl``. After that window a
spent token is simply unknown: refused with ``InvalidGrant``, but no longer evidence that
revokes its family (what this gives up is documented in the README).

A token lives ``ttl`` (sliding with each rotation) and never past its family's absolute
``family_ttl``. Ending the session revokes its families (``revoke_session``); the family
is not bounded by the session's idle expiry, which a non-browser client never touches.
Malformed and unknown tokens are one answer, ``InvalidGrant``, decided before the store is
asked; a store outage raises ``StoreUnavailable`` and changes nothing, so the client's
token still works once the store is back unless the rotation had committed.
"""

from __future__ import annotations

import enum
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from authstate.audit import AuditLog
from authstate.clock import Clock, SystemClock
from authstate.errors import InvalidGrant, InvalidScope, MalformedToken, RefreshReused
from authstate.jose.jws import b64url_decode, b64url_text
from authstate.randomtoken import PrefixedToken
from authstate.randomtoken import digest as digest  # re-exported: the stored form
from authstate.stores.base import JSON, Record, Store

logger = logging.getLogger("authstate.refresh")

KIND = "refresh"
FAMILY = "refresh_family"
FORMAT = PrefixedToken("rt_")
looks_like = FORMAT.looks_like
SEAL_INFO = b"authstate refresh successor v1"


@dataclass(frozen=True, slots=True)
class Grant:
    """What a refresh token stands for; access tokens are minted from it."""

    user_id: str
    sid: str
    family: str
    scope: tuple[str, ...] = ()
    client_id: str | None = None

    def to_value(self) -> JSON:
        return {
            "user_id": self.user_id, "sid": self.sid, "family": self.family,
            "scope": list(self.scope), "client_id": self.client_id,
        }

    @classmethod
    def from_value(cls, v: JSON) -> Grant:
        return cls(
            user_id=v["user_id"], sid=v["sid"], family=v["family"],
            scope=tuple(v.get("scope") or ()), client_id=v.get("client_id"),
        )


@dataclass(frozen=True, slots=True)
class TokenPair:
    """An access token and its refresh token, as one token response carries them."""

    access_token: str
    refresh_token: str
    expires_at: float
    refresh_expires_at: float
    scope: tuple[str, ...] = ()
    token_type: str = "Bearer"  # noqa: S105 - the RFC 6749 token type, not a secret
    id_token: str | None = None  # OpenID Connect, for a code exchange with ``openid``

    def response(self, now: float) -> JSON:
        """The RFC 6749 §5.1 token response body."""
        body: JSON = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": max(0, int(self.expires_at - now)),
            "refresh_token": self.refresh_token,
        }
        if self.scope:
            body["scope"] = " ".join(self.scope)
        if self.id_token is not None:
            body["id_token"] = self.id_token
        return body


@dataclass(frozen=True, slots=True)
class RefreshInfo:
    """A live, unspent refresh token as introspection reports it."""

    grant: Grant
    issued_at: float
    expires_at: float


class AnyClient(enum.Enum):
    ANY = "any"


ANY_CLIENT: Final = AnyClient.ANY
"""``rotate``'s default: the caller (server-side code) does not speak for a client, so
the token's client is not checked. The token endpoint always passes the client."""
ClientCheck = str | Literal[AnyClient.ANY] | None

Mint = Callable[[Grant], Awaitable[tuple[str, float]]]
"""Issue an access token for a grant: ``(token, exp)``."""
ReuseHook = Callable[[Grant], Awaitable[None]]
Authorize = Callable[[Grant], Awaitable[Grant]]
"""Re-check a grant against the account as it is now, before a rotation mints: the grant
to mint (its scopes narrowed to what the user may still hold), or raise to refuse."""


class RefreshTokens:
    """Refresh token families on the store: start one at login, rotate on every use,
    revoke by token, session or user (see the module docstring).

    Why it exists: access tokens must stay short-lived so that revocation bites soon,
    yet a client should not ask its user for a password every few minutes. A refresh
    token bridges that, and rotating it turns a stolen copy into a detected theft
    instead of a silent second login. Access tokens are minted through ``mint`` (the
    front door's signer), so this class holds no key."""

    def __init__(
        self,
        store: Store,
        *,
        mint: Mint,
        clock: Clock | None = None,
        ttl: float = 14 * 86400,
        family_ttl: float = 30 * 86400,
        grace: float = 10,
        reuse_window: float = 3 * 86400,
        audit: AuditLog | None = None,
        on_reuse: ReuseHook | None = None,
        authorize: Authorize | None = None,
    ) -> None:
        if not 0 < ttl <= family_ttl:
            raise ValueError("need 0 < ttl <= family_ttl")
        if reuse_window < grace:
            raise ValueError("need reuse_window >= grace: the grace answer lives on the record")
        self.store = store
        self.mint = mint
        self.clock = clock or SystemClock()
        self.ttl = ttl
        self.family_ttl = family_ttl
        self.grace = grace
        self.reuse_window = reuse_window
        self.audit = audit
        self.on_reuse = on_reuse
        self.authorize = authorize

    async def start_family(
        self,
        user_id: str,
        sid: str,
        scope: tuple[str, ...] = (),
        *,
        client_id: str | None = None,
        family: str | None = None,
    ) -> TokenPair:
        """The first pair of a new family (at login); ``family`` names it when the caller
        must be able to revoke it later (an authorization code's reuse)."""
        now = self.clock.now()
        grant = Grant(user_id, sid, family or secrets.token_urlsafe(16), tuple(scope),
                      client_id)
        family_expires = now + self.family_ttl
        await self.store.put(
            FAMILY, grant.family, {"sid": sid, "created_at": now},
            expires_at=family_expires, user_id=user_id,
        )
        token = FORMAT.mint()
        expires = min(now + self.ttl, family_expires)
        await self.store.put(
            KIND, digest(token), {**grant.to_value(), "issued_at": now},
            expires_at=expires, user_id=user_id,
        )
        access, exp = await self.mint(grant)
        pair = TokenPair(access, token, exp, expires, grant.scope)
        await self._issued(grant, pair, "login")
        return pair

    async def rotate(
        self,
        token: object,
        *,
        client_id: ClientCheck = ANY_CLIENT,
        check_scope: tuple[str, ...] | None = None,
    ) -> TokenPair:
        """Spend ``token`` and return its successor pair (see the module docstring).
        ``client_id`` is the client presenting it (None: no client): a token issued to
        one client is refused to any other, and to a caller with no client (RFC 6749
        §6), before anything is spent. Left at ``ANY_CLIENT``, it is not checked."""
        if not looks_like(token):
            raise InvalidGrant()
        assert isinstance(token, str)
        key = digest(token)
        record = await self.store.get(KIND, key)
        if record is None or (
            client_id is not ANY_CLIENT and record.value.get("client_id") != client_id
        ):
            raise InvalidGrant()
        if check_scope is not None and set(check_scope) != set(record.value.get("scope") or ()):
            raise InvalidScope("a refresh keeps the granted scope; narrowing it is not "
                               "supported")
        if record.value.get("spent_at") is not None:
            return await self._spent_again(token, key, record)
        grant = Grant.from_value(record.value)
        family = await self.store.get(FAMILY, grant.family)
        if family is None:
            raise InvalidGrant()
        if self.authorize is not None:
            # before the mint reads the user's token version: a disable that lands after
            # this check bumps that version after the read (or deletes the token before
            # the spend), so the pair minted here is refused either way
            grant = await self.authorize(grant)
        now = self.clock.now()
        successor = FORMAT.mint()
        expires = now + self.ttl
        if family.expires_at is not None:
            expires = min(expires, family.expires_at)
        access, exp = await self.mint(grant)
        pair = TokenPair(access, successor, exp, expires, grant.scope)
        before, rotated = await self.store.spend(
            KIND, key,
            fields={"spent_at": now, "successor": _seal(token, key, pair)},
            new_key=digest(successor),
            new_value={**grant.to_value(), "issued_at": now},
            new_expires_at=expires,
            user_id=grant.user_id,
            spent_expires_at=now + self.reuse_window,
        )
        if rotated:
            if self.audit is not None:
                await self.audit.record(
                    "refresh_rotated", user_id=grant.user_id, token=token,
                    detail={"family": grant.family[:8]},
                )
            await self._issued(grant, pair, "refresh")
            return pair
        if before is None:
            raise InvalidGrant()
        return await self._spent_again(token, key, before)

    async def _issued(self, grant: Grant, pair: TokenPair, via: str) -> None:
        """Audit the access token handed out (a racer's discarded one never is)."""
        if self.audit is not None:
            await self.audit.record(
                "access_token_issued", user_id=grant.user_id, token=pair.access_token,
                detail={"kind": "access", "via": via, "family": grant.family[:8]},
            )

    async def _spent_again(self, token: str, key: str, record: Record) -> TokenPair:
        """A spent token: the same successor within the grace window, else theft."""
        grant = Grant.from_value(record.value)
        if await self.store.get(FAMILY, grant.family) is None:
            raise InvalidGrant()
        if self.clock.now() - float(record.value["spent_at"]) <= self.grace:
            pair = _open(token, key, record.value.get("successor"))
            if pair is None:
                logger.error("refresh successor for %s cannot be opened", key[:8])
                raise InvalidGrant()
            return pair
        await self.revoke_family(grant.family)
        if self.audit is not None:
            await self.audit.record(
                "refresh_reuse_detected", user_id=grant.user_id, token=token,
                detail={"family": grant.family[:8]},
            )
        if self.on_reuse is not None:
            await self.on_reuse(grant)
        raise RefreshReused()

    async def inspect(self, token: object) -> RefreshInfo | None:
        """The live, unspent token's grant, or None (for introspection)."""
        if not looks_like(token):
            return None
        assert isinstance(token, str)
        record = await self.store.get(KIND, digest(token))
        if record is None or record.value.get("spent_at") is not None:
            return None
        grant = Grant.from_value(record.value)
        if await self.store.get(FAMILY, grant.family) is None:
            return None
        expires = record.expires_at if record.expires_at is not None else float("inf")
        return RefreshInfo(grant, float(record.value["issued_at"]), expires)

    async def revoke(self, token: object) -> Grant | None:
        """Revoke the family of ``token`` (RFC 7009); its grant, or None if unknown."""
        if not looks_like(token):
            return None
        assert isinstance(token, str)
        record = await self.store.get(KIND, digest(token))
        if record is None:
            return None
        grant = Grant.from_value(record.value)
        return grant if await self.revoke_family(grant.family) else None

    async def revoke_family(self, family: str) -> bool:
        """Every token of the family becomes invalid; True if it was live."""
        return await self.store.delete(FAMILY, family) is not None

    async def revoke_session(self, user_id: str, sid: str) -> int:
        """Revoke the families bound to session ``sid``; how many."""
        revoked = 0
        for record in await self.store.list_by_user(FAMILY, user_id):
            if record.value.get("sid") == sid and await self.revoke_family(record.key):
                revoked += 1
        return revoked

    async def revoke_user(self, user_id: str) -> int:
        """Revoke every family of the user; how many."""
        families = await self.store.delete_by_user(FAMILY, user_id)
        await self.store.delete_by_user(KIND, user_id)
        return len(families)


def _key(token: str) -> AESGCM:
    hkdf = HKDF(algorithm=SHA256(), length=32, salt=None, info=SEAL_INFO)
    return AESGCM(hkdf.derive(token.encode("ascii")))


def _seal(token: str, key: str, pair: TokenPair) -> str:
    nonce = secrets.token_bytes(12)
    plain = json.dumps(
        [pair.access_token, pair.refresh_token, pair.expires_at, pair.refresh_expires_at,
         list(pair.scope)],
        separators=(",", ":"),
    ).encode()
    sealed = _key(token).encrypt(nonce, plain, key.encode("ascii"))
    return b64url_text(nonce + sealed)


def _open(token: str, key: str, blob: Any) -> TokenPair | None:
    if not isinstance(blob, str):
        return None
    try:
        # padding tolerated: pairs sealed before the one codec was used here carry it
        raw = b64url_decode(blob.rstrip("=").encode("ascii"), "sealed pair")
        plain = _key(token).decrypt(raw[:12], raw[12:], key.encode("ascii"))
        access, refresh, exp, refresh_exp, scope = json.loads(plain)
    except (InvalidTag, ValueError, MalformedToken):  # tampered, truncated, not base64url
        return None
    return TokenPair(access, refresh, float(exp), float(refresh_exp), tuple(scope))
