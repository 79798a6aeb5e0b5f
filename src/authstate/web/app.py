"""The FastAPI service that ``authstate serve`` runs.

``create_app(state)`` serves an ``AuthState`` the caller opened (and will close), which is
what tests do; ``create_app(settings=...)`` opens one from settings when the server starts
and closes it when it stops, which is what ``serve`` does. ``serve --workers N`` runs
``worker_app`` in each worker process instead, which reads the settings ``serve``
resolved from the environment (uvicorn starts workers from an import string). Either way
the routes reach it as ``request.app.state.authstate``, and nothing in ``web`` touches a
store directly.

Routers: ``auth``, ``oauth``, ``admin``, ``wellknown``, ``health`` (this service's API),
``pages`` (the HTML pages) and ``ops`` (``/metrics``, ``/admin/audit``), each a module
exposing ``router``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import authstate
from authstate.errors import MissingDependencyError

try:
    from fastapi import FastAPI
except ImportError as missing:  # the service is the [server] extra
    raise MissingDependencyError(missing.name or "fastapi", "server") from missing

from authstate.config import Settings
from authstate.state import AuthState
from authstate.web import problems
from authstate.web.auditing import AuditOrigin
from authstate.web.bodies import BodyLimit
from authstate.web.caller import get_state
from authstate.web.pages import router as pages_router
from authstate.web.routes import admin, auth, authorize, health, oauth, oidc, ops, wellknown
from authstate.web.schemas import problems as problems_doc

logger = logging.getLogger("authstate.web")

DESCRIPTION = (
    "Sessions, JWTs and the hybrid. Errors are RFC 9457 problem details, except on "
    "`/oauth/*` (RFC 6749 §5.2 error objects). State-changing requests authenticated by "
    "the session cookie need the `X-CSRF-Token` header."
)


def create_app(state: AuthState | None = None, *, settings: Settings | None = None) -> FastAPI:
    if (state is None) == (settings is None):
        raise TypeError("create_app takes exactly one of state or settings")
    config = state.settings if state is not None else settings
    assert config is not None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        if state is not None:
            app.state.authstate = state
            yield {}
            return
        opened = await AuthState.open(config)
        app.state.authstate = opened
        sweeper = opened.sweeper()  # expired state and old audit events
        sweeper.start()
        try:
            yield {}
        finally:
            await sweeper.stop()
            await opened.close()

    app = FastAPI(
        title="authstate",
        version=getattr(authstate, "__version__", "0.1.0"),
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=problems_doc(413),
    )
    if state is not None:
        app.state.authstate = state
    problems.install(app)
    for router in (
        auth.router, oauth.router, authorize.router, oidc.router, oidc.pages, admin.router,
        wellknown.router, health.router, ops.router, ops.metrics_router, pages_router,
    ):
        app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=config.service.max_body_bytes)
    app.add_middleware(AuditOrigin)
    return app


def create_metrics_app(main: FastAPI) -> FastAPI:
    """The app behind ``AUTHSTATE_METRICS_ADDRESS``: ``GET /metrics`` only, over the
    ``AuthState`` that ``main``'s lifespan opened (one state, two listeners), so the
    scrape port can stay on an internal network while the service port is public."""

    def main_state() -> AuthState:
        opened: AuthState | None = getattr(main.state, "authstate", None)
        if opened is None:
            raise problems.Problem(
                503, "starting", "the service is starting", headers={"Retry-After": "1"}
            )
        return opened

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.metrics_listener = True
    problems.install(app)
    app.include_router(ops.metrics_router)
    app.dependency_overrides[get_state] = main_state
    return app


WORKER_SETTINGS = "_AUTHSTATE_SERVE_SETTINGS"  # not AUTHSTATE_*: no settings field reads it


def worker_app() -> FastAPI:
    """The app of one ``serve --workers`` process: the settings ``serve`` resolved once
    (flags, environment, file) and passed down as JSON, so every worker runs the same
    configuration, with its own connections to the shared store and bus."""
    from authstate.logs import configure_logging

    settings = Settings.from_json(os.environ[WORKER_SETTINGS])
    configure_logging(settings.service.log_level)
    return create_app(settings=settings)
