"""The service's few HTML pages: log in, see and end your sessions, inspect a token.

Server-rendered with Jinja2 and plain HTML forms, so they work with JavaScript off and
need no front-end build. Every form carries a CSRF token: the session's own (the same one
``/auth/login`` returns, checked by the session cookie authenticator of
``authstate.authn``, as for the API) once logged in, and before that a
double-submit token in a short-lived cookie for the login form itself (login CSRF: an
attacker's form must not log the victim into the attacker's account). Every answer to a
POST is a 303 to a page (post/redirect/get) or the form again with what went wrong.

Pages are for browsers: they read only the session cookie (never a bearer token), and a
request without a live session, revoked from another device for instance, lands on the
login page at its next navigation. A store that cannot answer is not a dead session: every
page then answers a 503 page with ``Retry-After`` and leaves the cookie alone, so the
browser is still logged in when the store is back (``PageRoute``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from authstate.errors import (
    AuthenticationFailed,
    BusUnavailable,
    CSRFFailed,
    InvalidInput,
    InvalidToken,
    StoreUnavailable,
    Throttled,
)
from authstate.sessions import Session
from authstate.state import AuthState
from authstate.tokens.opaque import looks_like as looks_opaque
from authstate.users import User
from authstate.web import csrf
from authstate.web.caller import check_csrf, client_ip, get_state, session_identity, user_agent
from authstate.web.cookies import (
    HOST_PREFIX,
    clear_session_cookie,
    read_cookie,
    read_session_id,
    set_session_cookie,
)
from authstate.web.statuses import RETRY_AFTER

LOGIN_CSRF_COOKIE = "authstate_login_csrf"
LOGIN_CSRF_MAX_AGE = 3600
FORM_FIELD_MAX = 4096
TOKEN_FIELD_MAX = 16384
DEFAULT_NEXT = "/account"
NEXT_MAX = 4096  # room for an /oauth/authorize request to come back to
LOGIN_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")

HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


class PageRoute(APIRoute):
    """A page route that answers an outage of the store or the bus with the 503 page.

    Caught once here rather than in each page, so no page can mistake "the store did not
    answer" for "no session" and redirect to the login page clearing the cookie."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except (StoreUnavailable, BusUnavailable):
                return _unavailable(request)

        return guarded


router = APIRouter(include_in_schema=False, route_class=PageRoute)


@dataclass(frozen=True, slots=True)
class Visitor:
    """A logged-in browser: its session (with the CSRF token) and its user."""

    session_id: str = field(repr=False)
    session: Session
    user: User

    @property
    def csrf_token(self) -> str:
        return csrf.csrf_token_for(self.session) or ""


def _render(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=HEADERS
    )
    assert isinstance(response, HTMLResponse)
    return response


render_page = _render  # for the other page routes (``routes/authorize.py``)


def _unavailable(request: Request) -> HTMLResponse:
    """The 503 page: no ``Set-Cookie`` at all, so the session cookie stays as it was."""
    response = _render(
        request, "error.html",
        {"title": "Temporarily unavailable", "visitor": None, "csrf_token": "",
         "message": "The service cannot check your session right now. You are still "
                    "logged in: reload this page in a few seconds."},
        status_code=503,
    )
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=HEADERS)


def _safe_next(value: object) -> str:
    """A local path to go to after login; anything else (another host, ``//host``,
    a scheme) becomes the account page, so the login form is no open redirect."""
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or len(value) > NEXT_MAX
        or any(ord(c) < 0x21 for c in value)
    ):
        return DEFAULT_NEXT
    return value


def _logged_out(state: AuthState) -> RedirectResponse:
    """To the login page, the session cookie cleared: this browser's session ended."""
    response = _see_other("/login")
    clear_session_cookie(response, state.settings)
    return response


