"""OpenID Connect Core 1.0, the subset a relying party needs: the ID token, the
UserInfo claims, the ``id_token_hint`` of RP-initiated logout and the discovery document.

The ID token is signed by the service's signing key (the one behind the JWKS), with
``typ: JWT`` rather than the access token's ``at+jwt`` (RFC 9068 §4: a verifier must be
able to tell them apart), ``aud`` the client ID, and ``at_hash`` binding it to the access
token issued with it (§3.1.3.6). With an HMAC signing key (``key_algorithm=HS*``) relying
parties cannot verify it: OIDC needs an asymmetric key, and Discovery §3 requires RS256,
which is why RS256 is the default algorithm of a new key set.

Claims are minimal: ``sub`` is the user ID (``subject_types_supported: ["public"]``),
``email`` adds ``email`` and ``email_verified`` (false: authstate does not verify
addresses), ``profile`` adds ``preferred_username`` (the login email, the only name an
account has).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from authstate.errors import InvalidInput, InvalidToken
from authstate.jose.jws import sign_compact, verify_compact
from authstate.keystore import KeySet
from authstate.oauth.scopes import BASE
from authstate.users import User

ID_TOKEN_TYPE = "JWT"  # noqa: S105 - the JWS typ of an ID token, not a secret
CLAIMS_SUPPORTED = ("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid",
                    "at_hash", "email", "email_verified", "preferred_username")
HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


def half_hash(value: str, alg: str) -> str:
    """OIDC Core §3.1.3.6 ``at_hash``: the base64url of the left half of the hash of
    ``value``, with the hash of the signing algorithm (``RS256`` → SHA-256). EdDSA has
    no size in its name; SHA-512 is what the OpenID Foundation's errata, Authlib and
    node ``openid-client`` use for Ed25519."""
    if alg == "EdDSA":
        hasher = hashlib.sha512
    else:
        found = HASHES.get(alg[-3:])
        if found is None:
            raise InvalidInput(f"no at_hash for alg {alg}")
        hasher = found
    digest = hasher(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def sign(keys: KeySet, claims: Mapping[str, Any], *, typ: str, now: float) -> str:
    """A compact JWS of ``claims`` by the key signing at ``now`` (``typ`` and ``kid`` in
    the header)."""
    key = keys.signer_at(now)
    payload = json.dumps(dict(claims), separators=(",", ":")).encode("utf-8")
    return sign_compact(key, {"typ": typ, "kid": key.kid}, payload)


def user_claims(user: User | None, scope: Iterable[str]) -> dict[str, Any]:
    """The claims ``scope`` releases about ``user`` (no account: none)."""
    granted = set(scope)
    claims: dict[str, Any] = {}
    if user is None:
        return claims
    if "email" in granted:
        claims["email"] = user.email
        claims["email_verified"] = False
    if "profile" in granted:
        claims["preferred_username"] = user.email
    return claims


def id_token(
    keys: KeySet,
    *,
    issuer: str,
    client_id: str,
    user_id: str,
    sid: str,
    auth_time: float,
    access_token: str,
    nonce: str | None,
    ttl: int,
    now: float,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The ID token of a code exchange (OIDC Core §2, §3.1.3.6)."""
    alg = keys.signer_at(now).alg
    claims: dict[str, Any] = {
        "iss": issuer, "sub": user_id, "aud": client_id, "iat": int(now),
        "exp": int(now) + ttl, "auth_time": int(auth_time), "sid": sid,
        "at_hash": half_hash(access_token, alg),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    if extra:
        claims.update({k: v for k, v in extra.items() if k not in claims})
    return sign(keys, claims, typ=ID_TOKEN_TYPE, now=now)


def read_id_token_hint(keys: KeySet, token: object, *, issuer: str) -> dict[str, Any]:
    """The claims of an ``id_token_hint`` (RP-Initiated Logout §2): signed by one of our
    keys, issued by us, with a ``sub`` and a string ``aud``; expiry is not checked (the
    hint of a long session is usually expired). ``InvalidToken`` otherwise."""
    if not isinstance(token, str) or not token:
        raise InvalidToken("id_token_hint is not a token")
    verified = verify_compact(token, keys)
    if verified.header.get("typ") != ID_TOKEN_TYPE:
        raise InvalidToken("id_token_hint is not an ID token")
    try:
        claims = json.loads(verified.payload)
    except ValueError:
        raise InvalidToken("id_token_hint has no JSON claims") from None
    if (not isinstance(claims, dict) or claims.get("iss") != issuer
            or not isinstance(claims.get("sub"), str) or not isinstance(claims.get("aud"), str)):
        raise InvalidToken("id_token_hint was not issued here")
    return claims


def provider_metadata(
    issuer: str, *, algorithms: Iterable[str], grant_types: Iterable[str],
    auth_methods: Iterable[str],
) -> dict[str, Any]:
    """OpenID Connect Discovery 1.0 §3, listing only what this service implements."""
    base = issuer.rstrip("/")
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "userinfo_endpoint": f"{base}/oauth/userinfo",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "end_session_endpoint": f"{base}/oauth/logout",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": sorted(set(algorithms)),
        "scopes_supported": sorted(BASE),
        "claims_supported": list(CLAIMS_SUPPORTED),
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": list(grant_types),
        "token_endpoint_auth_methods_supported": list(auth_methods),
        "prompt_values_supported": ["none"],
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "claims_parameter_supported": False,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "authorization_response_iss_parameter_supported": True,
    }
