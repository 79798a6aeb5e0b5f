"""authstate for Flask: ``Authstate`` (the extension), ``current_identity``,
``login_required`` and ``require_scopes``; see ``authstate.flask.extension``.

Installed with ``authstate[flask]``."""

from __future__ import annotations

from authstate.flask.extension import (
    Authstate,
    current_auth,
    current_identity,
    login_required,
    require_scopes,
)

__all__ = ["Authstate", "current_auth", "current_identity", "login_required", "require_scopes"]