def _login_redirect(request: Request, state: AuthState) -> RedirectResponse:
    """To the login page, and back here after; a dead session cookie is cleared and
    the login page says the session ended (revoked elsewhere, or expired)."""
    target = request.url.path if request.method == "GET" else DEFAULT_NEXT
    stale = read_session_id(request, state.settings) is not None
    response = _see_other(
        "/login?next=" + quote(target, safe="/") + ("&ended=1" if stale else "")
    )
    if stale:
        clear_session_cookie(response, state.settings)
    return response


async def _visitor(request: Request, state: AuthState) -> Visitor | None:
    by_cookie = await session_identity(request, state)
    if by_cookie is None:
        return None
    session_id, session, identity = by_cookie
    user = identity.user  # read once, by the session path
    return Visitor(session_id, session, user) if user is not None else None


visitor_of = _visitor  # for the other page routes (``routes/authorize.py``)


async def _form(request: Request) -> dict[str, str]:
    """The form's text fields, each cut to a sane length (a file part is ignored)."""
    form = await request.form(max_files=0, max_fields=20)
    limits = {"token": TOKEN_FIELD_MAX}
    return {
        key: value[: limits.get(key, FORM_FIELD_MAX)]
        for key, value in form.items()
        if isinstance(value, str)
    }


async def _posted(request: Request, state: AuthState) -> tuple[Visitor, dict[str, str]] | Response:
    """The visitor and form of a state-changing POST; otherwise the answer to give
    instead (the login page for a dead session, an error page for a failed CSRF check)."""
    visitor = await _visitor(request, state)
    if visitor is None:
        return _login_redirect(request, state)
    form = await _form(request)
    try:
        check_csrf(request, state, visitor.session, submitted=form.get(csrf.FORM_FIELD, ""))
    except CSRFFailed:
        return _render(
            request, "error.html",
            {"title": "Form expired", "message":
             "This form is no longer valid. Go back, reload the page and try again.",
             "visitor": visitor, "csrf_token": visitor.csrf_token},
            status_code=403,
        )
    return visitor, form


def _login_csrf_cookie(state: AuthState) -> str:
    return LOGIN_CSRF_COOKIE if state.settings.service.dev else HOST_PREFIX + LOGIN_CSRF_COOKIE


def _login_page(
    request: Request, state: AuthState, *, next_url: str, email: str = "",
    error: str | None = None, status_code: int = 200, retry_after: int | None = None,
    ended: bool = False, fresh: bool = False,
) -> HTMLResponse:
    """The login form. Its token is the one already in the browser's login cookie (so
    two open login tabs both work) unless ``fresh`` or there is none."""
    held = read_cookie(request, _login_csrf_cookie(state)) or ""
    token = held if not fresh and LOGIN_TOKEN.fullmatch(held) else csrf.new_token()
    response = _render(
        request, "login.html",
        {"csrf_token": token, "next": next_url, "email": email, "error": error,
         "visitor": None, "ended": ended},
        status_code=status_code,
    )
    response.set_cookie(
        _login_csrf_cookie(state), token, max_age=LOGIN_CSRF_MAX_AGE, path="/",
        secure=not state.settings.service.dev, httponly=True, samesite="strict",
    )
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    allow_form_target(response, _app_origin(next_url))
    return response


def allow_form_target(response: Response, origin: str | None) -> None:
    """Let this page's form end, through redirects, at ``origin``: CSP ``form-action``
    also covers the redirects after a form is sent, so a login or consent that goes
    back to an app would be blocked by ``form-action 'self'`` alone."""
    if origin is not None:
        response.headers["Content-Security-Policy"] = HEADERS["Content-Security-Policy"].replace(
            "form-action 'self'", f"form-action 'self' {origin}"
        )


