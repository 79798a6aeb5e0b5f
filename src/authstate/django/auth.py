"""What the Django adapters share: the process's authenticator from ``settings.AUTHSTATE``,
the verdict on a request (computed once, kept in ``request.META`` as the WSGI middleware
keeps it in the environ) and the user object Django code sees."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from authstate.extras import require

require("django")

from django.conf import settings
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse

from authstate.authn import AuthInfo
from authstate.identity import Identity
from authstate.wsgi import AUTH_KEY, IDENTITY_KEY, Refusal, RequestAuthenticator


@functools.cache
def authenticator() -> RequestAuthenticator:
    """The process's ``RequestAuthenticator``, from ``settings.AUTHSTATE`` (built once;
    rebuilt when a test overrides the setting)."""
    return RequestAuthenticator.from_config(getattr(settings, "AUTHSTATE", {}))


def _reset(*, setting: str, **_: Any) -> None:
    if setting == "AUTHSTATE" and authenticator.cache_info().currsize:
        authenticator().close()
        authenticator.cache_clear()


setting_changed.connect(_reset)


def auth_info(request: HttpRequest) -> AuthInfo:
    """The verdict on ``request`` (computed on first call, then kept in ``META``)."""
    meta = request.META
    info = meta.get(AUTH_KEY)
    if not isinstance(info, AuthInfo):
        info = authenticator().authenticate(meta)
        meta[AUTH_KEY] = info
        meta[IDENTITY_KEY] = info.identity
    return info


class AuthstateUser:
    """``request.user`` under authstate: the parts of Django's user interface that code
    and templates read (``is_authenticated``, ``pk``, ``get_username``, ``has_perm``),
    plus ``identity`` and ``scopes``. Anonymous when ``identity`` is None. ``has_perm``
    answers from the token's scopes (``has_perm("orders:read")``)."""

    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, identity: Identity | None) -> None:
        self.identity = identity

    @property
    def is_authenticated(self) -> bool:
        return self.identity is not None

    @property
    def is_anonymous(self) -> bool:
        return self.identity is None

    @property
    def pk(self) -> str | None:
        return self.identity.user_id if self.identity is not None else None

    id = pk

    @property
    def username(self) -> str:
        return self.identity.user_id if self.identity is not None else ""

    @property
    def scopes(self) -> tuple[str, ...]:
        return self.identity.scope if self.identity is not None else ()

    def get_username(self) -> str:
        return self.username

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return self.identity is not None and perm in self.scopes

    def has_perms(self, perms: Iterable[str], obj: object = None) -> bool:
        return all(self.has_perm(p) for p in perms)

    def has_module_perms(self, app_label: str) -> bool:
        return False

    def __str__(self) -> str:
        return self.username or "AnonymousUser"

    def __repr__(self) -> str:
        return f"AuthstateUser({self.username or 'anonymous'})"


def user_for(request: HttpRequest) -> AuthstateUser:
    return AuthstateUser(auth_info(request).identity)


def response_for(refused: Refusal) -> HttpResponse:
    """A Django response carrying ``refused`` (status, problem body, headers)."""
    response = HttpResponse(refused.body(), status=refused.status,
                            content_type="application/problem+json")
    for name, value in refused.headers:
        response[name] = value
    response["Cache-Control"] = "no-store"
    return response
