"""The protected endpoint behind Flask-JWT-Extended: ``GET /me`` with ``@jwt_required()``
(HS256, Authorization header), served by gunicorn with one gthread worker.

``GET /token`` mints a token for the bench user (loopback benchmarking only).

    gunicorn --chdir benchmarks/peers -k gthread -w 1 --threads 4 -b 127.0.0.1:PORT flask_jwt_app:app
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, jsonify
from flask_jwt_extended import JWTManager, create_access_token, get_jwt_identity, jwt_required

app = Flask(__name__)
app.config["JWT_SECRET_KEY"] = "peers-benchmark-secret-0123456789abcdef0123456789abcdef"
app.config["JWT_TOKEN_LOCATION"] = ["headers"]
app.config["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(seconds=600)
JWTManager(app)


@app.get("/me")
@jwt_required()
def me() -> object:
    return jsonify(user=get_jwt_identity())


@app.get("/token")
def token() -> object:
    return jsonify(header="Authorization", value="Bearer " + create_access_token(identity="bench-user"))
