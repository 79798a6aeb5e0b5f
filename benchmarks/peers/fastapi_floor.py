"""Two FastAPI apps with the same protected route, for ``middleware_throughput.py``:

- ``floor``: the dependency a user would write by hand with FastAPI and PyJWT
  (``async def``, so no thread pool): ``HTTPBearer``, then ``jwt.decode`` with the service's public key (from its JWKS),
  algorithm pinned, ``aud`` and ``iss`` checked. It checks NO revocation (a revoked or
  logged-out token stays valid until it expires) and caches nothing;
- ``authstate``: ``AuthMiddleware([BearerJWT(state)])`` with the ``CurrentIdentity``
  dependency, default settings: signature, claims, and the three revocation checks
  (denylist, token version, session-bound) against the pushed copy, plus metrics.

No ``from __future__ import annotations`` here: FastAPI resolves the dependencies'
annotations at run time, and closures' local names are not resolvable as strings.
"""


import json
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from authstate.state import AuthState
from authstate.web.dependencies import CurrentIdentity
from authstate.web.middleware import AuthMiddleware, BearerJWT


def floor(state: AuthState) -> FastAPI:
    """Only the key is taken from ``state`` (as a client would from the JWKS URL)."""
    settings = state.settings.tokens
    keys = {k["kid"]: jwt.PyJWK.from_json(json.dumps(k))
            for k in state.keys.public_jwks()["keys"]}
    bearer = HTTPBearer(auto_error=False)

    async def current_user(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> str:
        if credentials is None:
            raise HTTPException(401, headers={"WWW-Authenticate": "Bearer"})
        try:
            kid = jwt.get_unverified_header(credentials.credentials).get("kid")
            key = keys[kid]
            claims: dict[str, Any] = jwt.decode(
                credentials.credentials, key, algorithms=[key.algorithm_name],
                audience=settings.audience, issuer=settings.issuer,
            )
        except (jwt.InvalidTokenError, KeyError):
            raise HTTPException(401, headers={"WWW-Authenticate": "Bearer"}) from None
        return str(claims["sub"])

    app = FastAPI()

    @app.get("/protected")
    async def protected(user: Annotated[str, Depends(current_user)]) -> PlainTextResponse:
        return PlainTextResponse(user)

    return app


def authstate(state: AuthState) -> FastAPI:
    app = FastAPI()
    app.add_middleware(AuthMiddleware, authenticators=[BearerJWT(state)])

    @app.get("/protected")
    async def protected(identity: CurrentIdentity) -> PlainTextResponse:
        return PlainTextResponse(identity.user_id)

    return app
