"""The in-process store: a real backend for tests and single-process apps.

Each operation runs without an ``await`` inside it, so on one event loop every operation
is atomic by construction. Expired records are hidden on read and reclaimed by ``sweep``
through a heap of expiry times, so a sweep costs what expired, not what is alive.
"""

from __future__ import annotations

import copy
import heapq
import itertools
from collections import deque

from authstate.clock import Clock, SystemClock
from authstate.stores.base import (
    JSON,
    AuditRow,
    Record,
    check_kind_key,
    check_limit,
    expire_earlier,
    merge_object,
    scrub_event,
)

AUDIT_RING = 100_000


class MemoryStore:
    url_scheme = "memory"

    def __init__(self, *, clock: Clock | None = None, audit_ring: int = AUDIT_RING) -> None:
        self._clock = clock or SystemClock()
        self._records: dict[tuple[str, str], Record] = {}
        self._by_user: dict[tuple[str, str], set[str]] = {}
        self._expiry: list[tuple[float, str, str]] = []
        self._events: deque[AuditRow] = deque(maxlen=audit_ring)
        self._event_ids = itertools.count(1)

    def _live(self, kind: str, key: str) -> Record | None:
        record = self._records.get((kind, key))
        if record is None:
            return None
        if record.expires_at is not None and record.expires_at <= self._clock.now():
            self._drop(kind, key)
            return None
        return record

    def _drop(self, kind: str, key: str) -> Record | None:
        record = self._records.pop((kind, key), None)
        if record is not None and record.user_id is not None:
            keys = self._by_user.get((kind, record.user_id))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_user[(kind, record.user_id)]
        return record

    def _store(self, kind: str, record: Record) -> Record:
        self._drop(kind, record.key)
        self._records[(kind, record.key)] = record
        if record.user_id is not None:
            self._by_user.setdefault((kind, record.user_id), set()).add(record.key)
        if record.expires_at is not None:
            heapq.heappush(self._expiry, (record.expires_at, kind, record.key))
        return record

    async def get(self, kind: str, key: str) -> Record | None:
        return self._live(kind, key)

    async def put(
        self,
        kind: str,
        key: str,
        value: JSON,
        *,
        expires_at: float | None = None,
        user_id: str | None = None,
    ) -> None:
        check_kind_key(kind, key)
        self._store(kind, Record(key, copy.deepcopy(value), expires_at, user_id))

    async def create(
        self,
        kind: str,
        key: str,
        value: JSON,
        *,
        expires_at: float | None = None,
        user_id: str | None = None,
    ) -> bool:
        check_kind_key(kind, key)
        if self._live(kind, key) is not None:
            return False
        self._store(kind, Record(key, copy.deepcopy(value), expires_at, user_id))
        return True

    async def patch(
        self, kind: str, key: str, fields: JSON, *, expires_at: float | None = None
    ) -> Record | None:
        record = self._live(kind, key)
        if record is None:
            return None
        value = {**record.value, **copy.deepcopy(fields)}
        expiry = record.expires_at if expires_at is None else expires_at
        return self._store(kind, Record(key, value, expiry, record.user_id))

    async def merge(
        self, kind: str, key: str, field: str, fields: JSON, *, max_bytes: int
    ) -> Record | None:
        record = self._live(kind, key)
        if record is None:
            return None
        merged = merge_object(record.value.get(field), copy.deepcopy(fields), max_bytes)
        value = {**record.value, field: merged}
        return self._store(kind, Record(key, value, record.expires_at, record.user_id))

    async def delete(self, kind: str, key: str) -> Record | None:
        record = self._live(kind, key)
        self._drop(kind, key)
        return record

    async def rename(
        self,
        kind: str,
        old_key: str,
        new_key: str,
        *,
        fields: JSON | None = None,
        expires_at: float | None = None,
    ) -> Record | None:
        check_kind_key(kind, new_key)
        record = self._live(kind, old_key)
        if record is None:
            return None
        self._drop(kind, old_key)
        value = {**record.value, **copy.deepcopy(fields or {})}
        expiry = record.expires_at if expires_at is None else expires_at
        return self._store(kind, Record(new_key, value, expiry, record.user_id))

    async def list_by_user(self, kind: str, user_id: str) -> list[Record]:
        keys = list(self._by_user.get((kind, user_id), ()))
        return [r for k in keys if (r := self._live(kind, k)) is not None]

    async def delete_by_user(
        self, kind: str, user_id: str, *, keep: str | None = None
    ) -> list[Record]:
        removed = []
        for record in await self.list_by_user(kind, user_id):
            if record.key != keep:
                self._drop(kind, record.key)
                removed.append(record)
        return removed

    async def scan(self, kind: str, *, prefix: str = "", limit: int = 1000) -> list[Record]:
        found: list[Record] = []
        for (k, key) in list(self._records):
            if k == kind and key.startswith(prefix):
                record = self._live(kind, key)
                if record is not None:
                    found.append(record)
                    if len(found) >= limit:
                        break
        return found

    async def incr(self, kind: str, key: str, *, expires_at: float | None = None) -> int:
        check_kind_key(kind, key)
        record = self._live(kind, key)
        if record is None:
            record = Record(key, {"n": 0}, expires_at)
        count = int(record.value["n"]) + 1
        self._store(kind, Record(key, {"n": count}, record.expires_at, record.user_id))
        return count

    async def incr_below(
        self, kind: str, key: str, *, limit: int, expires_at: float | None = None
    ) -> int | None:
        check_kind_key(kind, key)
        check_limit(limit)
        record = self._live(kind, key)
        if record is not None and int(record.value["n"]) >= limit:
            return None
        return await self.incr(kind, key, expires_at=expires_at)

    async def decr(self, kind: str, key: str) -> int | None:
        record = self._live(kind, key)
        if record is None:
            return None
        count = max(int(record.value["n"]) - 1, 0)
        self._store(kind, Record(key, {"n": count}, record.expires_at, record.user_id))
        return count

    async def spend(
        self,
        kind: str,
        key: str,
        *,
        fields: JSON,
        new_key: str,
        new_value: JSON,
        new_expires_at: float | None,
        user_id: str | None = None,
        spent_expires_at: float | None = None,
    ) -> tuple[Record | None, bool]:
        check_kind_key(kind, new_key)
        record = self._live(kind, key)
        if record is None:
            return None, False
        if record.value.get("spent_at") is not None:
            return record, False
        self._store(
            kind,
            Record(key, {**record.value, **copy.deepcopy(fields)},
                   expire_earlier(record.expires_at, spent_expires_at), record.user_id),
        )
        self._store(kind, Record(new_key, copy.deepcopy(new_value), new_expires_at, user_id))
        return record, True

    async def append_event(self, event: JSON) -> str:
        row = AuditRow(f"{next(self._event_ids):020d}", copy.deepcopy(event))
        self._events.append(row)
        return row.id

    async def query_events(
        self,
        *,
        user_id: str | None = None,
        type: str | None = None,
        since: float | None = None,
        before_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditRow]:
        rows: list[AuditRow] = []
        for row in reversed(self._events):
            if before_id is not None and row.id >= before_id:
                continue
            if since is not None and row.event.get("ts", 0.0) < since:
                continue
            if user_id is not None and row.event.get("user_id") != user_id:
                continue
            if type is not None and row.event.get("type") != type:
                continue
            rows.append(row)
            if len(rows) >= limit:
                break
        return rows

    async def scrub_audit(self, user_id: str, fields: tuple[str, ...]) -> int:
        changed = 0
        for index, row in enumerate(self._events):
            if row.event.get("user_id") != user_id:
                continue
            scrubbed = scrub_event(row.event, fields)
            if scrubbed is not None:
                self._events[index] = AuditRow(row.id, scrubbed)
                changed += 1
        return changed

    async def prune_events(self, before: float) -> int:
        kept = [row for row in self._events if row.event.get("ts", 0.0) >= before]
        pruned = len(self._events) - len(kept)
        self._events = deque(kept, maxlen=self._events.maxlen)
        return pruned

    async def sweep(self, *, batch: int = 1000) -> int:
        now = self._clock.now()
        removed = 0
        while self._expiry and removed < batch and self._expiry[0][0] <= now:
            _, kind, key = heapq.heappop(self._expiry)
            record = self._records.get((kind, key))
            if record is not None and record.expires_at is not None and record.expires_at <= now:
                self._drop(kind, key)
                removed += 1
        return removed

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
