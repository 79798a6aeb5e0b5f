"""``authstate serve``: run the HTTP service with uvicorn.

With no arguments: the SQLite store ``./authstate.db``, a signing key generated on first
start (Ed25519 unless ``AUTHSTATE_KEY_ALGORITHM`` says otherwise), 127.0.0.1:8000, and
development mode, which sends cookies without ``Secure`` so they work over plain HTTP on
localhost, and says so in a warning. Flags beat ``AUTHSTATE_*`` variables, which beat the
``--config`` TOML file, which beats the defaults.

The store is opened once before the server starts, so a bad URL, an unreachable server or
an unreadable config is one line on stderr and exit status 1 or 2, not a traceback; the
server then opens its own ``AuthState`` in its event loop (the lifespan of ``web/app.py``).

``--workers N`` runs N uvicorn worker processes on one socket, each with its own
``AuthState`` on the shared store; a revocation made through one worker reaches the
others over the store's bus, as it reaches other instances. ``memory://`` is refused with
workers, since each would hold a separate store.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import typer

from authstate.cli.runner import EXIT_USAGE, StoreOption, fail
from authstate.config import Settings
from authstate.errors import AuthstateError, ConfigurationError
from authstate.logs import configure_logging
from authstate.state import AuthState
from authstate.stores import redact_url

logger = logging.getLogger("authstate.serve")

ConfigOption = typer.Option(
    None, "--config", help="A TOML file of settings (keys as in AUTHSTATE_*, lower case)."
)
MAX_WORKERS = 64
DEV_WARNING = (
    "development mode: the session cookie is sent without Secure and without the "
    "__Host- prefix so that it works over plain HTTP; run behind HTTPS with "
    "AUTHSTATE_DEV=false (or --no-dev) in production"
)


def load_settings(
    config: Path | None,
    *,
    store: str | None = None,
    host: str | None = None,
    port: int | None = None,
    issuer: str | None = None,
    dev: bool | None = None,
    log_level: str | None = None,
) -> Settings:
    """Settings from defaults, file, environment and flags; the issuer follows the
    listening address unless one is configured."""
    settings = Settings.load(
        config, store=store, host=host, port=port, issuer=issuer, dev=dev,
        log_level=log_level.upper() if log_level else None,
    )
    if "issuer" not in settings.model_fields_set:
        shown = f"[{settings.host}]" if ":" in settings.host else settings.host
        scheme = "http" if settings.dev else "https"
        settings = Settings.load(
            config, store=store, host=host, port=port, dev=dev,
            log_level=log_level.upper() if log_level else None,
            issuer=f"{scheme}://{shown}:{settings.port}",
        )
    return settings


def server_implementations() -> tuple[str, str]:
    """uvloop and httptools when installed (``authstate[server]``), else asyncio and h11:
    named explicitly so the start-up line says which ones run."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
    return loop, http


async def _preflight(settings: Settings) -> None:
    """Open the store (migrating it, creating the key set on first start) and close it."""
    state = await AuthState.open(settings)
    await state.close()


def serve_command(
    store: str | None = StoreOption,
    host: str | None = typer.Option(None, "--host", help="Address to listen on (127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Port to listen on (8000)."),
    issuer: str | None = typer.Option(
        None, "--issuer", help="The iss of issued tokens and base of the metadata URLs."
    ),
    config: Path | None = ConfigOption,
    dev: bool | None = typer.Option(
        None, "--dev/--no-dev", help="Development mode: non-Secure cookies for plain HTTP."
    ),
    log_level: str | None = typer.Option(None, "--log-level", help="DEBUG, INFO, WARNING, ERROR."),
    workers: int = typer.Option(
        1, "--workers", min=1, max=MAX_WORKERS,
        help="Worker processes sharing the store (and its revocation bus).",
    ),
) -> None:
    """Run the authstate HTTP service (API, pages, metrics)."""
    import uvicorn

    from authstate.web.app import WORKER_SETTINGS, create_app

    try:
        settings = load_settings(config, store=store, host=host, port=port, issuer=issuer,
                                 dev=dev, log_level=log_level)
    except ConfigurationError as error:
        raise fail(error.message, EXIT_USAGE) from None
    configure_logging(settings.log_level)
    if workers > 1 and settings.store.split("://", 1)[0].lower() == "memory":
        raise fail(
            "--workers needs a shared store: each worker would have its own memory:// "
            "store (use sqlite:///…, redis://… or postgresql://…)",
            EXIT_USAGE,
        )
    try:
        asyncio.run(_preflight(settings))
    except AuthstateError as error:
        raise fail(f"cannot open the store {redact_url(settings.store)}: {error.message}") \
            from None
    if settings.dev:
        logger.warning(DEV_WARNING)
    loop, http = server_implementations()
    logger.info(
        "authstate serving on %s (store %s, issuer %s, %d worker%s, event loop %s, http %s)",
        f"{settings.host}:{settings.port}", redact_url(settings.store), settings.issuer,
        workers, "" if workers == 1 else "s", loop, http,
    )
    app: Any = create_app(settings=settings)
    if workers > 1:
        # uvicorn starts workers from an import string; they read the resolved settings
        os.environ[WORKER_SETTINGS] = settings.model_dump_json()
        app = "authstate.web.app:worker_app"
    uvicorn.run(
        app,
        factory=workers > 1,
        workers=workers,
        loop=loop,
        http=http,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level.lower(),
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        server_header=False,
    )
