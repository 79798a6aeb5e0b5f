"""OpenID Connect endpoints: ``/oauth/userinfo`` (OIDC Core §5.3) and the RP-initiated
logout endpoint ``/oauth/logout`` (OpenID Connect RP-Initiated Logout 1.0).

UserInfo takes the access token as ``Authorization: Bearer`` (RFC 6750 §2.1) on GET or
POST; a missing or invalid token is 401 and a token without the ``openid`` scope is 403
``insufficient_scope``, both with an RFC 6750 §3 ``WWW-Authenticate`` challenge.

Logout (GET or POST, §2): ``id_token_hint`` (one of our ID tokens, possibly expired),
``client_id``, ``post_logout_redirect_uri`` (exactly one the client registered with
``clients add --post-logout-redirect-uri``) and ``state`` (echoed back). A bad hint or
URI is an error page, never a redirect. The browser's session ends at once when the
hint names it (its ``sid``); otherwise the user confirms on a page whose form carries
the session's CSRF token (§3: an RP-initiated logout without a valid hint must be
confirmed, or anyone could log a user out with a link). Ending the session goes through
``AuthState.rp_logout``, so back-channel logout tells the session's other clients.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from authstate.authn import bearer_challenge, parse_authorization
from authstate.errors import InsufficientScope, InvalidRequest, InvalidToken
from authstate.web import csrf
from authstate.web.bodies import repeated_names
from authstate.web.caller import get_state
from authstate.web.cookies import clear_session_cookie
from authstate.web.pages import PageRoute, Visitor, allow_form_target, render_page, visitor_of
from authstate.web.problems import Problem
from authstate.web.schemas import OAuthErrorOut

router = APIRouter(prefix="/oauth", tags=["oidc"])
pages = APIRouter(prefix="/oauth", include_in_schema=False, route_class=PageRoute)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
LOGOUT_PARAMS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state",
                 "ui_locales", "logout_hint")
FORM_MAX = 8192


def _challenge(status: int, error: str | None, description: str,
               scopes: tuple[str, ...] = ()) -> JSONResponse:
    """An RFC 6750 §3 error: the challenge in ``WWW-Authenticate`` (no ``error`` when
    no token was sent, §3.1) and the same code in the body."""
    return JSONResponse({"error": error or "invalid_token", "error_description": description},
                        status_code=status,
                        headers={"WWW-Authenticate": bearer_challenge(error, scopes), **NO_STORE})


async def _userinfo(request: Request) -> Response:
    state = get_state(request)
    raw = [v for k, v in request.scope["headers"] if k == b"authorization"]
    token, malformed = parse_authorization(raw)
    if malformed:
        return _challenge(401, "invalid_token", "the access token is invalid")
    if token is None:
        return _challenge(401, None, "a bearer access token is required")
    try:
        identity = await state.authenticate_bearer(token)
        claims = await state.userinfo(identity)
    except InvalidToken:
        return _challenge(401, "invalid_token", "the access token is invalid")
    except InsufficientScope:
        return _challenge(403, "insufficient_scope", "the token was not granted openid",
                          ("openid",))
    return JSONResponse(claims, headers=NO_STORE)


USERINFO_ERRORS: dict[int | str, dict[str, object]] = {
    200: {"content": {"application/json": {"schema": {"type": "object"}}},
          "description": "the claims: sub, and what the token's scope releases"},
    401: {"model": OAuthErrorOut, "description": "no, or an invalid, access token (RFC 6750)"},
    403: {"model": OAuthErrorOut, "description": "insufficient_scope: openid not granted"},
    503: {"model": OAuthErrorOut, "description": "the store is unavailable"},
}


@router.get("/userinfo", summary="OpenID Connect UserInfo (bearer token with openid)",
            responses=USERINFO_ERRORS)
async def userinfo_get(request: Request) -> Response:
    return await _userinfo(request)


@router.post("/userinfo", summary="OpenID Connect UserInfo (bearer token with openid)",
             responses=USERINFO_ERRORS)
async def userinfo_post(request: Request) -> Response:
    return await _userinfo(request)


def _error_page(request: Request, message: str, visitor: Visitor | None) -> HTMLResponse:
    return render_page(
        request, "error.html",
        {"title": "Cannot log out from the application", "message": message,
         "visitor": visitor, "csrf_token": visitor.csrf_token if visitor else ""},
        status_code=400,
    )


def _done(request: Request, target: str | None, given_state: str | None) -> Response:
    """Back to the RP's post-logout URI (with ``state``), else a "logged out" page; the
    session cookie cleared either way."""
    response: Response
    if target is not None:
        query = urlencode({"state": given_state}) if given_state is not None else ""
        sep = "&" if urlsplit(target).query else "?"
        response = RedirectResponse(target + (sep + query if query else ""), status_code=303,
                                    headers={"Cache-Control": "no-store"})
    else:
        response = render_page(request, "end_session.html",
                               {"done": True, "visitor": None, "csrf_token": ""})
    clear_session_cookie(response, get_state(request).settings)
    return response


async def _end_session(request: Request, params: dict[str, str], *, confirmed: bool) -> Response:
    state = get_state(request)
    visitor = await visitor_of(request, state)
    try:
        hint, target = await state.logout_request(
            params.get("id_token_hint"), params.get("client_id"),
            params.get("post_logout_redirect_uri"),
        )
    except InvalidRequest as error:
        return _error_page(request, f"The logout request is not valid: {error.message}.",
                           visitor)
    given_state = params.get("state")
    if visitor is None:  # nothing to end in this browser
        return _done(request, target, given_state)
    own = hint is not None and hint.get("sid") == visitor.session.sid
    if not (own or confirmed):
        client = await state.clients.get(hint["aud"] if hint else params.get("client_id"))
        page = render_page(
            request, "end_session.html",
            {"done": False, "visitor": visitor, "csrf_token": visitor.csrf_token,
             "email": visitor.user.email, "client_name": client.name if client else None,
             "params": [(n, params[n]) for n in LOGOUT_PARAMS if n in params]},
        )
        if target is not None:  # CSP form-action: the form's redirect ends at the app
            parts = urlsplit(target)
            allow_form_target(page, f"{parts.scheme}://{parts.netloc}")
        return page
    await state.rp_logout(visitor.session_id, visitor.session,
                          client_id=hint["aud"] if hint else params.get("client_id"),
                          confirmed=not own)
    return _done(request, target, given_state)


@pages.get("/logout", response_class=HTMLResponse)
async def end_session(request: Request) -> Response:
    items = list(request.query_params.multi_items())
    if repeated_names(items):
        return _error_page(request, "The request repeats a parameter.", None)
    return await _end_session(request, {k: v for k, v in items if k in LOGOUT_PARAMS},
                              confirmed=False)


@pages.post("/logout", response_class=HTMLResponse)
async def end_session_post(request: Request) -> Response:
    """An RP's form POST (§2 allows it; turned into the same GET, see below), or the
    confirmation form's answer (``decision``), which must carry the session's CSRF
    token."""
    state = get_state(request)
    form = await request.form(max_files=0, max_fields=20)
    items = [(k, v[:FORM_MAX]) for k, v in form.multi_items() if isinstance(v, str)]
    if repeated_names(items):
        return _error_page(request, "The form repeats a field.", None)
    fields = dict(items)
    params = {k: v for k, v in fields.items() if k in LOGOUT_PARAMS}
    decision = fields.get("decision")
    if decision is None:
        # An RP's cross-site form POST carries no SameSite=Lax session cookie: answer
        # with the same request as a GET, which a top-level navigation sends it with.
        return RedirectResponse("/oauth/logout?" + urlencode(params), status_code=303,
                                headers={"Cache-Control": "no-store"})
    visitor = await visitor_of(request, state)
    if visitor is None:
        return _done(request, None, None)
    try:
        csrf.check(request, visitor.session, state.settings.tokens.issuer, method="POST",
                   submitted=fields.get(csrf.FORM_FIELD, ""))
    except Problem:
        return render_page(
            request, "error.html",
            {"title": "Form expired", "visitor": visitor, "csrf_token": visitor.csrf_token,
             "message": "This form is no longer valid. Start again from the application."},
            status_code=403,
        )
    if decision != "logout":
        return RedirectResponse("/account", status_code=303, headers={"Cache-Control": "no-store"})
    return await _end_session(request, params, confirmed=True)
