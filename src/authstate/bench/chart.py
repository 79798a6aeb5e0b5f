"""``results.png``: latency and bytes per model, side by side, from a finished run.

matplotlib is optional (the ``bench`` extra) and imported only here, with the Agg
backend so that no display is needed.
"""

from __future__ import annotations

from pathlib import Path

from authstate.bench.runner import BenchResult
from authstate.errors import MissingDependencyError


def draw(result: BenchResult, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise MissingDependencyError("matplotlib", "bench") from error

    models = result.models
    names = [m.name for m in models]
    rows = range(len(models))
    fig, (lat, http, wire) = plt.subplots(
        1, 3, figsize=(15, 0.45 * len(models) + 2.2), sharey=True
    )
    lat.barh(rows, [m.in_process.median_us for m in models], color="#4c72b0", label="median")
    lat.errorbar(
        [m.in_process.p99_us for m in models], rows, fmt="|", color="#222222",
        markersize=10, label="p99",
    )
    lat.set_xscale("log")
    lat.set_xlabel("in-process authentication (µs, log)")
    lat.legend(loc="best", fontsize=8)
    http.barh(
        rows, [m.http.throughput_rps if m.http else 0 for m in models], color="#55a868"
    )
    http.set_xlabel(f"HTTP requests/s over loopback ({result.config['concurrency']} connections)")
    wire.barh(rows, [m.wire.bytes for m in models], color="#c44e52", label="credential")
    wire.barh(
        rows, [m.state.bytes_per_user for m in models], left=[m.wire.bytes for m in models],
        color="#dd8452", label="server state per user",
    )
    wire.set_xlabel("bytes")
    wire.legend(loc="best", fontsize=8)
    lat.set_yticks(list(rows), names)
    lat.invert_yaxis()
    machine = result.machine
    fig.suptitle(
        f"authstate bench — {machine['cpu_model']}, {machine['cores']} cores, "
        f"Python {machine['python']}",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
