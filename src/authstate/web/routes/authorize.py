"""``/oauth/authorize``: the authorization code flow's front half (RFC 6749 §4.1.1, PKCE).

A browser arrives from an app. Until the client and its redirect URI are trusted, every
error is an HTML page, never a redirect (no open redirect); after that, errors go back to
the app as ``error`` and ``state`` on its redirect URI (RFC 6749 §4.1.2.1). A visitor
without a session goes through the service's own login page and comes back here (the
return path is a same-origin relative URL); a logged-in one is not asked again.
First-party clients get the code at once; a third-party client's user sees a consent page
listing the scopes, whose form carries the session's CSRF token. The answer carries
``state`` and ``iss`` (RFC 9207). The flow itself is ``AuthState.authorize``.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from authstate.errors import OAuthRefused
from authstate.oauth.authorization import (
    AuthorizationRequest,
    UntrustedRequest,
    check,
    trusted_redirect,
)
from authstate.state import AuthState
from authstate.web import csrf
from authstate.web.bodies import repeated_names
from authstate.web.caller import get_state
from authstate.web.pages import (
    HEADERS,
    PageRoute,
    Visitor,
    allow_form_target,
    render_page,
    visitor_of,
)
from authstate.web.problems import Problem

router = APIRouter(prefix="/oauth", include_in_schema=False, route_class=PageRoute)

# What the consent form posts back (besides csrf_token and decision).
PARAMS = ("client_id", "redirect_uri", "response_type", "scope", "state", "code_challenge",
          "code_challenge_method", "nonce", "prompt")
FORM_MAX = 4096


def _error_page(request: Request, message: str, visitor: Visitor | None) -> HTMLResponse:
    return render_page(
        request, "error.html",
        {"title": "Cannot continue to the application", "message": message,
         "visitor": visitor, "csrf_token": visitor.csrf_token if visitor else ""},
        status_code=400,
    )


def _back_to_app(
    state: AuthState, redirect_uri: str, params: dict[str, str], *, status: int
) -> RedirectResponse:
    """To the app's (trusted) redirect URI with ``params`` added to its query."""
    params = {**params, "iss": state.settings.tokens.issuer}
    sep = "&" if urlsplit(redirect_uri).query else ("" if redirect_uri.endswith("?") else "?")
    return RedirectResponse(redirect_uri + sep + urlencode(params), status_code=status,
                            headers={"Cache-Control": "no-store"})


def _refused(
    state: AuthState, redirect_uri: str, error: str, description: str, given_state: str | None,
    *, status: int,
) -> RedirectResponse:
    params = {"error": error, "error_description": description}
    if given_state is not None:
        params["state"] = given_state
    return _back_to_app(state, redirect_uri, params, status=status)


async def _handle(request: Request, params: dict[str, str], *, posted: bool) -> Response:
    state = get_state(request)
    visitor = await visitor_of(request, state)
    status = 303 if posted else 302
    try:
        client = await state.clients.get(params.get("client_id"))
        redirect_uri, given = trusted_redirect(client, params.get("redirect_uri"))
    except UntrustedRequest as error:
        return _error_page(request, error.message, visitor)
    assert client is not None
    given_state = params.get("state")
    try:
        checked = check(client, redirect_uri, given, params)
    except OAuthRefused as error:
        return _refused(state, redirect_uri, error.code, error.message, given_state,
                        status=status)
    if visitor is None:
        if "none" in checked.prompt:  # OIDC Core §3.1.2.6: no page may be shown
            return _refused(state, redirect_uri, "login_required", "nobody is logged in",
                            given_state, status=status)
        back = "/oauth/authorize?" + urlencode(params)
        return RedirectResponse("/login?next=" + quote(back, safe="/"), status_code=303,
                                headers=HEADERS)
    if posted:
        if params.get("decision") != "allow":
            return _refused(state, redirect_uri, "access_denied", "the user said no",
                            given_state, status=status)
    elif not client.first_party or "consent" in checked.prompt:
        if "none" in checked.prompt:
            return _refused(state, redirect_uri, "consent_required",
                            "the user must consent first", given_state, status=status)
        return _consent(request, checked, visitor, params)
    try:
        code = await state.authorize(checked, visitor.session, visitor.user)
    except OAuthRefused as error:
        return _refused(state, redirect_uri, error.code, error.message, given_state,
                        status=status)
    answer = {"code": code}
    if given_state is not None:
        answer["state"] = given_state
    return _back_to_app(state, redirect_uri, answer, status=status)


def _consent(
    request: Request, checked: AuthorizationRequest, visitor: Visitor, params: dict[str, str]
) -> HTMLResponse:
    target = urlsplit(checked.redirect_uri)
    response = render_page(
        request, "consent.html",
        {"visitor": visitor, "csrf_token": visitor.csrf_token,
         "client_name": checked.client.name, "email": visitor.user.email,
         "scopes": checked.scope, "redirect_host": target.netloc,
         "params": [(name, params[name]) for name in PARAMS if name in params]},
    )
    allow_form_target(response, f"{target.scheme}://{target.netloc}")  # back to the app
    return response


@router.get("/authorize", response_class=HTMLResponse)
async def authorize(request: Request) -> Response:
    items = list(request.query_params.multi_items())
    repeated = repeated_names(items)
    if repeated:  # RFC 6749 §3.1; which client_id or redirect_uri to trust is unclear
        return _error_page(request, "The request repeats a parameter "
                           f"({repeated[0][:64]}); it must be sent once.", None)
    return await _handle(request, dict(items), posted=False)


@router.post("/authorize", response_class=HTMLResponse)
async def consent(request: Request) -> Response:
    """The consent form's answer: the session's CSRF token first, then the same checks
    as the GET (nothing from the page is trusted more than the original request)."""
    state = get_state(request)
    visitor = await visitor_of(request, state)
    form = await request.form(max_files=0, max_fields=20)
    items = [(k, v[:FORM_MAX]) for k, v in form.multi_items() if isinstance(v, str)]
    if repeated_names(items):
        return _error_page(request, "The form repeats a field.", visitor)
    fields = dict(items)
    if visitor is None:
        return _error_page(request, "Your session has ended. Start again from the "
                           "application.", None)
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
    params = {k: v for k, v in fields.items() if k in (*PARAMS, "decision")}
    return await _handle(request, params, posted=True)
