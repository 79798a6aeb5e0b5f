"""How every CLI command runs: settings from flags and environment, one AuthState, and
errors as one line on stderr with a stable exit status instead of a traceback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from authstate.audit import bind_origin
from authstate.config import load_settings
from authstate.errors import AuthstateError
from authstate.state import AuthState

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

console = Console()
err_console = Console(stderr=True)

StoreOption = typer.Option(
    None,
    "--store",
    help="Store URL (default: AUTHSTATE_STORE, else sqlite:///authstate.db).",
    show_default=False,
)
JsonOption = typer.Option(False, "--json", help="Print JSON for machines.")


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    # escaped: a message is text, and "pip install 'authstate[redis]'" is not Rich markup
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def run(coro: Awaitable[T]) -> T:
    """Run a coroutine; an ``AuthstateError`` becomes a one-line error and exit 1."""
    try:
        return asyncio.run(_wrap(coro))
    except AuthstateError as error:
        raise fail(error.message) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def _wrap(coro: Awaitable[T]) -> T:
    bind_origin(actor="cli")  # audit events name the command line; gone with this task
    return await coro


async def with_state(
    store: str | None, action: Callable[[AuthState], Awaitable[T]], **overrides: Any
) -> T:
    """Open an AuthState on ``store`` (or the configured one), run ``action``, close."""
    settings = load_settings(env=os.environ, store=store, **overrides)
    state = await AuthState.open(settings)
    try:
        return await action(state)
    finally:
        await state.close()


def iso(ts: float | None) -> str:
    """A timestamp as every command prints it (UTC, to the second); "" for none."""
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
