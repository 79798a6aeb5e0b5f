"""Opaque access tokens: a random reference, looked up in the store on every use.

For deployments that want revocation with no delay and no claims on the client: the token
says nothing, the store says everything, and revoking is deleting the record (the next
lookup fails, on every instance at once). The price is one store read per request. Only
the SHA-256 of the token is stored, as for sessions and refresh tokens.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from authstate.clock import ACCESS_TTL_DEFAULT, Clock, SystemClock
from authstate.errors import InvalidInput
from authstate.randomtoken import PrefixedToken
from authstate.randomtoken import digest as digest  # re-exported: the stored form
from authstate.stores.base import JSON, Record, Store

KIND = "opaque"
FORMAT = PrefixedToken("at_")
looks_like = FORMAT.looks_like


@dataclass(frozen=True, slots=True)
class OpaqueToken:
    """What an opaque token stands for; never holds the token itself."""

    user_id: str
    issued_at: float
    expires_at: float
    jti: str
    sid: str | None = None
    scope: tuple[str, ...] = ()
    client_id: str | None = None

    def claims(self) -> JSON:
        """The token's claims in JWT terms, for identities and introspection."""
        claims: JSON = {
            "sub": self.user_id, "iat": int(self.issued_at), "exp": int(self.expires_at),
            "jti": self.jti,
        }
        if self.sid is not None:
            claims["sid"] = self.sid
        if self.scope:
            claims["scope"] = " ".join(self.scope)
        if self.client_id is not None:
            claims["client_id"] = self.client_id
        return claims

    @classmethod
    def from_record(cls, record: Record) -> OpaqueToken:
        v = record.value
        return cls(
            user_id=v["user_id"], issued_at=v["issued_at"], expires_at=v["expires_at"],
            jti=v["jti"], sid=v.get("sid"), scope=tuple(v.get("scope") or ()),
            client_id=v.get("client_id"),
        )


class OpaqueTokens:
    """Opaque access tokens on the store: issue, look up, revoke (see the module
    docstring).

    Why it exists, beside JWTs: some deployments want revocation to take effect on the
    very next request everywhere, and clients that learn nothing from the token. They
    pay one store read per request for it; the JWT path pays none."""

    def __init__(
        self, store: Store, *, clock: Clock | None = None, ttl: float = ACCESS_TTL_DEFAULT
    ) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.ttl = ttl

    async def issue(
        self,
        user_id: str,
        *,
        sid: str | None = None,
        scope: tuple[str, ...] = (),
        ttl: float | None = None,
        client_id: str | None = None,
    ) -> tuple[str, OpaqueToken]:
        """A new token (give it to the client once) and what it stands for."""
        if not user_id or len(user_id) > 128:
            raise InvalidInput("user_id must be 1..128 characters")
        lifetime = self.ttl if ttl is None else ttl
        if lifetime <= 0:
            raise InvalidInput("an opaque token needs a positive lifetime")
        now = self.clock.now()
        token = FORMAT.mint()
        info = OpaqueToken(
            user_id=user_id, issued_at=now, expires_at=now + lifetime,
            jti=secrets.token_urlsafe(16), sid=sid, scope=tuple(scope), client_id=client_id,
        )
        value: JSON = {
            "user_id": user_id, "issued_at": now, "expires_at": info.expires_at,
            "jti": info.jti, "sid": sid, "scope": list(info.scope), "client_id": client_id,
        }
        await self.store.put(KIND, digest(token), value, expires_at=info.expires_at,
                             user_id=user_id)
        return token, info

    async def lookup(self, token: object) -> OpaqueToken | None:
        """The live token's record, or None (malformed, unknown, expired, revoked);
        ``StoreUnavailable`` when the store cannot answer (never None for that)."""
        if not looks_like(token):
            return None
        assert isinstance(token, str)
        record = await self.store.get(KIND, digest(token))
        if record is None:
            return None
        info = OpaqueToken.from_record(record)
        return info if info.expires_at > self.clock.now() else None

    async def revoke(self, token: object) -> OpaqueToken | None:
        """Delete the token; what it was, or None if it was not live."""
        if not looks_like(token):
            return None
        assert isinstance(token, str)
        record = await self.store.delete(KIND, digest(token))
        return OpaqueToken.from_record(record) if record is not None else None

    async def revoke_session(self, user_id: str, sid: str) -> int:
        """Delete the user's tokens bound to session ``sid``; how many."""
        revoked = 0
        for record in await self.store.list_by_user(KIND, user_id):
            if record.value.get("sid") == sid and await self.store.delete(KIND, record.key):
                revoked += 1
        return revoked

    async def revoke_scopes(self, user_id: str, scopes: frozenset[str]) -> int:
        """Delete the user's tokens that carry any of ``scopes`` (taken away); how many."""
        revoked = 0
        for record in await self.store.list_by_user(KIND, user_id):
            held = record.value.get("scope") or ()
            if scopes.intersection(held) and await self.store.delete(KIND, record.key):
                revoked += 1
        return revoked

    async def revoke_user(self, user_id: str) -> int:
        """Delete every token of the user; how many."""
        return len(await self.store.delete_by_user(KIND, user_id))
