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
    from authstate.cli import audit, bench, cleanup, sessions
    from authstate.cli import clients as clients_cli
    from authstate.cli import inspect as inspect_cli
    from authstate.cli import keys as keys_cli
    from authstate.cli import serve as serve_cli
    from authstate.cli import users as users_cli

    app.command("serve")(serve_cli.serve_command)
    app.add_typer(users_cli.app, name="users")
    app.add_typer(clients_cli.app, name="clients")
    app.add_typer(sessions.app, name="sessions")
    app.command("audit")(audit.audit_command)
    app.command("cleanup")(cleanup.cleanup_command)
    app.command("bench")(bench.bench_command)
    app.add_typer(keys_cli.app, name="keys")
    app.command("inspect", cls=inspect_cli.InspectCommand)(inspect_cli.inspect_command)


_register()
