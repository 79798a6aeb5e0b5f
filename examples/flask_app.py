"""Two small Flask apps protected by authstate (``authstate.flask``).

``create_app``: an "orders" API trusting a running ``authstate serve``: its JWTs are
verified here with the keys it publishes (JWKS), any other bearer token (opaque) is asked
of its introspection endpoint. ``create_session_app``: a Flask app on the *same store* as
the service, logging users in with authstate sessions (cookie + CSRF token), so a
logout, a password change or ``authstate sessions revoke`` at the service ends the
session here too, and tokens the service issues are accepted with revocation pushed.

Try it::

    authstate serve &                                     # http://127.0.0.1:8000
    authstate users add alice@example.com                 # asks for a password
    authstate clients add orders-api                      # prints the client ID and secret
    export AUTHSTATE_URL=http://127.0.0.1:8000 \\
           AUTHSTATE_CLIENT_ID=... AUTHSTATE_CLIENT_SECRET=...
    gunicorn -w 2 --threads 4 -b 127.0.0.1:8001 examples.flask_app:app &

    TOKEN=$(curl -s http://127.0.0.1:8000/oauth/token -d grant_type=password \\
            -d username=alice@example.com -d password=... | python3 -c \\
            'import json,sys; print(json.load(sys.stdin)["access_token"])')
    curl -s http://127.0.0.1:8001/me -H "Authorization: Bearer $TOKEN"
    curl -si http://127.0.0.1:8001/me                     # 401 with WWW-Authenticate

    # the sessions app, on the service's store (AUTHSTATE_STORE as for `authstate serve`)
    gunicorn -b 127.0.0.1:8002 'examples.flask_app:create_session_app()'
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, make_response, request

from authstate.authn import session_cookie_name
from authstate.errors import AuthenticationFailed, Throttled
from authstate.flask import Authstate, current_identity, login_required, require_scopes
from authstate.flask.extension import identity_or_none


def create_app(
    auth_url: str,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    issuer: str | None = None,
    audience: str = "authstate",
    **extra: Any,
) -> Flask:
    """The orders API, trusting the authstate service at ``auth_url``. ``extra`` goes
    into ``AUTHSTATE`` as is (e.g. ``JWKS_MIN_REFRESH_INTERVAL``)."""
    app = Flask("orders")
    app.config["AUTHSTATE"] = {
        "AUTH_URL": auth_url, "CLIENT_ID": client_id, "CLIENT_SECRET": client_secret,
        "ISSUER": issuer, "AUDIENCE": audience, **extra,
    }
    Authstate(app)

    @app.get("/")
    def greeting() -> Any:
        identity = identity_or_none()
        return {"hello": identity.user_id if identity else "stranger"}

    @app.get("/ping")
    def ping() -> Any:  # unprotected: the benchmark's baseline
        return {"ok": True}

    @app.get("/me")
    @login_required
    def me() -> Any:
        return {"user": current_identity.user_id, "method": current_identity.method,
                "scope": list(current_identity.scope)}

    @app.get("/orders")
    @require_scopes("orders:read")
    def orders() -> Any:
        return {"user": current_identity.user_id, "orders": []}

    return app


def create_session_app(settings: dict[str, Any] | None = None) -> Flask:
    """A Flask app logging users in with authstate sessions, on the service's store:
    ``settings`` are ``authstate.Settings`` keywords (default: the ``AUTHSTATE_*``
    environment, as ``authstate serve`` reads it)."""
    from authstate.config import Settings

    values = settings if settings is not None else Settings().model_dump()
    app = Flask("notes")
    app.config["AUTHSTATE"] = {"SETTINGS": values}
    auth = Authstate(app)
    cookie = session_cookie_name(Settings(**values))

    @app.get("/ping")
    def ping() -> Any:
        return {"ok": True}

    @app.post("/login")
    def login() -> Any:
        try:
            result = auth.sync.login(
                request.form.get("email", ""), request.form.get("password", ""),
                ip=request.remote_addr, user_agent=request.user_agent.string,
                previous_session_id=request.cookies.get(cookie), via="flask",
            )
        except (AuthenticationFailed, Throttled) as refused:
            return jsonify(code=refused.code), 401 if isinstance(refused, AuthenticationFailed) else 429
        response = make_response({"user": result.user.id, "csrf_token": result.csrf_token})
        response.set_cookie(cookie, result.session_id, httponly=True, samesite="Lax",
                            secure=cookie.startswith("__Host-"), path="/")
        return response

    @app.get("/me")
    @login_required
    def me() -> Any:
        return {"user": current_identity.user_id, "method": current_identity.method}

    @app.post("/notes")  # a cookie-authenticated change: the CSRF token is checked
    @login_required
    def add_note() -> Any:
        return {"saved": True, "by": current_identity.user_id}

    @app.get("/token")  # a short access token for other services, bound to this session
    @login_required
    def token() -> Any:
        session = current_identity.session
        if session is None:
            return jsonify(code="session_required"), 400
        access, claims = auth.sync.issue_for_session(session)
        return {"access_token": access, "expires_at": claims["exp"]}

    @app.post("/logout")
    @login_required
    def logout() -> Any:
        auth.sync.logout(session_id=request.cookies.get(cookie))
        response = make_response({"bye": True})
        response.delete_cookie(cookie, path="/")
        return response

    return app


def _from_environment() -> Flask:
    extra = {}
    if os.environ.get("AUTHSTATE_JWKS_MIN_REFRESH_INTERVAL"):
        extra["JWKS_MIN_REFRESH_INTERVAL"] = os.environ["AUTHSTATE_JWKS_MIN_REFRESH_INTERVAL"]
    return create_app(
        os.environ.get("AUTHSTATE_URL", "http://127.0.0.1:8000").rstrip("/"),
        client_id=os.environ.get("AUTHSTATE_CLIENT_ID"),
        client_secret=os.environ.get("AUTHSTATE_CLIENT_SECRET"),
        issuer=os.environ.get("AUTHSTATE_ISSUER"),
        **extra,
    )


app = _from_environment()
