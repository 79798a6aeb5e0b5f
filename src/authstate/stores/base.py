"""What a store must do: keep expiring records, a few atomic operations, and the audit log.

Stores keep records; they never decide. Every policy (what a session is, when a refresh
token counts as reused) lives in the core, which talks to a store only through this
protocol. A record is a small JSON object under ``(kind, key)`` with an optional
absolute expiry and an optional owning user (so "all of a user's sessions" is an index
read, not a scan). The operations that must be atomic are single calls here, and each
backend implements them with its engine's own tool (a Lua script, a transaction,
``UPDATE … RETURNING``), never as read-modify-write in Python.

Expiry is enforced twice: a read never returns a record whose ``expires_at`` has passed
by the store's clock (so an injected clock works on every backend), and the backend
reclaims the space by itself (Redis TTL) or through ``sweep`` (SQL, memory).
"""

from __future__ import annotations

import hashlib
import json
import json.scanner
import re
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable
from urllib.parse import urlsplit

from authstate.errors import InvalidInput

JSON = dict[str, Any]

dumps = json.JSONEncoder(separators=(",", ":")).encode
# The C scanner behind json.loads, called directly: what a store reads back is compact
# JSON that it wrote itself, starting at offset 0, so json.loads's whitespace handling
# around it is pure cost on the per-request read (about 1 µs of a 4 µs session decode).
# typeshed types the argument as a scanner; a JSONDecoder is what json itself passes.
_scan_json = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


NAMESPACE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


def loads(text: str) -> Any:
    """Decode JSON that a store wrote (see ``_scan_json``)."""
    try:
        return _scan_json(text, 0)[0]
    except StopIteration:  # not JSON at all: let json say why
        return json.loads(text)

KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
KEY_MAX = 256


class Record(NamedTuple):
    """One stored record, as the store returns it.

    A NamedTuple rather than a frozen dataclass because one is built on every store read,
    the per-request session lookup included, and it builds in a third of the time."""

    key: str
    value: JSON
    expires_at: float | None = None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One stored audit event; ``id`` orders events and is the pagination cursor."""

    id: str
    event: JSON


@runtime_checkable
class Store(Protocol):
    """The async interface every backend implements; see the module docstring."""

    url_scheme: str

    async def get(self, kind: str, key: str) -> Record | None:
        """The live record, or None when absent or expired."""

    async def put(
        self,
        kind: str,
        key: str,
        value: JSON,
        *,
        expires_at: float | None = None,
        user_id: str | None = None,
    ) -> None:
        """Insert or replace."""

    async def create(
        self,
        kind: str,
        key: str,
        value: JSON,
        *,
        expires_at: float | None = None,
        user_id: str | None = None,
    ) -> bool:
        """Insert only if no live record has this key; True when inserted."""

    async def patch(
        self, kind: str, key: str, fields: JSON, *, expires_at: float | None = None
    ) -> Record | None:
        """Merge top-level ``fields`` into a live record atomically (and set a new expiry
        when given); the updated record, or None when there is no live record."""

    async def merge(
        self, kind: str, key: str, field: str, fields: JSON, *, max_bytes: int
    ) -> Record | None:
        """Merge ``fields`` into the JSON object at top-level ``field`` of a live record,
        atomically, by the rule of ``merge_object`` (so two concurrent merges of different
        keys both land). Raises ``InvalidInput`` and changes nothing when the merged
        object would exceed ``max_bytes``. The updated record, or None when not live."""

    async def delete(self, kind: str, key: str) -> Record | None:
        """Remove a record; the live record that was removed, or None."""

    async def rename(
        self,
        kind: str,
        old_key: str,
        new_key: str,
        *,
        fields: JSON | None = None,
        expires_at: float | None = None,
    ) -> Record | None:
        """Atomically move a live record to ``new_key`` (merging ``fields``); the old key
        is dead when this returns. The new record, or None when ``old_key`` is not live."""

    async def list_by_user(self, kind: str, user_id: str) -> list[Record]:
        """The user's live records of this kind, in O(that user's records)."""

    async def delete_by_user(
        self, kind: str, user_id: str, *, keep: str | None = None
    ) -> list[Record]:
        """Remove the user's records of this kind except ``keep``; the removed live ones."""

    async def scan(self, kind: str, *, prefix: str = "", limit: int = 1000) -> list[Record]:
        """Live records of a kind whose key starts with ``prefix`` (admin and resync use;
        never on a per-request path)."""

    async def incr(self, kind: str, key: str, *, expires_at: float | None = None) -> int:
        """Atomically add one to a counter and return it; ``expires_at`` is set only when
        the counter is created (a fixed window). ``get`` reads it as ``{"n": count}``."""

    async def incr_below(
        self, kind: str, key: str, *, limit: int, expires_at: float | None = None
    ) -> int | None:
        """Atomically add one to a counter unless it already holds ``limit`` (>= 1) or
        more: the new count, or None when refused, the counter unchanged. A counter that
        is absent or expired starts again at 1 with ``expires_at``, as in ``incr``. One
        check-and-add, so concurrent callers can never take more than ``limit`` between
        them (a limit counted before the work it limits)."""

    async def decr(self, kind: str, key: str) -> int | None:
        """Atomically take one from a live counter, never below zero, keeping its expiry:
        the new count, or None when no live counter has this key (nothing is created, so
        a late give-back after the window ended is a no-op)."""

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
        """Rotate a one-time record, atomically.

        If ``key`` is live and its value has no ``spent_at``: merge ``fields`` (which set
        ``spent_at``) into it, create ``new_key`` and return ``(record before, True)``.
        If it is live and already spent: change nothing, return ``(record, False)``.
        If it is not live: ``(None, False)``. With ``spent_expires_at``, the spent record
        expires at the earlier of its own expiry and that time (it is kept only as long
        as the caller still needs to recognise it).
        """

    async def append_event(self, event: JSON) -> str:
        """Append an audit event (must carry a float ``ts``); its id."""

    async def query_events(
        self,
        *,
        user_id: str | None = None,
        type: str | None = None,
        since: float | None = None,
        before_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditRow]:
        """Audit events, newest first; ``before_id`` continues a previous page."""

    async def prune_events(self, before: float) -> int:
        """Delete audit events older than ``before``; how many."""

    async def scrub_audit(self, user_id: str, fields: tuple[str, ...]) -> int:
        """In every stored audit event of ``user_id``, replace the string value of each
        of ``fields`` with its fingerprint (``scrub_event``), keeping the event's id and
        place in the log; how many events changed. Scrubbing twice changes nothing."""

    async def sweep(self, *, batch: int = 1000) -> int:
        """Delete up to ``batch`` expired records; how many. Cost follows what expired."""

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""

    async def close(self) -> None:
        """Release connections."""


