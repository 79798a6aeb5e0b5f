"""The same protected endpoint behind authstate's ``AuthMiddleware``: ``GET /me`` with
``CurrentIdentity`` (``Depends(require_identity)``), the way an application mounts it.

Modes, matching the peers':

- ``jwt``: an HS256 access token, no revocation checks (the peers' JWT modes have none),
  authstate's default verified-token cache on (a repeated token skips the HMAC);
- ``jwt-nocache``: the same with that cache off, so every request verifies the HMAC, as
  the peers do;
- ``redis``: an opaque access token whose record is in the Redis store, one read per
  request (what fastapi-users' RedisStrategy does).

``GET /token`` mints a token for the bench user (loopback benchmarking only).

    python benchmarks/peers/authstate_app.py jwt|jwt-nocache|redis PORT
"""

from __future__ import annotations

import asyncio
import secrets
import sys

import uvicorn
from fastapi import FastAPI

from authstate.config import Settings
from authstate.state import AuthState
from authstate.web.dependencies import CurrentIdentity
from authstate.web.middleware import AuthMiddleware, BearerJWT, BearerOpaque

REDIS_URL = "redis://127.0.0.1:6379/0"
NO_REVOCATION = {
    "revocation_denylist": False,
    "revocation_token_version": False,
    "revocation_session_bound": False,
    "push_revocation": False,
}


def settings_for(mode: str) -> Settings:
    namespace = "peersbench" + secrets.token_hex(4)
    if mode == "redis":
        return Settings.from_flat(store=REDIS_URL, namespace=namespace, key_algorithm="HS256",
                        metrics=False)
    if mode in ("jwt", "jwt-nocache"):
        return Settings.from_flat(store="memory://", namespace=namespace, key_algorithm="HS256",
                        metrics=False, **NO_REVOCATION)
    raise SystemExit(f"unknown mode {mode!r}")


def create_app(state: AuthState, mode: str) -> FastAPI:
    if mode == "jwt-nocache":
        state.tokens.cache = None
    app = FastAPI()
    authenticator = BearerOpaque(state) if mode == "redis" else BearerJWT(state)
    app.add_middleware(AuthMiddleware, authenticators=[authenticator])

    @app.get("/me")
    async def me(identity: CurrentIdentity) -> dict[str, str]:
        return {"user": identity.user_id}

    @app.get("/token")
    async def token() -> dict[str, str]:
        if mode == "redis":
            value, _ = await state.opaque.issue("bench-user")
        else:
            value, _ = state.tokens.issue("bench-user")
        return {"header": "Authorization", "value": f"Bearer {value}"}

    return app


async def main(mode: str, port: int) -> None:
    state = await AuthState.open(settings_for(mode))
    try:
        config = uvicorn.Config(create_app(state, mode), host="127.0.0.1", port=port,
                                log_level="warning", access_log=False)
        await uvicorn.Server(config).serve()
    finally:
        drop = getattr(state.store, "drop_namespace", None)
        if drop is not None:
            await drop()
        await state.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
