"""``/.well-known/*``: the public keys (JWKS), RFC 8414 metadata naming the endpoints, and
the OpenID Connect Discovery 1.0 document (``openid-configuration``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from authstate.oauth import oidc
from authstate.web.caller import StateDep

router = APIRouter(prefix="/.well-known", tags=["discovery"])

CACHE = {"Cache-Control": "public, max-age=300"}


def jwks_cache(max_age: int) -> dict[str, str]:
    """How long verifiers may cache the JWKS: ``jwks_max_age``, which the key
    pre-publication period is validated to cover (a new key is in every cache before
    it signs)."""
    return {"Cache-Control": f"public, max-age={max_age}"}


@router.get(
    "/jwks.json",
    summary="The public keys that verify this service's tokens",
    response_class=JSONResponse,
    responses={200: {"content": {"application/jwk-set+json": {"schema": {"type": "object"}}},
                     "description": "RFC 7517 §5 JWK Set"}},
)
async def jwks(state: StateDep) -> JSONResponse:
    return JSONResponse(state.keys.public_jwks(),
                        headers=jwks_cache(state.settings.tokens.jwks_max_age),
                        media_type="application/jwk-set+json")


@router.get("/oauth-authorization-server",
            summary="RFC 8414 authorization server metadata")
async def metadata(state: StateDep) -> JSONResponse:
    issuer = state.settings.tokens.issuer.rstrip("/")
    grants = ["authorization_code", "refresh_token"]
    if state.settings.tokens.password_grant:
        grants.append("password")
    client_auth = ["client_secret_basic", "client_secret_post"]
    body: dict[str, Any] = {
        "issuer": state.settings.tokens.issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "grant_types_supported": grants,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": [*client_auth, "none"],
        "introspection_endpoint_auth_methods_supported": client_auth,
        "revocation_endpoint_auth_methods_supported": [*client_auth, "none"],
        "authorization_response_iss_parameter_supported": True,
    }
    return JSONResponse(body, headers=CACHE)


@router.get("/openid-configuration", summary="OpenID Connect Discovery 1.0 metadata")
async def openid_configuration(state: StateDep) -> JSONResponse:
    """What ``AuthState`` implements of OIDC; the ID token algorithms are those of the
    keys that can sign and verify here (asymmetric ones: an RP cannot check an HMAC)."""
    grants = ["authorization_code", "refresh_token"]
    if state.settings.tokens.password_grant:
        grants.append("password")
    algorithms = {key.alg for key in state.keys if not key.symmetric} or {
        state.settings.tokens.key_algorithm}
    body = oidc.provider_metadata(
        state.settings.tokens.issuer, algorithms=algorithms, grant_types=grants,
        auth_methods=["client_secret_basic", "client_secret_post", "none"],
    )
    return JSONResponse(body, headers=CACHE)
