"""The protected endpoint behind fastapi-users: ``GET /me`` with its JWT strategy or its
Redis strategy (Bearer transport both), as its documentation wires them.

Users live in a dict (fastapi-users' own ``BaseUserDatabase`` interface), the cheapest
user database it can have, so that the comparison measures authentication, not an ORM.
``GET /token`` mints a token for the bench user (loopback benchmarking only).

    python benchmarks/peers/fastapi_users_app.py jwt|redis PORT
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio
import uvicorn
from fastapi import Depends, FastAPI
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin
from fastapi_users.authentication import (
    AuthenticationBackend,
    BearerTransport,
    JWTStrategy,
    RedisStrategy,
)
from fastapi_users.db import BaseUserDatabase

SECRET = "peers-benchmark-secret-0123456789abcdef0123456789abcdef"
REDIS_URL = "redis://127.0.0.1:6379/0"
LIFETIME = 600
USER_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


@dataclass
class User:
    id: uuid.UUID
    email: str
    hashed_password: str
    is_active: bool = True
    is_superuser: bool = False
    is_verified: bool = True


class DictUserDatabase(BaseUserDatabase[User, uuid.UUID]):
    def __init__(self) -> None:
        self.users = {USER_ID: User(USER_ID, "bench@example.com", "x")}

    async def get(self, id: uuid.UUID) -> User | None:
        return self.users.get(id)


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = SECRET
    verification_token_secret = SECRET


USER_DB = DictUserDatabase()


async def get_user_manager() -> Any:
    yield UserManager(USER_DB)


def create_app(mode: str) -> FastAPI:
    transport = BearerTransport(tokenUrl="auth/login")
    if mode == "jwt":
        strategy: Any = JWTStrategy(secret=SECRET, lifetime_seconds=LIFETIME)
    elif mode == "redis":
        strategy = RedisStrategy(
            redis.asyncio.from_url(REDIS_URL, decode_responses=True),
            lifetime_seconds=LIFETIME,
            key_prefix="peersbench_fastapi_users_token:",
        )
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    backend = AuthenticationBackend(name=mode, transport=transport, get_strategy=lambda: strategy)
    users = FastAPIUsers[User, uuid.UUID](get_user_manager, [backend])
    current_user = users.current_user(active=True)
    app = FastAPI()

    @app.get("/me")
    async def me(user: User = Depends(current_user)) -> dict[str, str]:
        return {"user": str(user.id)}

    @app.get("/token")
    async def token() -> dict[str, str]:
        return {"header": "Authorization", "value": "Bearer " + await strategy.write_token(USER_DB.users[USER_ID])}

    return app


if __name__ == "__main__":
    uvicorn.run(create_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]),
                log_level="warning", access_log=False)
