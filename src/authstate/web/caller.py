"""Who is calling the service's own API: the FastAPI dependencies its routes share.

A request with an ``Authorization: Bearer`` header is judged by that token alone (a bad
token is a 401, never a fallback to the cookie); otherwise by the session cookie, and an
unsafe method authenticated by the cookie must pass the CSRF check (``web/csrf.py``).
Missing, unknown, expired, revoked and malformed credentials all end in the same 401; a
store or bus that cannot answer fails closed with 503 and ``Retry-After`` (its
``StoreUnavailable`` or ``BusUnavailable`` goes on to ``web/problems.py``), for a cookie
as for a bearer token, and the cookie is left as it is: an outage is not a logout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from authstate.audit import bind_origin
from authstate.errors import InvalidToken
from authstate.identity import Identity
from authstate.sessions import Session
from authstate.state import AuthState
from authstate.users import User
from authstate.web import csrf
from authstate.web.cookies import read_session_id
from authstate.web.middleware import BEARER_MAX
from authstate.web.problems import unauthenticated


def get_state(request: Request) -> AuthState:
    state: AuthState = request.app.state.authstate
    return state


StateDep = Annotated[AuthState, Depends(get_state)]


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller. ``session_id`` (the cookie's secret value) is set only
    when the cookie authenticated the request; ``token`` only for a bearer token."""

    identity: Identity
    user: User
    session_id: str | None = None
    token: str | None = None

    @property
    def via_cookie(self) -> bool:
        return self.session_id is not None


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


def user_agent(request: Request) -> str | None:
    return request.headers.get("user-agent")


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header; "" when the header is a
    malformed bearer; None when there is no bearer header at all."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    if not token or len(token) > BEARER_MAX or " " in token:
        return ""
    return token


async def authenticate(request: Request, state: AuthState) -> Caller:
    """The caller, or a 401 ``Problem``; applies CSRF to cookie-authenticated changes."""
    token = bearer_token(request)
    if token is not None:
        if not token:
            raise unauthenticated(token_presented=True)
        try:
            identity = await state.authenticate_bearer(token)
        except InvalidToken:
            raise unauthenticated(token_presented=True) from None
        user = await _user(state, identity, token_presented=True)
        return Caller(identity, user, token=token)
    by_cookie = await session_identity(request, state)
    if by_cookie is None:
        raise unauthenticated()
    session_id, session, identity = by_cookie
    csrf.check(request, session, state.settings.issuer, method=request.method)
    user = await _user(state, identity, token_presented=False)
    return Caller(identity, user, session_id=session_id)


async def session_identity(
    request: Request, state: AuthState
) -> tuple[str, Session, Identity] | None:
    """The session cookie's ID, its live session and the identity behind it; None when
    there is no cookie or its session is unknown, expired or revoked; ``StoreUnavailable``
    when the store cannot say. The one reading of the cookie for the JSON API and the
    pages."""
    session_id = read_session_id(request, state.settings)
    if session_id is None:
        return None
    identity = await state.authenticate_session(session_id)
    if identity is None or identity.session is None:
        return None
    return session_id, identity.session, identity


async def _user(state: AuthState, identity: Identity, *, token_presented: bool) -> User:
    user = await state.users.get(identity.user_id)
    if user is None or user.disabled:  # a disabled account's credentials are all dead
        raise unauthenticated(token_presented=token_presented)
    bind_origin(actor=f"user:{user.id}")  # the request's audit events name the caller
    return user


async def require_caller(request: Request, state: StateDep) -> Caller:
    return await authenticate(request, state)


CallerDep = Annotated[Caller, Depends(require_caller)]
