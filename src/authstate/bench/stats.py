"""Summaries of timing samples: medians with their spread, never a single lucky run."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Figures:
    """Latency (µs) over every sample, and throughput as the median of the per-round
    rates with their spread (max - min over the median, in percent)."""

    median_us: float
    p99_us: float
    throughput_rps: float
    spread_pct: float
    samples: int
    rounds: int


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return float(ordered[rank])


def summarise(latencies_ns: Sequence[int], rates: Sequence[float]) -> Figures:
    ordered = sorted(latencies_ns)
    rate = statistics.median(rates) if rates else 0.0
    spread = (max(rates) - min(rates)) / rate * 100 if rates and rate > 0 else 0.0
    return Figures(
        median_us=round(percentile(ordered, 0.5) / 1000, 2),
        p99_us=round(percentile(ordered, 0.99) / 1000, 2),
        throughput_rps=round(rate, 1),
        spread_pct=round(spread, 1),
        samples=len(ordered),
        rounds=len(rates),
    )


@dataclass(frozen=True, slots=True)
class Delays:
    """Revocation delay in seconds: from "revoke" returning to the first rejection."""

    kind: str
    median_s: float
    p99_s: float
    max_s: float
    samples: int
    note: str
    push_arrival_median_us: float | None = None
    push_arrival_max_us: float | None = None


def summarise_delays(
    kind: str, delays: Sequence[float], note: str, arrivals_s: Sequence[float] = ()
) -> Delays:
    """``arrivals_s``: when a pushed revocation reached the second verifier, relative to
    "revoke" returning (negative: before it returned)."""
    ordered = sorted(delays)
    arrived = sorted(arrivals_s)
    return Delays(
        kind=kind,
        median_s=round(percentile(ordered, 0.5), 6),
        p99_s=round(percentile(ordered, 0.99), 6),
        max_s=round(ordered[-1], 6) if ordered else 0.0,
        samples=len(ordered),
        note=note,
        push_arrival_median_us=round(percentile(arrived, 0.5) * 1e6, 1) if arrived else None,
        push_arrival_max_us=round(arrived[-1] * 1e6, 1) if arrived else None,
    )
