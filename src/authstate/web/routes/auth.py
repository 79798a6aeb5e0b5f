"""``/auth/*``: logging in and out, who am I, my devices, my password, my access token.

Every route that changes state and is authenticated by the session cookie passes the CSRF
check in ``web/caller.py``; bearer callers need none. Each route translates HTTP to one
``AuthState`` flow (``login``, ``logout``, ``change_password`` ...) and its result back.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from authstate.errors import AuthenticationFailed
from authstate.web import cookies, csrf
from authstate.web.bodies import require_json
from authstate.web.caller import CallerDep, StateDep, client_ip, user_agent
from authstate.web.problems import Problem
from authstate.web.schemas import (
    AccessTokenOut,
    AuthOut,
    LoginIn,
    LoginOut,
    MeOut,
    PasswordIn,
    RevokedOut,
    SessionOut,
    SessionsOut,
    UserOut,
    problems,
    when,
)

router = APIRouter(prefix="/auth", tags=["auth"])

JSON_BODY = [Depends(require_json)]
AUTHED = problems(401, 403, 503)


@router.post(
    "/login",
    response_model=LoginOut,
    dependencies=JSON_BODY,
    responses=problems(400, 401, 403, 415, 422, 429, 503),
    summary="Log in with email and password; sets the session cookie",
)
async def login_route(body: LoginIn, request: Request, state: StateDep) -> JSONResponse:
    csrf.check_provenance(request, state.settings.tokens.issuer)
    result = await state.login(
        body.email,
        body.password,
        ip=client_ip(request),
        user_agent=user_agent(request),
        previous_session_id=cookies.read_session_id(request, state.settings),
    )
    payload = LoginOut(
        user=UserOut.of(result.user),
        csrf_token=result.csrf_token,
        expires_at=when(result.session.expires_at),
    )
    response = JSONResponse(payload.model_dump(mode="json"), headers={"Cache-Control": "no-store"})
    cookies.set_session_cookie(
        response, result.session_id, state.settings,
        max_age=int(state.settings.sessions.absolute_timeout),
    )
    return response


@router.post(
    "/logout", status_code=204, responses=AUTHED,
    summary="Revoke the current session (or bearer token) and clear the cookie",
)
async def logout(caller: CallerDep, state: StateDep) -> Response:
    response = Response(status_code=204)
    await state.logout(session_id=caller.session_id, token=caller.token, identity=caller.identity)
    if caller.via_cookie:
        cookies.clear_session_cookie(response, state.settings)
    return response


@router.get("/me", response_model=MeOut, responses=problems(401, 503),
            summary="Who is calling")
async def me(caller: CallerDep) -> MeOut:
    session = caller.identity.session
    return MeOut(
        user=UserOut.of(caller.user),
        auth=AuthOut(method=caller.identity.method, expires_at=when(caller.identity.expires_at)),
        csrf_token=csrf.csrf_token_for(session) if caller.via_cookie and session else None,
    )


@router.get("/sessions", response_model=SessionsOut, responses=problems(401, 503),
            summary="The caller's active sessions (devices)")
async def list_sessions(caller: CallerDep, state: StateDep) -> SessionsOut:
    sessions = await state.sessions.for_user(caller.user.id)
    return SessionsOut(sessions=[
        SessionOut(
            id=s.handle,
            created_at=when(s.created_at),
            last_seen=when(s.last_seen),
            expires_at=when(s.expires_at),
            ip=s.ip,
            user_agent=s.user_agent,
            current=s.sid == caller.identity.sid,
        )
        for s in sessions
    ])


# Declared before ``/sessions/{handle}``: Starlette answers a method it does not route
# (OPTIONS, GET) from the FIRST route whose path matches, and "{handle}" matches
# "revoke-others" too, so the other order answered for the wrong route.
@router.post("/sessions/revoke-others", response_model=RevokedOut, responses=AUTHED,
             summary="Log out everywhere else")
async def revoke_others(caller: CallerDep, state: StateDep) -> RevokedOut:
    ended = await state.end_sessions(
        caller.user.id, reason="revoke_others", keep_session_id=caller.session_id,
        keep_sid=caller.identity.sid,
    )
    return RevokedOut(revoked=len(ended))


@router.delete("/sessions/{handle}", status_code=204, responses=problems(401, 403, 404, 503),
               summary="Revoke one of the caller's sessions")
async def revoke_session(handle: str, caller: CallerDep, state: StateDep) -> Response:
    removed = await state.end_session(caller.user.id, handle, reason="user")
    if removed is None:
        raise Problem(404, "not_found", "no such session")
    response = Response(status_code=204)
    if removed.sid == caller.identity.sid and caller.via_cookie:
        cookies.clear_session_cookie(response, state.settings)
    return response


@router.post(
    "/password", status_code=204, dependencies=JSON_BODY,
    responses=problems(400, 401, 403, 415, 422, 429, 503),
    summary="Change the password; ends every other session and every token",
)
async def change_password(
    body: PasswordIn, request: Request, caller: CallerDep, state: StateDep
) -> Response:
    try:
        changed = await state.change_password(
            caller.user.id, body.current_password, body.new_password,
            session_id=caller.session_id, ip=client_ip(request), user_agent=user_agent(request),
        )
    except AuthenticationFailed:
        raise Problem(403, "wrong_password", "the current password is not correct") from None
    response = Response(status_code=204)
    if changed.session_id is not None:
        cookies.set_session_cookie(response, changed.session_id, state.settings,
                                   max_age=int(state.settings.sessions.absolute_timeout))
    return response


@router.post("/token", response_model=AccessTokenOut, responses=problems(400, 401, 403, 503),
             summary="A short-lived access token for the caller's session")
async def session_token(caller: CallerDep, state: StateDep) -> JSONResponse:
    session = caller.identity.session
    if not caller.via_cookie or session is None:
        raise Problem(400, "session_required", "exchange a session cookie, not a bearer token")
    token, claims = await state.issue_for_session(session)
    expires_at = float(claims["exp"])
    payload = AccessTokenOut(
        access_token=token,
        expires_in=max(0, int(expires_at - state.clock.now())),
        expires_at=when(expires_at),
    )
    return JSONResponse(payload.model_dump(mode="json"), headers={"Cache-Control": "no-store"})

