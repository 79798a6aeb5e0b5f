"""Who is calling the service's own API: the FastAPI dependencies its routes share.

A thin translation of ``authstate.authn``'s verdict, under the service's rule
(``authn.for_service``: the very authenticators and header parsing apps run in
``AuthMiddleware``, with ``bearer_decides=True``): a request presenting an
``Authorization: Bearer`` credential is judged by that token alone (a bad, malformed or
repeated one is a 401, never a fallback to the cookie); otherwise by the session cookie,
and an unsafe method authenticated by the cookie must pass the CSRF check (403
``csrf_failed``). Missing, unknown, expired, revoked and malformed credentials all end in
the same 401 with ``WWW-Authenticate``; a store or bus that cannot answer fails closed with
503 and ``Retry-After`` (its ``StoreUnavailable`` or ``BusUnavailable`` goes on to
``web/problems.py``), for a cookie as for a bearer token, and the cookie is left as it
is: an outage is not a logout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from authstate import authn
from authstate.audit import bind_origin
from authstate.errors import InvalidToken
from authstate.identity import Identity
from authstate.sessions import Session
from authstate.state import AuthState
from authstate.users import User
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


def authentication(request: Request, state: AuthState) -> authn.Authentication:
    """The service's ``authn.for_service(state)``, built once per app and state."""
    held = getattr(request.app.state, "authentication", None)
    if held is None or held[0] is not state:
        held = (state, authn.for_service(state))
        request.app.state.authentication = held
    built: authn.Authentication = held[1]
    return built


def _session_cookie(request: Request, state: AuthState) -> authn.SessionCookie:
    cookie = authentication(request, state).session_cookie
    assert cookie is not None  # for_service always has one
    return cookie


async def authenticate(request: Request, state: AuthState) -> Caller:
    """The caller, or a 401 ``Problem``; a failed CSRF check raises ``CSRFFailed`` (403)
    and an outage its ``*Unavailable`` error (503), both answered by ``web/problems.py``."""
    credentials = authn.Credentials(request.scope)
    verdict = await authentication(request, state)(credentials)
    identity = verdict.identity
    if identity is None:
        if verdict.error in ("csrf_failed", "unavailable") and verdict.failure is not None:
            raise verdict.failure
        raise unauthenticated(token_presented=verdict.bearer)
    user = await _user(state, identity, token_presented=verdict.bearer)
    if identity.method == "session":
        return Caller(identity, user,
                      session_id=_session_cookie(request, state).session_id(credentials))
    return Caller(identity, user, token=credentials.bearer)


async def session_identity(
    request: Request, state: AuthState
) -> tuple[str, Session, Identity] | None:
    """The session cookie's ID, its live session and the identity behind it; None when
    there is no cookie or its session is unknown, expired or revoked; ``StoreUnavailable``
    when the store cannot say. No CSRF check: for the pages, which check the token their
    form submits (``check_csrf``)."""
    cookie = _session_cookie(request, state)
    credentials = authn.Credentials(request.scope)
    try:
        identity = await cookie.identify(credentials)
    except InvalidToken:
        return None
    session_id = cookie.session_id(credentials)
    if identity is None or identity.session is None or session_id is None:
        return None
    return session_id, identity.session, identity


def check_csrf(
    request: Request, state: AuthState, session: Session, *, submitted: str | None = None
) -> None:
    """``CSRFFailed`` unless this cookie-authenticated request may change state: the
    session cookie authenticator's own check, with ``submitted`` (a form's token) in
    place of the ``X-CSRF-Token`` header when given."""
    credentials = authn.Credentials(request.scope, csrf_token=submitted)
    _session_cookie(request, state).check_csrf(credentials, session)


async def _user(state: AuthState, identity: Identity, *, token_presented: bool) -> User:
    """The caller's account: the one the session path already read (one store read per
    cookie request, not two), else (a bearer token) as ``AuthState`` has it now."""
    user = identity.user
    if user is None:
        user = await state.current_user(identity.user_id)
    if user is None or user.disabled:  # a disabled account's credentials are all dead
        raise unauthenticated(token_presented=token_presented)
    bind_origin(actor=f"user:{user.id}")  # the request's audit events name the caller
    return user


async def require_caller(request: Request, state: StateDep) -> Caller:
    return await authenticate(request, state)


CallerDep = Annotated[Caller, Depends(require_caller)]
