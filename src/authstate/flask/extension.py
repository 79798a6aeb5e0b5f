"""The Flask extension: who is calling, from the same authenticators as the service.

    from authstate.flask import Authstate, current_identity, login_required, require_scopes

    app.config["AUTHSTATE"] = {"AUTH_URL": "https://auth.example",
                               "CLIENT_ID": "...", "CLIENT_SECRET": "..."}
    auth = Authstate(app)          # or Authstate() then auth.init_app(app)

    @app.get("/orders")
    @require_scopes("orders:read")
    def orders(): return {"user": current_identity.user_id}

Before each request the extension asks ``authstate.wsgi.RequestAuthenticator`` (the
service's own ``authn`` authenticators, run on the process's portal) who is calling and
keeps the verdict in the WSGI environ (``authstate.identity``, ``authstate.auth``), as the
WSGI middleware does. Anonymous requests go on; ``login_required`` and
``require_scopes`` answer as the service does (``authstate.wsgi.refusal``): 401 with a
``WWW-Authenticate`` challenge, 403 problem details for CSRF or scope, and an outage is a
503 with ``Retry-After`` before any view runs. ``AUTHSTATE`` takes the keys of
``RequestAuthenticator.from_config``; ``auth.sync`` is the ``SyncAuthState`` for the
flows when the app is on the service's store (``SETTINGS``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import ParamSpec, TypeVar, cast

from authstate.extras import require

require("flask")

from flask import Flask, Response, current_app, request
from werkzeug.local import LocalProxy

from authstate.authn import AuthInfo
from authstate.identity import Identity
from authstate.sync import Portal, SyncAuthState
from authstate.wsgi import (
    AUTH_KEY,
    IDENTITY_KEY,
    Authenticators,
    Refusal,
    RequestAuthenticator,
    refusal,
)

P = ParamSpec("P")
R = TypeVar("R")

EXTENSION_KEY = "authstate"


class Authstate:
    """The extension object; one per app (or shared by several through ``init_app``)."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        authenticators: Authenticators | None = None,
        bearer_decides: bool = False,
        sync: SyncAuthState | None = None,
        portal: Portal | None = None,
    ) -> None:
        self._authenticators = authenticators
        self._portal = portal
        self._bearer_decides = bearer_decides
        self._sync = sync
        self.authenticator: RequestAuthenticator | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Authenticate every request of ``app`` (a ``before_request`` hook) with the
        authenticators given here, else those ``app.config["AUTHSTATE"]`` describes."""
        if self._authenticators is not None:
            authenticator = RequestAuthenticator(
                self._authenticators, bearer_decides=self._bearer_decides, sync=self._sync,
                portal=self._portal,
            )
        else:
            authenticator = RequestAuthenticator.from_config(
                app.config.get("AUTHSTATE", {}), portal=self._portal
            )
        self.authenticator = authenticator
        app.extensions[EXTENSION_KEY] = authenticator
        app.before_request(_authenticate)

    @property
    def sync(self) -> SyncAuthState:
        """The ``SyncAuthState`` the authenticators rest on (``SETTINGS`` or ``sync=``)."""
        found = self._sync or (self.authenticator.sync if self.authenticator else None)
        if found is None:
            raise RuntimeError("this app trusts a remote service: it has no AuthState")
        return found

    def close(self) -> None:
        if self.authenticator is not None:
            self.authenticator.close()


def _authenticate() -> Response | None:
    authenticator: RequestAuthenticator = current_app.extensions[EXTENSION_KEY]
    environ = request.environ
    info = authenticator.authenticate(environ)
    if info.error == "unavailable" and info.identity is None:
        answer = refusal(info)
        assert answer is not None
        return response_for(answer)  # an outage is not a logout: no view runs
    environ[IDENTITY_KEY] = info.identity
    environ[AUTH_KEY] = info
    return None


def response_for(refused: Refusal) -> Response:
    """A Flask response carrying ``refused`` (status, problem body, headers)."""
    return Response(refused.body(), status=refused.status, headers=refused.all_headers())


def _identity() -> Identity | None:
    return cast(Identity | None, request.environ.get(IDENTITY_KEY))


def _auth() -> AuthInfo | None:
    return cast(AuthInfo | None, request.environ.get(AUTH_KEY))


current_identity: Identity = cast(Identity, LocalProxy(_identity))
"""The caller's ``Identity`` in this request (a proxy; None-like when anonymous)."""
current_auth: AuthInfo = cast(AuthInfo, LocalProxy(_auth))
"""The ``AuthInfo`` verdict on this request."""


def require_scopes(*scopes: str) -> Callable[[Callable[P, R]], Callable[P, R | Response]]:
    """A view decorator: the caller must be authenticated and hold every one of
    ``scopes``; else the service's 401 / 403 answer."""
    needed: Sequence[str] = tuple(scopes)

    def decorate(view: Callable[P, R]) -> Callable[P, R | Response]:
        @functools.wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            refused = refusal(_auth(), needed)
            if refused is not None:
                return response_for(refused)
            return view(*args, **kwargs)

        return guarded

    return decorate


def login_required(view: Callable[P, R]) -> Callable[P, R | Response]:
    """A view decorator: the caller must be authenticated (401 / 403 otherwise)."""
    return require_scopes()(view)


def identity_or_none() -> Identity | None:
    """The caller's identity, or None (``current_identity`` is a proxy, always truthy)."""
    return _identity()


__all__ = [
    "Authstate", "current_auth", "current_identity", "identity_or_none", "login_required",
    "require_scopes", "response_for",
]


