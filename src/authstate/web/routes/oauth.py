"""``/oauth/*``: the token endpoint (RFC 6749), introspection (RFC 7662), revocation
(RFC 7009). Form-encoded in, JSON out; errors are RFC 6749 §5.2 objects.

Introspection needs a client registered with ``authstate clients add`` (HTTP Basic,
RFC 6749 §2.3.1). Revocation accepts the same client authentication and, when none is
sent, a public client revoking a token it holds (RFC 7009 §2.1): revoking a token you
hold can only take access away. A bad ``Authorization`` header is refused either way.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated
from urllib.parse import unquote_plus

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, Response

from authstate.clients import Client
from authstate.errors import AuthenticationFailed
from authstate.state import AuthState
from authstate.web.bodies import require_form
from authstate.web.caller import StateDep, client_ip, user_agent
from authstate.web.middleware import REALM
from authstate.web.problems import OAuthError
from authstate.web.schemas import OAuthErrorOut

router = APIRouter(prefix="/oauth", tags=["oauth"])

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM_BODY = [Depends(require_form)]
OAUTH_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": OAuthErrorOut, "description": "RFC 6749 §5.2 error"},
    401: {"model": OAuthErrorOut, "description": "invalid_client"},
    429: {"model": OAuthErrorOut, "description": "too many failed logins"},
    503: {"model": OAuthErrorOut, "description": "the store is unavailable"},
}
FIELD_MAX = 8192

Field = Annotated[str | None, Form(max_length=FIELD_MAX)]


def _required(value: str | None, name: str) -> str:
    if not value:
        raise OAuthError("invalid_request", f"the {name} parameter is required")
    return value


def _invalid_client() -> OAuthError:
    return OAuthError(
        "invalid_client", "client authentication failed", status=401,
        headers={"WWW-Authenticate": f'Basic realm="{REALM}"'},
    )


async def _client(request: Request, state: AuthState, *, required: bool) -> Client | None:
    """The client authenticated by HTTP Basic, None when no credentials were sent and
    none are required; ``invalid_client`` otherwise."""
    header = request.headers.get("authorization")
    if header is None:
        if required:
            raise _invalid_client()
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise _invalid_client()
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid_client() from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise _invalid_client()
    client = await state.clients.authenticate(unquote_plus(client_id), unquote_plus(secret))
    if client is None:
        raise _invalid_client()
    return client


@router.post("/token", dependencies=FORM_BODY, responses=OAUTH_ERRORS,
             summary="Token endpoint: grant_type=password or refresh_token")
async def token(
    request: Request,
    state: StateDep,
    grant_type: Field = None,
    username: Field = None,
    password: Field = None,
    refresh_token: Field = None,
    scope: Field = None,
) -> JSONResponse:
    if grant_type == "password":
        email = _required(username, "username")
        secret = _required(password, "password")
        try:
            pair = await state.password_grant(
                email, secret, ip=client_ip(request), user_agent=user_agent(request)
            )
        except AuthenticationFailed:
            raise OAuthError("invalid_grant", "wrong username or password") from None
    elif grant_type == "refresh_token":
        pair = await state.refresh_tokens(_required(refresh_token, "refresh_token"))
    elif grant_type is None:
        raise OAuthError("invalid_request", "the grant_type parameter is required")
    else:
        raise OAuthError("unsupported_grant_type", "use password or refresh_token")
    return JSONResponse(pair.response(state.clock.now()), headers=NO_STORE)


@router.post("/introspect", dependencies=FORM_BODY, responses=OAUTH_ERRORS,
             summary="RFC 7662 token introspection (HTTP Basic client authentication)")
async def introspect(
    request: Request, state: StateDep, token: Field = None, token_type_hint: Field = None,
) -> JSONResponse:
    await _client(request, state, required=True)
    answer = await state.introspect(_required(token, "token"), token_type_hint)
    return JSONResponse(answer, headers=NO_STORE)


@router.post("/revoke", dependencies=FORM_BODY, responses=OAUTH_ERRORS, response_class=Response,
             response_description="revoked, or not a token of ours (RFC 7009 §2.2); no body",
             summary="RFC 7009 token revocation")
async def revoke(
    request: Request, state: StateDep, token: Field = None, token_type_hint: Field = None,
) -> Response:
    await _client(request, state, required=False)
    await state.revoke_token(_required(token, "token"), token_type_hint)
    return Response(status_code=200, headers=NO_STORE)
