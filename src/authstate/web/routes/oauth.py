"""``/oauth/*``: the token endpoint (RFC 6749), introspection (RFC 7662), revocation
(RFC 7009). Form-encoded in, JSON out; errors are RFC 6749 §5.2 objects. The
authorization endpoint is ``routes/authorize.py``.

Clients from ``authstate clients add`` authenticate with ``client_secret_basic`` or
``client_secret_post``; a public client names itself with ``client_id`` alone. A wrong or
missing secret of a confidential client is 401 ``invalid_client`` with
``WWW-Authenticate: Basic``. Introspection needs a confidential client. Revocation also
takes a caller with no client revoking a token it holds (RFC 7009 §2.1): revoking a
token you hold can only take access away. The grants themselves are ``AuthState``'s.
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
GRANTS = frozenset({"authorization_code", "refresh_token", "password"})

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


def _credentials(
    request: Request, client_id: str | None, client_secret: str | None
) -> tuple[str | None, str | None]:
    """``(client_id, secret)`` from ``client_secret_basic`` (RFC 6749 §2.3.1, the
    form-urlencoded ``id:secret`` in HTTP Basic) or ``client_secret_post``; a public
    client sends only ``client_id``. Exactly one method per request (§2.3): Basic with
    a ``client_secret`` in the body too is ``invalid_request``."""
    header = request.headers.get("authorization")
    if header is None:
        if client_secret is not None and not client_id:
            raise OAuthError("invalid_request", "client_secret needs client_id")
        return client_id or None, client_secret
    if client_secret is not None:
        raise OAuthError("invalid_request", "use one client authentication method, not two")
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise _invalid_client()
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid_client() from None
    basic_id, sep, secret = decoded.partition(":")
    if not sep:
        raise _invalid_client()
    basic_id = unquote_plus(basic_id)
    if client_id and client_id != basic_id:
        raise OAuthError("invalid_request", "client_id differs from the authenticated client")
    return basic_id, unquote_plus(secret)


async def _client(
    request: Request, state: AuthState, client_id: str | None, client_secret: str | None,
) -> Client | None:
    """The client the request speaks for (None when it names none); ``invalid_client``
    (401, ``WWW-Authenticate: Basic``) when its authentication fails."""
    given_id, secret = _credentials(request, client_id, client_secret)
    return await state.client_for_request(given_id, secret)


@router.post("/token", dependencies=FORM_BODY, responses=OAUTH_ERRORS,
             summary="Token endpoint: authorization_code, refresh_token or (legacy) password")
async def token(
    request: Request,
    state: StateDep,
    grant_type: Field = None,
    code: Field = None,
    redirect_uri: Field = None,
    code_verifier: Field = None,
    username: Field = None,
    password: Field = None,
    refresh_token: Field = None,
    scope: Field = None,
    client_id: Field = None,
    client_secret: Field = None,
) -> JSONResponse:
    if grant_type is None:
        raise OAuthError("invalid_request", "the grant_type parameter is required")
    if grant_type not in GRANTS:
        raise OAuthError("unsupported_grant_type", "use authorization_code or refresh_token")
    client = await _client(request, state, client_id, client_secret)
    if grant_type == "authorization_code":
        if client is None:
            raise _invalid_client()
        pair = await state.exchange_code(
            _required(code, "code"), client=client, redirect_uri=redirect_uri,
            verifier=_required(code_verifier, "code_verifier"),
        )
    elif grant_type == "password":
        email = _required(username, "username")
        secret = _required(password, "password")
        try:
            pair = await state.password_grant(
                email, secret, ip=client_ip(request), user_agent=user_agent(request),
                scope=scope, client=client,
            )
        except AuthenticationFailed:
            raise OAuthError("invalid_grant", "wrong username or password") from None
    else:
        pair = await state.refresh_tokens(
            _required(refresh_token, "refresh_token"), client=client, scope=scope
        )
    return JSONResponse(pair.response(state.clock.now()), headers=NO_STORE)


@router.post("/introspect", dependencies=FORM_BODY, responses=OAUTH_ERRORS,
             summary="RFC 7662 token introspection (confidential clients)")
async def introspect(
    request: Request, state: StateDep, token: Field = None, token_type_hint: Field = None,
    client_id: Field = None, client_secret: Field = None,
) -> JSONResponse:
    client = await _client(request, state, client_id, client_secret)
    if client is None or client.public:  # RFC 7662 §2.1: the caller must authenticate
        raise _invalid_client()
    answer = await state.introspect(_required(token, "token"), token_type_hint)
    return JSONResponse(answer, headers=NO_STORE)


@router.post("/revoke", dependencies=FORM_BODY, responses=OAUTH_ERRORS, response_class=Response,
             response_description="revoked, or not a token of ours (RFC 7009 §2.2); no body",
             summary="RFC 7009 token revocation")
async def revoke(
    request: Request, state: StateDep, token: Field = None, token_type_hint: Field = None,
    client_id: Field = None, client_secret: Field = None,
) -> Response:
    await _client(request, state, client_id, client_secret)
    await state.revoke_token(_required(token, "token"), token_type_hint)
    return Response(status_code=200, headers=NO_STORE)
