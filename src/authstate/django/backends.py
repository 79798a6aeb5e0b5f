"""``AuthstateBackend``: ``django.contrib.auth.authenticate(request)`` or
``authenticate(request, token=...)`` through the service's ``authn`` authenticators.

Add ``"authstate.django.backends.AuthstateBackend"`` to ``AUTHENTICATION_BACKENDS``. The
users live in authstate, not in Django's database, so ``get_user`` has nothing to load:
``request.user`` comes from ``AuthstateMiddleware`` on every request instead of from a
Django session."""

from __future__ import annotations

from typing import Any

from authstate.extras import require

require("django")

from django.http import HttpRequest

from authstate.django.auth import AuthstateUser, auth_info, authenticator


class AuthstateBackend:
    def authenticate(
        self, request: HttpRequest | None, token: str | None = None, **_: Any
    ) -> AuthstateUser | None:
        """The user behind ``token`` (a bearer token), else behind the request's own
        credentials; None when there is none or it is not valid."""
        if token is not None:
            info = authenticator().authenticate({"HTTP_AUTHORIZATION": f"Bearer {token}"})
        elif request is not None:
            info = auth_info(request)
        else:
            return None
        return AuthstateUser(info.identity) if info.identity is not None else None

    def get_user(self, user_id: Any) -> None:
        return None