def merge_object(current: object, fields: JSON, max_bytes: int) -> JSON:
    """The one merge rule of ``Store.merge``, written once for every backend: each key of
    ``fields`` replaces its value (no recursion into nested objects), and a key set to
    None is removed, as in a top-level JSON Merge Patch (RFC 7396). The result must fit
    in ``max_bytes`` of compact JSON, measured as ``dumps`` writes it."""
    merged: JSON = dict(current) if isinstance(current, dict) else {}
    for name, value in fields.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    if len(dumps(merged)) > max_bytes:
        raise InvalidInput(f"the merged object is limited to {max_bytes} bytes of JSON")
    return merged


SCRUBBED = "sha256:"


def scrub_event(event: JSON, fields: tuple[str, ...]) -> JSON | None:
    """The event with each of ``fields`` that holds a string replaced by ``sha256:`` and
    the first 8 hex digits of its SHA-256 (enough to tell two values apart in one
    user's trail, too short to look a value up), or None when nothing changes: the one
    scrub rule of ``Store.scrub_audit`` on every backend, applied in Python because not
    every engine has SHA-256 (Redis Lua has only SHA-1)."""
    changed = {
        name: SCRUBBED + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:8]
        for name in fields
        if isinstance(value := event.get(name), str)
        and not (value.startswith(SCRUBBED) and len(value) == len(SCRUBBED) + 8)
    }
    return {**event, **changed} if changed else None


def expire_earlier(current: float | None, limit: float | None) -> float | None:
    """The earlier of two optional expiries (None: never)."""
    if limit is None:
        return current
    return limit if current is None else min(current, limit)


def check_kind_key(kind: str, key: str) -> None:
    """Guard against a caller bug writing an unbounded or ambiguous key."""
    if not KIND_PATTERN.match(kind):
        raise ValueError(f"bad record kind {kind!r}")
    if not key or len(key) > KEY_MAX:
        raise ValueError("record key must be 1..256 characters")


def check_limit(limit: int) -> None:
    """``incr_below`` needs room for at least one: a limit below 1 is a caller bug."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError("counter limit must be an integer >= 1")


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe for errors and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
