"""``authstate serve``: run the HTTP service with uvicorn.

With no arguments: the SQLite store ``./authstate.db``, a signing key generated on first
start (RS256 unless ``AUTHSTATE_KEY_ALGORITHM`` says otherwise), 127.0.0.1:8000, and
production cookies (``Secure``, ``__Host-``). Development mode, which sends cookies without
``Secure`` so they work over plain HTTP on localhost, is only ever asked for (``--dev``,
``AUTHSTATE_DEV=true``; ``python3 run.py serve`` passes ``--dev`` and says so), and warned
about. Flags beat ``AUTHSTATE_*`` variables, which beat the ``--config`` TOML file, which
beats the defaults; this module and the CLI are the only readers of either.

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
import contextlib
import importlib.util
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from authstate import config as config_module
from authstate.cli.runner import EXIT_USAGE, StoreOption, fail
from authstate.config import Settings
from authstate.errors import AuthstateError, ConfigurationError, MissingDependencyError
from authstate.extras import require
from authstate.logs import configure_logging
from authstate.state import AuthState
from authstate.stores import redact_url

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger("authstate.serve")

ConfigOption = typer.Option(
    None, "--config", help="A TOML file of settings (keys as in AUTHSTATE_*, lower case)."
)
PLAIN_KEYS_WARNING = (
    "private signing keys are stored unencrypted in the store; set "
    "AUTHSTATE_KEY_ENCRYPTION_KEY or AUTHSTATE_KEY_ENCRYPTION_KEY_FILE (make one with "
    "`authstate keys generate-kek`, then run `authstate keys rewrap`) to seal them at rest"
)
MAX_WORKERS = 64
DEV_WARNING = (
    "development mode: the session cookie is sent without Secure and without the "
    "__Host- prefix so that it works over plain HTTP; never use it behind a public "
    "address (leave out --dev and AUTHSTATE_DEV in production)"
)
METRICS_OPEN_WARNING = (
    "GET /metrics is open to anyone who can reach this service (login failure rates, "
    "refresh reuse detections): set AUTHSTATE_METRICS_TOKEN and give it to the scraper, "
    "serve it on an internal AUTHSTATE_METRICS_ADDRESS, or set AUTHSTATE_METRICS=false"
)
# Addresses that listen on every interface: not a separation from the public network.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - compared, never bound


def start_warnings(settings: Settings) -> list[str]:
    """What an operator should hear at start about settings that work but expose
    something. In development mode the metrics warning is left out: the dev warning
    already says the service is not for exposure."""
    warnings = []
    tokens = settings.tokens
    if tokens.key_encryption_key is None and tokens.key_encryption_key_file is None:
        warnings.append(PLAIN_KEYS_WARNING)
    if settings.service.dev:
        return [DEV_WARNING, *warnings]
    listen = settings.service.metrics_listen()
    internal = listen is not None and listen[0] not in WILDCARD_HOSTS
    if settings.service.metrics and settings.service.metrics_token is None and not internal:
        warnings.append(METRICS_OPEN_WARNING)
    return warnings


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
    values = config_module.read_values(
        config, env=os.environ, store=store, host=host, port=port, issuer=issuer, dev=dev,
        log_level=log_level.upper() if log_level else None,
    )
    settings = Settings.from_flat(**values)
    if "issuer" not in values:
        service = settings.service
        shown = f"[{service.host}]" if ":" in service.host else service.host
        scheme = "http" if service.dev else "https"
        settings = settings.replace(issuer=f"{scheme}://{shown}:{service.port}")
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
        None, "--dev/--no-dev",
        help="Development mode: non-Secure cookies for plain HTTP (off unless asked for)."
    ),
    log_level: str | None = typer.Option(None, "--log-level", help="DEBUG, INFO, WARNING, ERROR."),
    workers: int = typer.Option(
        1, "--workers", min=1, max=MAX_WORKERS,
        help="Worker processes sharing the store (and its revocation bus).",
    ),
) -> None:
    """Run the authstate HTTP service (API, pages, metrics)."""
    try:
        require("server")
    except MissingDependencyError as error:
        raise fail(error.message) from None
    import uvicorn

    from authstate.web.app import WORKER_SETTINGS, create_app, create_metrics_app

    try:
        settings = load_settings(config, store=store, host=host, port=port, issuer=issuer,
                                 dev=dev, log_level=log_level)
    except ConfigurationError as error:
        raise fail(error.message, EXIT_USAGE) from None
    configure_logging(settings.service.log_level)
    if workers > 1 and settings.store.url.split("://", 1)[0].lower() == "memory":
        raise fail(
            "--workers needs a shared store: each worker would have its own memory:// "
            "store (use sqlite:///…, redis://… or postgresql://…)",
            EXIT_USAGE,
        )
    if workers > 1 and settings.service.metrics_listen() is not None:
        raise fail(
            "--workers and AUTHSTATE_METRICS_ADDRESS do not go together: each worker "
            "would need its own metrics port; protect /metrics with AUTHSTATE_METRICS_TOKEN",
            EXIT_USAGE,
        )
    try:
        asyncio.run(_preflight(settings))
    except AuthstateError as error:
        raise fail(f"cannot open the store {redact_url(settings.store.url)}: {error.message}") \
            from None
    for warning in start_warnings(settings):
        logger.warning(warning)
    loop, http = server_implementations()
    logger.info(
        "authstate serving on %s (store %s, issuer %s, %d worker%s, event loop %s, http %s)",
        f"{settings.service.host}:{settings.service.port}", redact_url(settings.store.url),
        settings.tokens.issuer, workers, "" if workers == 1 else "s", loop, http,
    )
    app = create_app(settings=settings)
    options: dict[str, Any] = {
        "log_config": None,
        "log_level": settings.service.log_level.lower(),
        "server_header": False,
        "loop": loop,
        "http": http,
    }
    metrics_listen = settings.service.metrics_listen()
    if metrics_listen is None:
        target: Any = app
        if workers > 1:
            # uvicorn starts workers from an import string; they read the resolved
            # settings (secrets included) from the environment it passes down
            os.environ[WORKER_SETTINGS] = settings.to_json()
            target = "authstate.web.app:worker_app"
        uvicorn.run(
            target,
            factory=workers > 1,
            workers=workers,
            host=settings.service.host,
            port=settings.service.port,
            proxy_headers=bool(settings.service.forwarded_allow_ips),
            forwarded_allow_ips=settings.service.forwarded_allow_ips or None,
            **options,
        )
        return
    main = uvicorn.Server(uvicorn.Config(
        app, host=settings.service.host, port=settings.service.port,
        proxy_headers=bool(settings.service.forwarded_allow_ips),
        forwarded_allow_ips=settings.service.forwarded_allow_ips or None, **options,
    ))
    metrics_host, metrics_port = metrics_listen
    side = _signal_free_server(uvicorn.Config(
        create_metrics_app(app), host=metrics_host, port=metrics_port, lifespan="off",
        access_log=False, **options,
    ))
    logger.info("authstate metrics on %s only", settings.service.metrics_address)
    # uvicorn re-raises the SIGINT it shut down on; uvicorn.run swallows it the same way
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_with_metrics(main, side))


async def _serve_with_metrics(main: uvicorn.Server, side: uvicorn.Server) -> None:
    """Both listeners in one loop; the main server owns the signals and the state's
    lifespan, and the metrics listener stops when it does."""
    side_task = asyncio.create_task(side.serve())
    try:
        await main.serve()
    finally:
        side.should_exit = True
        await side_task


def _signal_free_server(config: uvicorn.Config) -> uvicorn.Server:
    """A uvicorn server that leaves SIGINT/SIGTERM to the main one (two servers each
    installing handlers would take turns receiving them). uvicorn is imported only
    when serving, like everywhere in this module."""
    import uvicorn

    class SignalFree(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return SignalFree(config)
