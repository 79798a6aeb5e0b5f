"""``authstate bench``: every authentication model measured side by side on this machine.

``run_bench(BenchConfig(...), settings)`` returns a ``BenchResult``; the CLI draws the
progress bar, prints the table and writes ``results.json`` and ``results.png``.
"""

from __future__ import annotations

from authstate.bench.plan import BenchConfig
from authstate.bench.runner import BenchResult, run_bench

__all__ = ["BenchConfig", "BenchResult", "run_bench"]
