"""A per-process copy of store records that the revocation bus keeps honest.

Two records are read on almost every cookie request: the session and its user. Reading
both from a networked store costs more than the rest of the request (issue 15: a Redis
session took 37 % of an unauthenticated route's throughput, most of it the asyncio round
trip). ``UserCache`` and ``SessionCache`` keep a copy in the process, under one set of
rules that keeps the promise that a change applies at the next request everywhere:

- a copy is used only while push revocation is live (``Revocations.local``: bus connected
  and resynchronised); otherwise (SQLite, no bus, bus down) every request reads the store;
- every change to a cached record announces an event on the revocation bus, applied in
  the process that made the change before the call returns, and in every other within the
  push delay (7-10 ms p99 measured under load); the event drops the entry;
- a resync of the revocation copy (after each reconnection, and every minute) empties the
  cache: events missed while the bus was down cannot leave a stale entry behind;
- a read that raced an invalidation is not kept: an entry is stored only if no event
  arrived and no resync ran while the store was being read (``epoch``), so a request that
  read a record just before a change cannot put the old record back after the change's
  event removed it;
- ``ttl`` bounds an entry's age in any case, a safety net for an event whose publish
  failed; ``size`` bounds its memory (oldest entry out first).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from authstate.bus.base import JSON
from authstate.clock import Clock

V = TypeVar("V")


class Events(Protocol):
    """What a cache needs of ``revocation.Revocations`` (named structurally, so that the
    caches and the modules they serve do not import the revocation machinery)."""

    local: bool
    resyncs: int
    on_event: list[Callable[[JSON], None]]

    def announce_session_changed(self, key: str, *, wait: bool = ...) -> Awaitable[None]: ...


TTL_MAX = 300.0
Epoch = tuple[int, int]


class BusCache(Generic[V]):
    """Entries by key, dropped by the events whose type is in ``events`` and whose
    ``field`` names the key (an event of that type naming nothing clears everything)."""

    def __init__(
        self, revocation: Events, *, clock: Clock, ttl: float, size: int,
        events: frozenset[str], field: str,
    ) -> None:
        if not 0 <= ttl <= TTL_MAX:
            raise ValueError(f"ttl must be between 0 and {TTL_MAX}")
        self.revocation = revocation
        self.clock = clock
        self.ttl = ttl
        self.size = size
        self.events = events
        self.field = field
        self.hits = 0
        self._entries: dict[str, tuple[float, V]] = {}
        self._changes = 0
        self._resyncs = revocation.resyncs
        revocation.on_event.append(self._on_event)

    @property
    def usable(self) -> bool:
        """Whether a copy may be trusted now; a resync since the last call empties it.
        Cheap enough for every request: two attribute reads and a comparison."""
        revocation = self.revocation
        if not self.ttl or not revocation.local:
            return False
        if revocation.resyncs != self._resyncs:
            self._entries.clear()
            self._resyncs = revocation.resyncs
        return True

    def peek(self, key: str) -> tuple[float, V] | None:
        """The entry (stored at, value) if it is younger than ``ttl``; callers check
        ``usable`` first. Safe from another thread: only single dictionary operations."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self.clock.now() - entry[0] < self.ttl:
            self.hits += 1
            return entry
        self._entries.pop(key, None)
        return None

    def epoch(self) -> Epoch:
        """Taken before a store read, handed to ``keep`` after it."""
        return self._changes, self.revocation.resyncs

    def keep(self, key: str, value: V, epoch: Epoch, *, at: float | None = None) -> None:
        """Store what a read found, unless an event or a resync came in meanwhile."""
        if self.epoch() != epoch or not self.usable:  # usable: a resync since empties it
            return
        if len(self._entries) >= self.size:
            self._entries.pop(next(iter(self._entries)), None)
        self._entries[key] = (self.clock.now() if at is None else at, value)

    def forget(self, key: str) -> None:
        """Drop one entry; a read in flight for anything will not be kept."""
        self._changes += 1
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._changes += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _on_event(self, event: JSON) -> None:
        if event.get("t") in self.events:
            key = event.get(self.field)
            if isinstance(key, str):
                self.forget(key)
            else:  # a malformed event names nothing: trust nothing
                self.clear()
