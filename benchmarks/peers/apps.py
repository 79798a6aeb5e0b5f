"""The ASGI apps of ``run.py``: one protected ``GET /me`` (200 with the caller's ID as
JSON), five ways, each a uvicorn factory (``uvicorn --factory apps:NAME``) so that every
row runs on the very same server command line and worker count.

- ``none``: the same FastAPI route with no authentication (the floor of the server);
- ``floor``: the dependency a user writes by hand with FastAPI and PyJWT: ``HTTPBearer``,
  then ``jwt.decode`` with the RS256 public key loaded once, the algorithm pinned,
  ``exp``, ``aud`` and ``iss`` checked (``async def``: no thread pool). No revocation, no
  user lookup, no cache;
- ``fastapi_users_rs256`` / ``fastapi_users_hs256``: fastapi-users' ``JWTStrategy``
  behind ``BearerTransport``, ``current_user(active=True)``, as its documentation wires
  them; RS256 (public key as PEM, which PyJWT parses on every decode) or its default
  HS256. Each request decodes the token and then loads the user through the user
  manager from its user database: here a dict (fastapi-users' ``BaseUserDatabase``
  interface), the cheapest one it can have, so a real database only adds to its cost;
- ``authstate``: ``AuthMiddleware([BearerJWT(state)])`` and ``CurrentIdentity``, with
  authstate's DEFAULT settings except the store (Redis, shared by the workers) and its
  namespace: signature and claims, the three revocation checks (denylist, token version,
  session-bound) against the copy push revocation keeps in memory, metrics, and the
  verified-token cache. The ``AuthState`` is opened at lifespan start, in each worker.

The keys, secrets and the store's namespace come from the driver in the environment
(``PEERS_BENCH``, JSON): throwaway values made for one run on loopback.

No ``from __future__ import annotations``: FastAPI resolves the dependencies'
annotations at run time, and closures' local names are not resolvable as strings.
"""

import json
import os
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ISSUER = "https://peers-bench.example"
AUDIENCE = "peers-bench-api"
USERS_AUDIENCE = ["fastapi-users:auth"]  # fastapi-users' default
USER_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


def config() -> dict[str, str]:
    return dict(json.loads(os.environ["PEERS_BENCH"]))


def none() -> FastAPI:
    app = FastAPI()

    @app.get("/me")
    async def me() -> dict[str, str]:
        return {"user": "anonymous"}

    return app


def floor() -> FastAPI:
    key = jwt.PyJWK.from_json(config()["public_jwk"])  # parsed once, at start
    bearer = HTTPBearer(auto_error=False)

    async def current_user(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> str:
        if credentials is None:
            raise HTTPException(401, headers={"WWW-Authenticate": "Bearer"})
        try:
            claims: dict[str, Any] = jwt.decode(
                credentials.credentials, key, algorithms=["RS256"],
                audience=AUDIENCE, issuer=ISSUER,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError:
            raise HTTPException(401, headers={"WWW-Authenticate": "Bearer"}) from None
        return str(claims["sub"])

    app = FastAPI()

    @app.get("/me")
    async def me(user: Annotated[str, Depends(current_user)]) -> dict[str, str]:
        return {"user": user}

    return app


def _fastapi_users(algorithm: str) -> FastAPI:
    from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin
    from fastapi_users.authentication import AuthenticationBackend, BearerTransport, JWTStrategy
    from fastapi_users.db import BaseUserDatabase

    settings = config()

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
        reset_password_token_secret = settings["users_secret"]
        verification_token_secret = settings["users_secret"]

    database = DictUserDatabase()

    async def get_user_manager() -> Any:
        yield UserManager(database)

    if algorithm == "RS256":
        strategy: Any = JWTStrategy(secret=settings["private_pem"], lifetime_seconds=600,
                                    algorithm="RS256", public_key=settings["public_pem"])
    else:
        strategy = JWTStrategy(secret=settings["users_secret"], lifetime_seconds=600)
    backend = AuthenticationBackend(name="jwt", transport=BearerTransport(tokenUrl="auth/login"),
                                    get_strategy=lambda: strategy)
    current_user = FastAPIUsers[User, uuid.UUID](get_user_manager, [backend]).current_user(
        active=True)
    app = FastAPI()

    @app.get("/me")
    async def me(user: Annotated[User, Depends(current_user)]) -> dict[str, str]:
        return {"user": str(user.id)}

    return app


def fastapi_users_rs256() -> FastAPI:
    return _fastapi_users("RS256")


def fastapi_users_hs256() -> FastAPI:
    return _fastapi_users("HS256")


def authstate_settings(redis_url: str, namespace: str) -> Any:
    """authstate's defaults but for where the state lives (printed by run.py)."""
    from authstate.config import Settings

    return Settings.from_flat(store=redis_url, namespace=namespace)


def authstate() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """``AuthMiddleware(app, authenticators=[BearerJWT(state)])`` around the FastAPI app,
    the state opened when uvicorn starts the worker (lifespan) and closed when it stops."""
    from authstate.state import AuthState
    from authstate.web.dependencies import CurrentIdentity
    from authstate.web.middleware import AuthMiddleware, BearerJWT

    settings = config()
    api = FastAPI()

    @api.get("/me")
    async def me(identity: CurrentIdentity) -> dict[str, str]:
        return {"user": identity.user_id}

    served: list[Any] = []  # the middleware, once the state is open

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await served[0](scope, receive, send)
            return
        state = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                state = await AuthState.open(authstate_settings(settings["redis"],
                                                                settings["namespace"]))
                served.append(AuthMiddleware(api, authenticators=[BearerJWT(state)]))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if state is not None:
                    await state.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    return app
