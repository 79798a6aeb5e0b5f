"""The ``authstate`` command: one Typer app, one module per command group."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="authstate",
    help="Authentication state done right: sessions, JWTs and the hybrid.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def main() -> None:
    app()


def _register() -> None:
    from authstate.cli import sessions

    app.add_typer(sessions.app, name="sessions")


_register()
