"""``AuthstateMiddleware``: ``request.user`` from authstate sessions or tokens.

Add ``"authstate.django.middleware.AuthstateMiddleware"`` to ``MIDDLEWARE`` (in place of,
or after, Django's ``AuthenticationMiddleware``). ``request.user`` is lazy: the request is
authenticated (through the service's ``authn`` authenticators, on the portal) the first
time a view, a template or a decorator such as ``login_required`` reads it. When that
cannot be done because the store, the keys or the introspection endpoint is down, the
request is answered 503 with ``Retry-After`` (never treated as a logout).
``authstate_login_required`` and ``require_scopes`` answer 401 / 403 as the service does,
for views that are an API rather than a page with a login redirect.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from authstate.extras import require

require("django")

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject

from authstate.django.auth import auth_info, response_for, user_for
from authstate.errors import UpstreamUnavailable
from authstate.wsgi import refusal


class AuthenticationUnavailable(UpstreamUnavailable):
    """Raised when ``request.user`` is read during an outage; the middleware answers 503."""

    def __init__(self, cause: str | None) -> None:
        super().__init__("authentication is unavailable")
        self.cause = cause


def _user(request: HttpRequest) -> Any:
    info = auth_info(request)
    if info.error == "unavailable" and info.identity is None:
        raise AuthenticationUnavailable(info.cause)
    return user_for(request)


class AuthstateMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.user = SimpleLazyObject(lambda: _user(request))
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, AuthenticationUnavailable):
            refused = refusal(auth_info(request))
            assert refused is not None
            return response_for(refused)
        return None


View = Callable[..., HttpResponse]


def require_scopes(*scopes: str) -> Callable[[View], View]:
    """A view decorator: authenticated and holding every one of ``scopes``, else the
    service's 401 (with ``WWW-Authenticate``) / 403 / 503 problem answer."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            refused = refusal(auth_info(request), scopes)
            if refused is not None:
                return response_for(refused)
            return view(request, *args, **kwargs)

        return guarded

    return decorate


def authstate_login_required(view: View) -> View:
    """``require_scopes()``: authenticated, any scope."""
    return require_scopes()(view)
