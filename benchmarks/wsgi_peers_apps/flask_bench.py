"""The Flask apps of ``benchmarks/wsgi_peers.py``: one protected ``GET /me`` each.

- ``plain_app()``: the same view, no authentication (the floor);
- ``authstate_app()``: ``authstate.flask`` on the service's store (``AUTHSTATE_*``
  environment: Redis, push revocation), ``@login_required``;
- ``fje_app()``: Flask-JWT-Extended, ``@jwt_required()`` (HS256, its default).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask, jsonify

FJE_SECRET = "wsgi-peers-benchmark-secret-0123456789abcdef0123456789abcdef"


def plain_app() -> Flask:
    app = Flask("plain")

    @app.get("/me")
    def me() -> Any:
        return jsonify(user="bench-user")

    return app


def authstate_app() -> Flask:
    from authstate.config import Settings
    from authstate.flask import Authstate, current_identity, login_required

    app = Flask("authstate")
    app.config["AUTHSTATE"] = {"SETTINGS": Settings().model_dump()}
    Authstate(app)

    @app.get("/me")
    @login_required
    def me() -> Any:
        return jsonify(user=current_identity.user_id)

    return app


def fje_app() -> Flask:
    from flask_jwt_extended import JWTManager, create_access_token, get_jwt_identity, jwt_required

    app = Flask("fje")
    app.config["JWT_SECRET_KEY"] = FJE_SECRET
    app.config["JWT_TOKEN_LOCATION"] = ["headers"]
    app.config["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(seconds=600)
    JWTManager(app)

    @app.get("/me")
    @jwt_required()
    def me() -> Any:
        return jsonify(user=get_jwt_identity())

    @app.get("/token")
    def token() -> Any:
        return jsonify(token=create_access_token(identity="bench-user"))

    return app
