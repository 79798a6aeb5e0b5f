"""Logging in with email and password, shared by the JSON API and the pages.

The order matters: the attempt takes its throttle slots (per account, per client IP)
before any password work, so a throttled attempt costs the service nothing and learns
nothing, and a burst of parallel guesses cannot outrun the count (see ``throttle``). A
failure keeps its slots; a success gives back only its own, and always creates a session
with a fresh ID (no session fixation: an ID the client held before is revoked, never
upgraded) and a fresh CSRF token in its data. Every step is audited, with no password
and no session ID.
"""

from __future__ import annotations

from dataclasses import dataclass

from authstate.errors import AuthenticationFailed
from authstate.sessions import Session, fingerprint
from authstate.state import AuthState
from authstate.users import User
from authstate.web import csrf


@dataclass(frozen=True, slots=True)
class LoginResult:
    user: User
    session_id: str
    session: Session
    csrf_token: str


async def check_credentials(
    state: AuthState, email: str, password: str, *, ip: str | None,
    user_agent: str | None, via: str,
) -> User:
    """The user, or ``Throttled`` / ``AuthenticationFailed``; counts and audits failures."""
    attempt = await state.throttle.admit(email, ip)
    try:
        user = await state.users.authenticate(email, password)
    except AuthenticationFailed:
        verdict = state.throttle.failed(attempt)
        detail = {"reason": "bad_credentials", "email_fp": fingerprint(email.strip().lower()),
                  "via": via}
        target = await state.users.by_email(email)  # for the trail only; the answer is one
        await state.audit.record(
            "login_failed", ip=ip, user_agent=user_agent, detail=detail,
            user_id=target.id if target is not None else None,
        )
        if verdict.tripped:
            scope = ("account" if verdict.account_failures >= state.throttle.account_limit
                     else "ip")
            await state.audit.record(
                "throttle_tripped", ip=ip, user_agent=user_agent,
                user_id=target.id if target is not None else None,
                detail={**detail, "scope": scope, "account_failures": verdict.account_failures,
                        "ip_failures": verdict.ip_failures},
            )
        raise
    await state.throttle.succeeded(attempt)
    return user


async def login(
    state: AuthState,
    email: str,
    password: str,
    *,
    ip: str | None,
    user_agent: str | None,
    previous_session_id: str | None = None,
) -> LoginResult:
    """Check the credentials and start a session; see the module docstring."""
    user = await check_credentials(
        state, email, password, ip=ip, user_agent=user_agent, via="session"
    )
    token = csrf.new_token()
    session_id, session = await state.sessions.create(
        user.id, ip=ip, user_agent=user_agent, data={csrf.DATA_KEY: token}
    )
    await state.audit.record(
        "session_created", actor=f"user:{user.id}", user_id=user.id, session=session.handle,
        ip=ip, user_agent=user_agent,
    )
    if previous_session_id is not None:
        previous = await state.sessions.revoke(previous_session_id, reason="login")
        if previous is not None:
            await state.audit.record(
                "session_rotated", actor=f"user:{user.id}", user_id=user.id,
                session=session.handle, ip=ip, user_agent=user_agent,
                detail={"previous": previous.handle, "reason": "login"},
            )
    await state.audit.record(
        "login_succeeded", actor=f"user:{user.id}", user_id=user.id, session=session.handle,
        ip=ip, user_agent=user_agent,
    )
    return LoginResult(user, session_id, session, token)
