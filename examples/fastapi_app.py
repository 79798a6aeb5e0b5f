"""A small FastAPI app (an "orders" API) that trusts a running ``authstate serve``.

It verifies JWT access tokens locally with the service's published keys (JWKS: no call
to the service per request; a revoked JWT is refused when it expires, within
``AUTHSTATE_ACCESS_TOKEN_TTL``), and asks the service's RFC 7662 introspection endpoint
about any other bearer token (opaque tokens: revocation is seen at once). Put
``Introspection`` first, or alone, to have JWT revocation seen at once as well.

Try it::

    authstate serve &                                     # http://127.0.0.1:8000
    authstate users add alice@example.com                 # asks for a password
    authstate clients add orders-api                      # prints the client ID and secret
    export AUTHSTATE_URL=http://127.0.0.1:8000 \\
           AUTHSTATE_CLIENT_ID=... AUTHSTATE_CLIENT_SECRET=...
    uvicorn examples.fastapi_app:app --port 8001 &

    TOKEN=$(curl -s http://127.0.0.1:8000/oauth/token -d grant_type=password \\
            -d username=alice@example.com -d password=... | python3 -c \\
            'import json,sys; print(json.load(sys.stdin)["access_token"])')
    curl -s http://127.0.0.1:8001/me -H "Authorization: Bearer $TOKEN"
    curl -s http://127.0.0.1:8001/                        # anyone: a greeting
    curl -si http://127.0.0.1:8001/me                     # 401 with WWW-Authenticate
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from authstate.web.dependencies import CurrentIdentity, MaybeIdentity, require_scopes
from authstate.web.middleware import AuthMiddleware, trusting


def create_app(
    auth_url: str,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    issuer: str | None = None,
    audience: str = "authstate",
) -> FastAPI:
    """The orders API, trusting the authstate service at ``auth_url``."""
    authenticators = trusting(auth_url, client_id=client_id, client_secret=client_secret,
                              issuer=issuer, audience=audience)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for authenticator in authenticators:
            await authenticator.aclose()

    app = FastAPI(title="orders (an authstate example)", lifespan=lifespan)

    @app.get("/")
    async def greeting(identity: MaybeIdentity) -> dict[str, str]:
        return {"hello": identity.user_id if identity else "stranger"}

    @app.get("/me")
    async def me(identity: CurrentIdentity) -> dict[str, Any]:
        return {"user": identity.user_id, "method": identity.method,
                "scope": list(identity.scope), "expires_at": identity.expires_at}

    @app.get("/orders", dependencies=[Depends(require_scopes("orders:read"))])
    async def orders(identity: CurrentIdentity) -> dict[str, Any]:
        return {"user": identity.user_id, "orders": []}

    app.add_middleware(AuthMiddleware, authenticators=authenticators)
    return app


def _from_environment() -> FastAPI:
    return create_app(
        os.environ.get("AUTHSTATE_URL", "http://127.0.0.1:8000").rstrip("/"),
        client_id=os.environ.get("AUTHSTATE_CLIENT_ID"),
        client_secret=os.environ.get("AUTHSTATE_CLIENT_SECRET"),
        issuer=os.environ.get("AUTHSTATE_ISSUER"),
    )


app = _from_environment()
