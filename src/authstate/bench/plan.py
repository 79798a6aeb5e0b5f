"""What one bench run measures: its options, and the list of models they expand to."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from authstate.bench.models import ModelSpec
from authstate.errors import InvalidInput

ALGORITHMS = ("EdDSA", "ES256", "RS256", "HS256")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """``duration`` is the measured time per model and per mode (in process, HTTP), split
    over ``rounds``; the warm-up is a fixed number of calls so that runs compare."""

    stores: tuple[str, ...]
    algorithms: tuple[str, ...] = ALGORITHMS
    duration: float = 5.0
    rounds: int = 5
    warmup: int = 500
    http_warmup: float = 0.3
    concurrency: int = 8
    revocation_samples: int = 20
    http: bool = True
    quick: bool = False

    def as_quick(self) -> BenchConfig:
        """Small enough to finish in under 30 s on two cores, still interleaved."""
        return replace(
            self,
            duration=0.45,
            rounds=3,
            warmup=100,
            http_warmup=0.1,
            concurrency=min(self.concurrency, 4),
            revocation_samples=5,
            quick=True,
        )

    @property
    def slice_seconds(self) -> float:
        return self.duration / self.rounds


def parse_duration(text: str) -> float:
    """``10s``, ``500ms``, ``1m`` or plain seconds."""
    match = DURATION.match(text)
    if match is None:
        raise InvalidInput(f"not a duration: {text!r} (try 10s, 500ms, 1m)")
    value = float(match.group(1))
    unit = match.group(2) or "s"
    seconds = value / 1000 if unit == "ms" else value * 60 if unit == "m" else value
    if not 0.01 <= seconds <= 3600:
        raise InvalidInput("duration must be between 10ms and 1h")
    return seconds


def parse_algorithms(text: str) -> tuple[str, ...]:
    wanted = tuple(a.strip() for a in text.split(",") if a.strip())
    unknown = [a for a in wanted if a not in ALGORITHMS]
    if unknown or not wanted:
        raise InvalidInput(
            f"unknown algorithm(s) {', '.join(unknown) or '(none)'}; choose from "
            + ",".join(ALGORITHMS)
        )
    return wanted


BUS_SCHEMES = ("redis", "rediss", "unix", "postgresql", "postgres")
SCHEME_LABELS = {"postgres": "postgresql", "rediss": "redis", "unix": "redis"}


def store_labels(urls: tuple[str, ...]) -> list[str]:
    """Short names for store URLs in model names (the scheme, never a password), made
    unique when two stores share a scheme."""
    labels: list[str] = []
    for url in urls:
        scheme = url.split("://", 1)[0].lower()
        label = SCHEME_LABELS.get(scheme, scheme)
        labels.append(label if label not in labels else f"{label}{len(labels) + 1}")
    return labels


def model_specs(config: BenchConfig) -> list[ModelSpec]:
    """Every model of the run, in a fixed order (the runner interleaves it per round).

    Store-bound models run on each given store; signature-only JWT models on a memory
    store of their own (they never read it); push revocation on the first store that has
    a bus between processes (Redis, PostgreSQL), else in process on the memory bus;
    introspection at a service on the last store."""
    specs: list[ModelSpec] = []
    stores = config.stores
    labels = store_labels(stores)
    main_alg = config.algorithms[0]
    for url, label in zip(stores, labels, strict=True):
        specs.append(ModelSpec(f"session/{label}", "session", url))
    for alg in config.algorithms:
        specs.append(ModelSpec(f"jwt/{alg}", "jwt", "memory://", alg))
    specs.append(ModelSpec(f"jwt+cache/{main_alg}", "jwt+cache", "memory://", main_alg))
    for url, label in zip(stores, labels, strict=True):
        specs.append(ModelSpec(f"jwt+denylist/{label}", "jwt+denylist", url, main_alg))
    bus_store = next((u for u in stores if u.split("://")[0].lower() in BUS_SCHEMES), None)
    push_label = labels[stores.index(bus_store)] if bus_store else "memory"
    specs.append(
        ModelSpec(f"jwt+push/{push_label}", "jwt+push", bus_store or "memory://", main_alg)
    )
    for url, label in zip(stores, labels, strict=True):
        specs.append(ModelSpec(f"opaque/{label}", "opaque", url))
    specs.append(
        ModelSpec(
            f"opaque+introspection/{labels[-1]}", "opaque+introspection", stores[-1], main_alg
        )
    )
    return specs