def _app_origin(next_url: str) -> str | None:
    """The origin of the app an ``/oauth/authorize`` request would go back to. Whether
    it is registered is for ``/oauth/authorize`` to decide: an unregistered one is never
    redirected to, so allowing it here opens nothing."""
    path, _, query = next_url.partition("?")
    if path != "/oauth/authorize":
        return None
    target = parse_qs(query).get("redirect_uri", [""])[0]
    origin = csrf.origin_of(target)
    if origin is None or not origin.startswith(("https://", "http://")) or "'" in origin \
            or ";" in origin or " " in origin or "," in origin:
        return None
    return origin


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    state = get_state(request)
    visitor = await _visitor(request, state)
    return _see_other("/account" if visitor is not None else "/login")


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    state = get_state(request)
    next_url = _safe_next(request.query_params.get("next"))
    if await _visitor(request, state) is not None:
        return _see_other(next_url)
    return _login_page(request, state, next_url=next_url,
                       ended=request.query_params.get("ended") == "1")


@router.post("/login", response_class=HTMLResponse)
async def login_submit(request: Request) -> Response:
    state = get_state(request)
    form = await _form(request)
    next_url = _safe_next(form.get("next"))
    email = form.get("email", "")[:320]
    expected = read_cookie(request, _login_csrf_cookie(state)) or ""
    given = form.get(csrf.FORM_FIELD, "")
    if not (csrf.from_here(request, state.settings.tokens.issuer)
            and csrf.tokens_match(given, expected)):
        return _login_page(
            request, state, next_url=next_url, email=email, status_code=403,
            error="This form expired. Please try again.", fresh=True,
        )
    try:
        result = await state.login(
            email, form.get("password", ""),
            ip=client_ip(request), user_agent=user_agent(request),
            previous_session_id=read_session_id(request, state.settings),
        )
    except (AuthenticationFailed, InvalidInput):
        return _login_page(request, state, next_url=next_url, email=email, status_code=401,
                           error="Wrong email or password.")
    except Throttled as error:
        return _login_page(
            request, state, next_url=next_url, email=email, status_code=429,
            retry_after=error.retry_after,
            error="Too many failed attempts. Please wait a few minutes and try again.",
        )
    except StoreUnavailable:
        return _login_page(request, state, next_url=next_url, email=email, status_code=503,
                           retry_after=RETRY_AFTER,
                           error="The service is unavailable. Please try again shortly.")
    response = _see_other(next_url)
    set_session_cookie(
        response, result.session_id, state.settings,
        max_age=int(state.settings.sessions.absolute_timeout),
    )
    response.delete_cookie(_login_csrf_cookie(state), path="/",
                           secure=not state.settings.service.dev,
                           httponly=True, samesite="strict")
    return response


@router.post("/logout", response_class=HTMLResponse)
async def logout(request: Request) -> Response:
    state = get_state(request)
    posted = await _posted(request, state)
    if isinstance(posted, Response):
        return posted
    visitor, _ = posted
    await state.logout(session_id=visitor.session_id)
    return _logged_out(state)


@router.get("/account", response_class=HTMLResponse)
async def account(request: Request) -> Response:
    state = get_state(request)
    visitor = await _visitor(request, state)
    if visitor is None:
        return _login_redirect(request, state)
    sessions = await state.sessions.for_user(visitor.user.id)
    notice = None
    if (revoked := request.query_params.get("revoked", "")).isdigit():
        count = int(revoked)
        notice = f"Logged out {count} other session{'s' if count != 1 else ''}."
    elif request.query_params.get("ended") == "1":
        notice = "Session ended."
    return _render(
        request, "account.html",
        {"visitor": visitor, "csrf_token": visitor.csrf_token, "notice": notice,
         "devices": [_device(s, current=s.handle == visitor.session.handle)
                     for s in sorted(sessions, key=lambda s: s.handle != visitor.session.handle)]},
    )


@router.post("/account/sessions/{handle}/revoke", response_class=HTMLResponse)
async def revoke_device(request: Request, handle: str) -> Response:
    state = get_state(request)
    posted = await _posted(request, state)
    if isinstance(posted, Response):
        return posted
    visitor, _ = posted
    ended = await state.end_session(visitor.user.id, handle, reason="user")
    if ended is not None and ended.handle == visitor.session.handle:
        return _logged_out(state)
    if ended is None:
        return _render(
            request, "error.html",
            {"title": "No such session", "visitor": visitor, "csrf_token": visitor.csrf_token,
             "message": "That session has already ended or is not yours."},
            status_code=404,
        )
    return _see_other("/account?ended=1")


