"""``authstate bench``: sessions, JWTs and opaque tokens measured side by side, here.

The bench serves the models over HTTP, so it needs the ``server`` extra; its modules are
imported when the command runs, so that the other commands work on the core install.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from authstate.cli.runner import console, err_console, fail, run
from authstate.config import load_settings
from authstate.errors import InvalidInput, MissingDependencyError
from authstate.extras import require

if TYPE_CHECKING:
    from authstate.bench.runner import BenchResult

# authstate.bench.plan.ALGORITHMS (which imports the server), kept equal by a test
ALGORITHMS_DEFAULT = "EdDSA,ES256,RS256,HS256"

TABLE_WIDTH = 150


class _Bar:
    """The runner's progress, drawn as a Rich bar on stderr."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("starting", total=None)

    def begin(self, total: int) -> None:
        self.progress.update(self.task, total=total, completed=0)

    def step(self, label: str) -> None:
        self.progress.update(self.task, advance=1, description=label)


def bench_command(
    store: list[str] = typer.Option(  # noqa: B008 - Typer's way
        [],
        "--store",
        metavar="URL",
        help="Store URL to measure sessions, denylist and opaque tokens on (repeatable). "
        "Default: memory:// and a scratch SQLite file. Redis and PostgreSQL get a private "
        "namespace, dropped afterwards; a SQLite file given here is written to (keys, a "
        "client, test sessions), so give a scratch one.",
        show_default=False,
    ),
    algorithms: str = typer.Option(
        ALGORITHMS_DEFAULT, "--algorithms", metavar="ALGS",
        help="JWT algorithms, comma-separated.",
    ),
    duration: str = typer.Option(
        "5s", "--duration", metavar="DURATION",
        help="Measured time per model, in process and over HTTP each.",
    ),
    concurrency: int = typer.Option(
        8, "--concurrency", min=1, max=64, help="HTTP client connections (loopback)."
    ),
    out: Path | None = typer.Option(  # noqa: B008 - Typer's way
        None, "--out", help="Write results.json and results.png into this directory."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="A short run (under 30 s on two cores); overrides --duration."
    ),
    no_http: bool = typer.Option(False, "--no-http", help="Measure in process only."),
) -> None:
    """Measure every authentication model on this machine: cost per request (in process
    and over HTTP), bytes on the wire, revocation delay and server state per user."""
    try:
        require("server")
    except MissingDependencyError as error:
        raise fail(error.message) from None
    from authstate.bench.plan import BenchConfig, parse_algorithms, parse_duration
    from authstate.bench.report import table, write_json
    from authstate.bench.runner import run_bench

    try:
        config = BenchConfig(
            stores=tuple(store),
            algorithms=parse_algorithms(algorithms),
            duration=parse_duration(duration),
            concurrency=concurrency,
            http=not no_http,
        )
    except InvalidInput as error:
        raise fail(str(error), 2) from None
    if quick:
        config = config.as_quick()
    settings = load_settings(env=os.environ)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        try:
            result: BenchResult = run(run_bench(config, settings, tracker=_Bar(progress)))
        except (RuntimeError, OSError) as error:  # the server process died, a model lied
            raise fail(f"bench failed: {error}") from None
    # piped or captured output is 80 columns by default, too narrow for eight columns
    wide = console if console.is_terminal else Console(width=TABLE_WIDTH)
    wide.print(table(result))
    for name, reason in result.skipped.items():
        console.print(f"[yellow]skipped[/yellow] {name}: {reason}", highlight=False)
    console.print(f"finished in {result.elapsed_s:.1f} s", highlight=False)
    if out is None:
        return
    write_json(result, out / "results.json")
    console.print(f"wrote {out / 'results.json'}", highlight=False)
    try:
        from authstate.bench.chart import draw

        draw(result, out / "results.png")
        console.print(f"wrote {out / 'results.png'}", highlight=False)
    except MissingDependencyError:
        err_console.print(
            "results.png needs matplotlib: pip install 'authstate[bench]'", highlight=False,
            markup=False,
        )
