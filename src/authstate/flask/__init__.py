"""authstate for Flask: ``Authstate`` (the extension), ``current_identity``,
``login_required`` and ``require_scopes``; see ``authstate.flask.extension``. Server-side
sessions: ``ServerSideSessions`` (``authstate.flask.sessions``).

Installed with ``authstate[flask]``."""

from __future__ import annotations

from authstate.flask.extension import (
    Authstate,
    current_auth,
    current_identity,
    login_required,
    require_scopes,
)
from authstate.flask.sessions import ServerSideSessions

__all__ = [
    "Authstate", "ServerSideSessions", "current_auth", "current_identity", "login_required",
    "require_scopes",
]