@router.post("/account/revoke-others", response_class=HTMLResponse)
async def revoke_others(request: Request) -> Response:
    state = get_state(request)
    posted = await _posted(request, state)
    if isinstance(posted, Response):
        return posted
    visitor, _ = posted
    ended = await state.end_sessions(
        visitor.user.id, reason="revoke_others", keep_session_id=visitor.session_id
    )
    return _see_other(f"/account?revoked={len(ended)}")


@router.get("/inspect", response_class=HTMLResponse)
async def inspect_form(request: Request) -> Response:
    state = get_state(request)
    visitor = await _visitor(request, state)
    if visitor is None:
        return _login_redirect(request, state)
    return _render(request, "inspect.html",
                   {"visitor": visitor, "csrf_token": visitor.csrf_token, "token": "",
                    "report": None})


@router.post("/inspect", response_class=HTMLResponse)
async def inspect_submit(request: Request) -> Response:
    """What ``authstate inspect`` says about a token (its ``report``, checked against
    this service's keys), plus whether this service accepts the token right now.
    Logged-in users only: an open page answering "valid or not" would be the token
    oracle RFC 7662 §4 puts behind client authentication."""
    state = get_state(request)
    posted = await _posted(request, state)
    if isinstance(posted, Response):
        return posted
    visitor, form = posted
    from authstate.inspection import pasted_token

    token = "".join(pasted_token(form.get("token", "")).split())
    context: dict[str, Any] = {"visitor": visitor, "csrf_token": visitor.csrf_token,
                               "token": token, "report": None}
    if token:
        context["report"] = await _inspect(state, token)
    return _render(request, "inspect.html", context)


async def _inspect(state: AuthState, token: str) -> dict[str, Any]:
    """The CLI's report, with the same verdicts (``valid`` only when verified), checked
    against this service's keys."""
    from authstate.inspection import Malformed, escape_text, report

    try:
        accepted = (await state.authenticate_bearer(token)).method
    except (InvalidToken, StoreUnavailable, BusUnavailable):
        accepted = None
    if looks_opaque(token):
        return {"kind": "opaque", "accepted": accepted}
    try:
        result = report(token, keys=state.keys, secret=None, now=state.clock.now(),
                        wordlist=[])
    except Malformed as error:
        return {"kind": "malformed", "accepted": accepted, "message": str(error)}
    shown = {name: escape_text(json.dumps(result[name], indent=2, ensure_ascii=False))
             for name in ("header", "claims") if name in result}
    return {
        **result,
        "accepted": accepted,
        "header_json": shown["header"],
        "claims_json": shown.get("claims", ""),
    }


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _device(session: Session, *, current: bool) -> dict[str, Any]:
    return {
        "handle": session.handle,
        "created": _when(session.created_at),
        "last_seen": _when(session.last_seen),
        "ip": session.ip or "unknown",
        "user_agent": _browser(session.user_agent),
        "user_agent_full": session.user_agent or "",
        "current": current,
    }


def _browser(ua: str | None) -> str:
    """A short, human name for a user agent string (the full one goes in a tooltip)."""
    if not ua:
        return "Unknown device"
    for marker, name in (("Edg/", "Edge"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
                         ("Safari/", "Safari"), ("curl/", "curl")):
        if marker in ua:
            browser = name
            break
    else:
        return ua[:60]
    for marker, system in (("Windows", "Windows"), ("Android", "Android"),
                           ("iPhone", "iPhone"), ("Mac OS X", "macOS"), ("Linux", "Linux")):
        if marker in ua:
            return f"{browser} on {system}"
    return browser
