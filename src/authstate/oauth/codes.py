"""Authorization codes (RFC 6749 §4.1.2): single-use, bound to the client, the redirect
URI and the PKCE challenge, valid ``TTL`` seconds.

The store keeps only the code's SHA-256. Redeeming takes the code's one use with
``store.incr_below(limit=1)`` after the cheap binding checks and before any token is
minted (security invariant 8): of any number of concurrent exchanges exactly one wins,
on every backend. A redeemed code is remembered for ``REMEMBER`` seconds with the refresh
family and the access token issued from it, so that a second use can revoke them
(RFC 6749 §4.1.2: "SHOULD revoke ... all tokens previously issued based on that
authorization code"). The record also keeps what OpenID Connect's ID token needs later:
``nonce``, ``auth_time`` and the session's ``sid``.
"""

from __future__ import annotations

from dataclasses import dataclass

from authstate.clock import Clock
from authstate.errors import InvalidGrant
from authstate.oauth import pkce
from authstate.randomtoken import PrefixedToken, digest
from authstate.stores.base import JSON, Record, Store

KIND = "oauth_code"
USES = "oauth_code_use"
FORMAT = PrefixedToken("ac_")
TTL = 60  # OAuth 2.1 §4.1.2 asks for a short lifetime; a redirect takes a second
REMEMBER = 600  # a used code is recognised (and its tokens revoked) this long


@dataclass(frozen=True, slots=True)
class CodeGrant:
    """What an authorization code stands for."""

    client_id: str
    redirect_uri: str
    redirect_uri_given: bool  # RFC 6749 §4.1.3: then the token request must repeat it
    code_challenge: str
    user_id: str
    sid: str
    scope: tuple[str, ...]
    auth_time: float
    issued_at: float
    nonce: str | None = None

    def to_value(self) -> JSON:
        return {
            "client_id": self.client_id, "redirect_uri": self.redirect_uri,
            "redirect_uri_given": self.redirect_uri_given,
            "code_challenge": self.code_challenge, "user_id": self.user_id, "sid": self.sid,
            "scope": list(self.scope), "auth_time": self.auth_time,
            "issued_at": self.issued_at, "nonce": self.nonce,
        }

    @classmethod
    def from_value(cls, v: JSON) -> CodeGrant:
        return cls(
            client_id=v["client_id"], redirect_uri=v["redirect_uri"],
            redirect_uri_given=bool(v["redirect_uri_given"]),
            code_challenge=v["code_challenge"], user_id=v["user_id"], sid=v["sid"],
            scope=tuple(v.get("scope") or ()), auth_time=float(v["auth_time"]),
            issued_at=float(v["issued_at"]), nonce=v.get("nonce"),
        )


@dataclass(frozen=True, slots=True)
class Redeemed:
    """The outcome of presenting a code whose bindings hold: ``first`` when this call
    took its one use; otherwise the code was used before (``record`` says what it gave)."""

    key: str
    grant: CodeGrant
    first: bool
    record: Record


class AuthorizationCodes:
    def __init__(self, store: Store, *, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def issue(self, grant: CodeGrant) -> str:
        code = FORMAT.mint()
        await self.store.put(
            KIND, digest(code), grant.to_value(),
            expires_at=grant.issued_at + REMEMBER, user_id=grant.user_id,
        )
        return code

    async def redeem(
        self, code: object, *, client_id: str, redirect_uri: str | None, verifier: object
    ) -> Redeemed:
        """Check the code's bindings, then take its one use (see the module docstring).
        ``InvalidGrant`` for an unknown, expired or foreign code, a redirect URI that
        differs, or a PKCE verifier that does not match."""
        if not FORMAT.looks_like(code):
            raise InvalidGrant()
        assert isinstance(code, str)
        key = digest(code)
        record = await self.store.get(KIND, key)
        if record is None:
            raise InvalidGrant()
        grant = CodeGrant.from_value(record.value)
        if grant.client_id != client_id:
            raise InvalidGrant("the code was issued to another client")
        if self.clock.now() > grant.issued_at + TTL:
            raise InvalidGrant("the code has expired")
        if grant.redirect_uri_given and redirect_uri != grant.redirect_uri:
            raise InvalidGrant("redirect_uri differs from the authorization request's")
        if not pkce.matches(verifier, grant.code_challenge):
            raise InvalidGrant("the code_verifier does not match the code_challenge")
        uses = await self.store.incr_below(USES, key, limit=1, expires_at=record.expires_at)
        return Redeemed(key, grant, uses is not None, record)

    async def issued(self, key: str, *, family: str, jti: str, exp: float) -> bool:
        """Note what the code gave (for revoking on reuse); False when a reuse was seen
        meanwhile, so the caller revokes what it just issued."""
        record = await self.store.patch(KIND, key, {"family": family, "jti": jti, "exp": exp})
        return record is not None and not record.value.get("reused")

    async def reused(self, key: str) -> Record | None:
        """Mark the code as reused; the record with what it gave, if still known."""
        return await self.store.patch(KIND, key, {"reused": True})
