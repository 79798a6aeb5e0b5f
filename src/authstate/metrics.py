"""Prometheus metrics for one ``AuthState``, in its own registry.

Each ``Metrics`` owns a ``CollectorRegistry``, so two AuthStates (two tests, two apps in
one process) never share or double-register a counter, and nothing global needs a reset.
Most counters move because the audit log reports every event here (``observe_event``):
whatever is audited is counted, by the same code path. What is not an event is reported
directly: verify latency, store errors, revocation-bus lag, cleanup work, and the
active-session gauge, which is read from the store when scraped (at most once per
``gauge_ttl`` seconds) because no single process sees every session end.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from authstate.errors import StoreError

if TYPE_CHECKING:
    from authstate.audit import AuditEvent
    from authstate.stores.base import Store

LOGIN_OUTCOMES = ("succeeded", "failed", "throttled")
REVOCATION_KINDS = ("session", "token", "family", "user")
TOKEN_KINDS = ("access", "refresh", "opaque")
VERIFY_METHODS = ("session", "jwt", "opaque")
THROTTLE_SCOPES = ("account", "ip", "other")
# Verify is tens of microseconds for a JWT, a network round trip for a store read.
VERIFY_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.25)
BUS_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0)
SESSION_SCAN_CAP = 10_000


P = ParamSpec("P")
T = TypeVar("T")


class _HasMetrics(Protocol):
    metrics: Metrics | None


S = TypeVar("S", bound=_HasMetrics)
Method = Callable[Concatenate[S, P], Coroutine[Any, Any, T]]


def timed_verify(default: str) -> Callable[[Method[S, P, T]], Method[S, P, T]]:
    """Time an authenticate method of an object with a ``metrics`` attribute, labelled
    with the method of the identity it returns (``default`` when it fails). Nothing is
    measured when metrics are off."""

    def decorate(fn: Method[S, P, T]) -> Method[S, P, T]:
        @functools.wraps(fn)
        async def timed(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
            metrics = self.metrics
            if metrics is None:
                return await fn(self, *args, **kwargs)
            start = time.perf_counter()
            method = default
            try:
                result = await fn(self, *args, **kwargs)
                method = getattr(result, "method", default)
                return result
            finally:
                metrics.observe_verify(method, time.perf_counter() - start)

        return timed

    return decorate


def _label(value: Any, allowed: tuple[str, ...], default: str) -> str:
    """Labels come from a fixed set, so a caller cannot blow up the series count."""
    return value if isinstance(value, str) and value in allowed else default


class Metrics:
    """The service's counters, gauges and histograms; see the module docstring."""

    def __init__(self, *, gauge_ttl: float = 15.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.logins = Counter(
            "authstate_logins", "Login attempts by outcome.", ["outcome"], registry=r
        )
        self.sessions_active = Gauge(
            "authstate_sessions_active", "Live sessions in the store (read at scrape).",
            registry=r,
        )
        self.sessions_created = Counter(
            "authstate_sessions_created", "Sessions created.", registry=r
        )
        self.tokens_issued = Counter(
            "authstate_tokens_issued", "Tokens issued, by kind.", ["kind"], registry=r
        )
        self.refresh_rotations = Counter(
            "authstate_refresh_rotations", "Refresh tokens rotated.", registry=r
        )
        self.reuse_detections = Counter(
            "authstate_refresh_reuse_detections",
            "Spent refresh tokens presented again (family revoked).", registry=r,
        )
        self.revocations = Counter(
            "authstate_revocations", "Revocations, by what was revoked.", ["kind"], registry=r
        )
        self.throttle_trips = Counter(
            "authstate_throttle_trips", "Login throttles tripped, by scope.", ["scope"],
            registry=r,
        )
        self.key_events = Counter(
            "authstate_key_events", "Signing key lifecycle events.", ["event"], registry=r
        )
        self.audit_events = Counter(
            "authstate_audit_events", "Audit events recorded, by type.", ["type"], registry=r
        )
        self.verify_seconds = Histogram(
            "authstate_verify_seconds", "Time to authenticate one credential, by method.",
            ["method"], buckets=VERIFY_BUCKETS, registry=r,
        )
        self.store_errors = Counter(
            "authstate_store_errors", "Store operations that failed, by operation.",
            ["operation"], registry=r,
        )
        self.bus_lag_seconds = Histogram(
            "authstate_bus_lag_seconds",
            "Delay between a revocation and this process hearing of it.",
            buckets=BUS_LAG_BUCKETS, registry=r,
        )
        self.cleanup_removed = Counter(
            "authstate_cleanup_removed", "Expired records and old audit events removed.",
            ["what"], registry=r,
        )
        for outcome in LOGIN_OUTCOMES:
            self.logins.labels(outcome)
        for kind in REVOCATION_KINDS:
            self.revocations.labels(kind)
        for kind in TOKEN_KINDS:
            self.tokens_issued.labels(kind)
        # resolved once: ``labels()`` costs a lock and a lookup on the per-request path
        self._verify_by_method = {m: self.verify_seconds.labels(m) for m in VERIFY_METHODS}
        for what in ("records", "audit_events"):
            self.cleanup_removed.labels(what)
        self.gauge_ttl = gauge_ttl
        self._gauge_read_at = float("-inf")

    def observe_event(self, event: AuditEvent) -> None:
        """Count one audit event in the metric it belongs to."""
        self.audit_events.labels(event.type).inc()
        detail = event.detail
        match event.type:
            case "login_succeeded":
                self.logins.labels("succeeded").inc()
            case "login_failed":
                self.logins.labels("failed").inc()
            case "throttle_tripped":
                self.logins.labels("throttled").inc()
                self.throttle_trips.labels(
                    _label(detail.get("scope"), THROTTLE_SCOPES, "other")
                ).inc()
            case "session_created":
                self.sessions_created.inc()
            case "access_token_issued":
                self.tokens_issued.labels(_label(detail.get("kind"), TOKEN_KINDS, "access")).inc()
            case "refresh_rotated":
                self.refresh_rotations.inc()
                self.tokens_issued.labels("refresh").inc()
            case "refresh_reuse_detected":
                self.reuse_detections.inc()
                self.revocations.labels("family").inc()
            case "session_revoked":
                self.revocations.labels("session").inc()
            case "token_revoked":
                self.revocations.labels("token").inc()
            case "user_version_bumped":
                self.revocations.labels("user").inc()
            case "key_generated" | "key_rotated" | "key_retired":
                self.key_events.labels(event.type.removeprefix("key_")).inc()
            case _:
                pass

    def observe_verify(self, method: str, seconds: float) -> None:
        child = self._verify_by_method.get(method) or self._verify_by_method["jwt"]
        child.observe(seconds)

    def store_error(self, operation: str) -> None:
        self.store_errors.labels(operation[:32]).inc()

    def store_error_hook(self, operation: str) -> Callable[[BaseException], None]:
        """A callback counting failures of ``operation`` (for ``OutageLog``)."""
        return lambda _error: self.store_error(operation)

    def observe_bus_lag(self, seconds: float) -> None:
        """How long after the revocation this process heard of it (clock skew clamps
        to zero)."""
        self.bus_lag_seconds.observe(max(0.0, seconds))

    def observe_cleanup(self, *, records: int, audit_events: int) -> None:
        self.cleanup_removed.labels("records").inc(records)
        self.cleanup_removed.labels("audit_events").inc(audit_events)

    async def refresh_gauges(self, store: Store, *, force: bool = False) -> None:
        """Re-read the active-session count, unless it was read under ``gauge_ttl``
        seconds ago. A backend with a ``count(kind)`` method answers it cheaply; others
        are scanned up to ``SESSION_SCAN_CAP`` (the gauge then reads as that cap)."""
        now = time.monotonic()
        if not force and now - self._gauge_read_at < self.gauge_ttl:
            return
        self._gauge_read_at = now
        count = getattr(store, "count", None)
        try:
            if callable(count):
                n = int(await count("session"))
            else:
                n = len(await store.scan("session", limit=SESSION_SCAN_CAP))
        except StoreError:
            self.store_error("count")
            return
        self.sessions_active.set(n)

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
