"""A WSGI app for gunicorn ``--preload`` (not a test module): it uses authstate in the
master at import time, so the portal thread runs and the ``AuthState`` is open before
gunicorn forks; each worker must start its own."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from authstate.authn import BearerJWT
from authstate.config import Settings
from authstate.sync import SyncAuthState
from authstate.wsgi import IDENTITY_KEY, AuthMiddleware

auth = SyncAuthState(Settings())  # the AUTHSTATE_* environment
MASTER = os.getpid()
auth.ping()  # the master's portal and AuthState are live now


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    identity = environ.get(IDENTITY_KEY)
    status = "200 OK" if identity is not None or environ["PATH_INFO"] == "/ping" else "401 Unauthorized"
    body = json.dumps({"user": identity.user_id if identity else None, "pid": os.getpid(),
                       "master": MASTER, "store": auth.ping()}).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [body]


application = AuthMiddleware(app, authenticators=lambda: [BearerJWT(auth.state)])
