"""RFC 7662 introspection and RFC 7009 revocation, as the HTTP layer will expose them.

Every token this service issues says what it is by its form (``rt_`` refresh tokens,
``at_`` opaque access tokens, three dot-separated parts for a JWT), so the type hint is
accepted and ignored, as RFC 7662 §2.1 allows ("the server MAY ignore this parameter")
and as RFC 7009 §2.1 requires when a hint is wrong. Client authentication, and which
client may introspect or revoke what, is the HTTP layer's business.

Introspection answers exactly ``{"active": false}`` for anything not currently valid:
malformed, unknown, expired, spent, revoked and foreign are one answer (RFC 7662 §2.2
says a server SHOULD NOT say why). A store or bus that cannot answer raises instead,
so the endpoint can say 503 rather than lie either way. Revocation succeeds silently
for tokens it does not know (RFC 7009 §2.2) and never revokes on the strength of a token
whose signature or expiry does not check out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from authstate.errors import InvalidToken
from authstate.tokens import opaque, refresh

if TYPE_CHECKING:
    from authstate.audit import AuditLog
    from authstate.config import Settings
    from authstate.revocation import Revocations
    from authstate.tokens.access import AccessTokens


class AuthState(Protocol):
    """The parts of ``authstate.state.AuthState`` these functions use, declared here so
    that ``state`` can call this module without the two importing each other."""

    settings: Settings
    refresh: refresh.RefreshTokens
    opaque: opaque.OpaqueTokens
    tokens: AccessTokens
    revocation: Revocations
    audit: AuditLog

    async def end_session_by_sid(self, user_id: str, sid: str, *, reason: str) -> None: ...

INACTIVE: dict[str, Any] = {"active": False}


def _inactive() -> dict[str, Any]:
    return dict(INACTIVE)


async def introspect(state: AuthState, token: object, hint: object = None) -> dict[str, Any]:
    """The RFC 7662 §2.2 response for ``token``."""
    if refresh.looks_like(token):
        info = await state.refresh.inspect(token)
        if info is None:
            return _inactive()
        grant = info.grant
        body: dict[str, Any] = {
            # no token_type: RFC 7662 §2.2 defines it as the OAuth token type of RFC 6749
            # §7.1 ("Bearer"), which a refresh token does not have (it is no access token)
            "active": True, "iss": state.settings.tokens.issuer,
            "sub": grant.user_id, "sid": grant.sid, "iat": int(info.issued_at),
            "exp": int(info.expires_at),
        }
        if grant.scope:
            body["scope"] = " ".join(grant.scope)
        if grant.client_id:
            body["client_id"] = grant.client_id
        return body
    if opaque.looks_like(token):
        found = await state.opaque.lookup(token)
        if found is None:
            return _inactive()
        return {
            "active": True, "token_type": "Bearer", "iss": state.settings.tokens.issuer,
            "aud": state.settings.tokens.audience, **found.claims(),
        }
    if not isinstance(token, str):
        return _inactive()
    try:
        claims = state.tokens.verify(token)
        await state.revocation.check(claims)
    except InvalidToken:
        return _inactive()
    return {**claims, "active": True, "token_type": "Bearer"}


async def revoke(state: AuthState, token: object, hint: object = None) -> None:
    """RFC 7009 §2.1: make ``token`` unusable. Revoking a refresh token revokes its
    family and ends the session it was issued on, which also revokes the access tokens
    issued on that grant (session-bound), as §2.1 recommends."""
    if refresh.looks_like(token):
        grant = await state.refresh.revoke(token)
        if grant is not None:
            await state.audit.record(
                "token_revoked", user_id=grant.user_id, token=str(token),
                detail={"type": "refresh_token"},
            )
            await state.end_session_by_sid(grant.user_id, grant.sid, reason="token_revoked")
        return
    if opaque.looks_like(token):
        found = await state.opaque.revoke(token)
        if found is not None:
            await state.audit.record(
                "token_revoked", user_id=found.user_id, token=str(token),
                detail={"type": "access_token"},
            )
        return
    if not isinstance(token, str):
        return
    try:
        claims = state.tokens.verify(token)
    except InvalidToken:
        return
    await state.revocation.revoke_jti(claims["jti"], float(claims["exp"]))
    await state.audit.record(
        "token_revoked", user_id=claims["sub"], token=token, detail={"type": "access_token"},
    )
