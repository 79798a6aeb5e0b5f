"""Django REST framework: ``AuthstateAuthentication`` and scope permissions.

    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["authstate.django.drf.AuthstateAuthentication"],
    }

    class Orders(APIView):
        permission_classes = [require_scopes("orders:read")]

The authentication class runs the service's ``authn`` authenticators (the same verdict
``AuthstateMiddleware`` uses, computed once per request) and answers the DRF way: no
credential → anonymous (then ``IsAuthenticated`` or a scope permission gives 401 with
``WWW-Authenticate: Bearer``), a bad one → 401 ``AuthenticationFailed``, a cookie-
authenticated change without its CSRF token → 403, an outage → 503 with ``Retry-After``.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

from authstate.errors import MissingDependencyError
from authstate.extras import require

require("django")
if find_spec("rest_framework") is None:
    raise MissingDependencyError("djangorestframework", "django")

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from authstate.authn import AuthInfo, bearer_challenge
from authstate.django.auth import AuthstateUser, auth_info
from authstate.web.statuses import RETRY_AFTER


class AuthenticationUnavailable(exceptions.APIException):  # type: ignore[misc]  # DRF is untyped
    """503: the store, keys or introspection endpoint did not answer. ``wait`` is what
    DRF's exception handler turns into ``Retry-After``."""

    status_code = 503
    default_detail = "authentication is unavailable; try again shortly"
    default_code = "store_unavailable"

    def __init__(self, code: str | None = None) -> None:
        super().__init__(code=code or self.default_code)
        self.wait = RETRY_AFTER


class AuthstateAuthentication(BaseAuthentication):  # type: ignore[misc]
    def authenticate(self, request: Request) -> tuple[AuthstateUser, AuthInfo] | None:
        info = auth_info(request._request)
        if info.identity is not None:
            return AuthstateUser(info.identity), info
        if info.error == "unavailable":
            raise AuthenticationUnavailable(info.cause)
        if info.error == "csrf_failed":
            raise exceptions.PermissionDenied("the CSRF check failed", code="csrf_failed")
        if info.error == "invalid_token":
            raise exceptions.AuthenticationFailed(code="invalid_token")
        return None

    def authenticate_header(self, request: Request) -> str:
        info = auth_info(request._request)
        return bearer_challenge("invalid_token" if info.bearer else None)


class HasScopes(BasePermission):  # type: ignore[misc]
    """Authenticated by authstate and holding every scope in the view's
    ``required_scopes``."""

    message = "the token lacks a required scope"

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not isinstance(user, AuthstateUser) or not user.is_authenticated:
            return False
        needed = getattr(view, "required_scopes", ())
        return set(needed) <= set(user.scopes)


def require_scopes(*scopes: str) -> type[BasePermission]:
    """A permission class needing every one of ``scopes`` (``permission_classes =
    [require_scopes("orders:read")]``)."""
    needed = frozenset(scopes)

    class RequireScopes(HasScopes):
        def has_permission(self, request: Request, view: Any) -> bool:
            user = request.user
            return (isinstance(user, AuthstateUser) and user.is_authenticated
                    and needed <= set(user.scopes))

    RequireScopes.__name__ = f"RequireScopes({' '.join(sorted(needed))})"
    return RequireScopes
