"""The run as people read it (a Rich table) and as machines read it (``results.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from rich import box
from rich.table import Table

from authstate.bench.runner import BenchResult, ModelResult


def _num(value: float) -> str:
    """Three significant figures at most: 5.43, 114, 1.5k, 18k."""
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _delay(m: ModelResult) -> str:
    r = m.revocation
    if r.kind == "lifetime":
        return f"≤ {r.max_s:.0f} s (exp)"
    if r.samples == 0:
        return "not measured"
    if r.push_arrival_median_us is not None:
        prefix = "0" if r.max_s == 0 else f"{r.median_s * 1000:.2g} ms"
        return f"{prefix} (bus {r.push_arrival_median_us:+.0f} µs)"
    if r.max_s == 0:
        return "0 (next req)"
    return f"{r.median_s * 1000:.2g} ms (p99 {r.p99_s * 1000:.2g})"


def _permission(m: ModelResult) -> str:
    r = m.permission
    if r.kind == "lifetime":
        return f"token lifetime ({r.max_s:.0f} s)"
    if r.samples == 0:
        return "not measured"
    if r.max_s == 0:
        return "0 (next req)"
    return f"{r.median_s * 1000:.2g} ms (p99 {r.p99_s * 1000:.2g})"


def _state(m: ModelResult) -> str:
    s = m.state
    if s.bytes_per_revoked:
        return f"{s.bytes_per_user} (+{s.bytes_per_revoked}/revoked)"
    return str(s.bytes_per_user)


def table(result: BenchResult) -> Table:
    machine = result.machine
    config = result.config
    title = (
        f"authstate bench — {machine['cpu_model']}, {machine['cores']} cores, Python "
        f"{machine['python']}; {config['rounds']} rounds, HTTP with "
        f"{config['concurrency']} connections over loopback"
    )
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    t.add_column("model", no_wrap=True)
    t.add_column("in process µs\nmedian (p99)", justify="right", no_wrap=True)
    t.add_column("auth/s\n± spread", justify="right", no_wrap=True)
    t.add_column("HTTP µs\nmedian (p99)", justify="right", no_wrap=True)
    t.add_column("HTTP req/s\n± spread", justify="right", no_wrap=True)
    t.add_column("credential B\n(KB/1k req)", justify="right", no_wrap=True)
    t.add_column("revocation\ndelay", justify="right", no_wrap=True)
    t.add_column("permission change\n→ refused", justify="right", no_wrap=True)
    t.add_column("state B\nper user", justify="right", no_wrap=True)
    for m in result.models:
        p, h = m.in_process, m.http
        t.add_row(
            m.name,
            f"{_num(p.median_us)} ({_num(p.p99_us)})",
            f"{_num(p.throughput_rps)} ±{p.spread_pct:.0f}%",
            f"{_num(h.median_us)} ({_num(h.p99_us)})" if h else "—",
            f"{_num(h.throughput_rps)} ±{h.spread_pct:.0f}%" if h else "—",
            f"{m.wire.bytes} ({m.wire.per_1000_requests / 1000:.0f})",
            _delay(m),
            _permission(m),
            _state(m),
        )
    return t


def write_json(result: BenchResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n")
