"""The audit trail: one event per thing that happened, with no secret in it.

An event names the actor, the subject user, the session's public handle, the client and a
token *fingerprint* (a short hash prefix), never a whole token, session ID, refresh token,
password or key: ``record`` takes the raw token only to fingerprint it here, in one place,
and passes the free-text fields through ``logs.redact`` in case a caller slips. Events go
to the store (append-only: a table in SQL, a Stream in Redis, a bounded ring in memory),
to the ``authstate.audit`` logger as one JSON line each, and to the metrics.

Events recorded while serving a request carry its origin without every caller passing it:
the web layer binds the client's IP and user agent (and, once authenticated, the caller
as actor) to the request's context with ``bind_origin``, and ``record`` fills any of
those fields the caller left out. So an event recorded deep in the core (a session ended
by an admin's request) still says who asked and from where.

Conventions for callers: ``actor`` is who did it (``"user:<id>"`` for the authenticated
caller, an admin's own ID when an admin acts on someone else, ``"client:<id>"``, ``"cli"``
for the command line, ``"system"``); ``user_id`` is whom it concerns; ``detail`` holds small
scalars such as ``{"reason": "password_change"}`` or ``{"kid": ...}``, never a credential.
``query`` reads events back newest first, a page at a time; ``prune`` applies retention.
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar, Token
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, Protocol

from authstate.clock import Clock
from authstate.errors import InvalidInput, StoreUnavailable
from authstate.logs import AUDIT_ATTRIBUTE, redact, redact_value
from authstate.sessions import fingerprint
from authstate.stores.base import JSON, AuditRow, Store

logger = logging.getLogger("authstate.audit")

EVENT_TYPES = frozenset(
    {
        "login_succeeded",
        "login_failed",
        "session_created",
        "session_rotated",
        "session_revoked",
        "access_token_issued",
        "refresh_rotated",
        "refresh_reuse_detected",
        "token_revoked",
        "user_version_bumped",
        "user_created",
        "user_disabled",
        "user_enabled",
        "user_deleted",
        "user_scopes_changed",
        "user_admin_changed",
        "password_changed",
        "password_reset",
        "key_generated",
        "key_rotated",
        "key_retired",
        "key_revoked",
        "client_created",
        "client_removed",
        "client_secret_rotated",
        "authorization_code_issued",
        "authorization_code_reused",
        "backchannel_logout_sent",
        "backchannel_logout_failed",
        "rp_logout",
        "throttle_tripped",
    }
)

PAGE_MAX = 1000
DEFAULT_RETENTION_DAYS = 90
USER_AGENT_MAX = 256
CURSOR_PATTERN = re.compile(r"^[0-9][0-9-]{0,39}$")  # memory, SQL and Redis Stream ids
_USER_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_RELATIVE = re.compile(r"^(\d{1,9})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True, slots=True)
class Origin:
    """Who and where the work in progress comes from (see the module docstring)."""

    actor: str | None = None
    ip: str | None = None
    user_agent: str | None = None


NO_ORIGIN = Origin()
_origin: ContextVar[Origin] = ContextVar("authstate_audit_origin", default=NO_ORIGIN)


def bind_origin(
    *, actor: str | None = None, ip: str | None = None, user_agent: str | None = None
) -> Token[Origin]:
    """Merge the given fields into the current context's origin; ``reset_origin`` with the
    returned token undoes it (the ASGI middleware does, at the end of each request)."""
    current = _origin.get()
    return _origin.set(
        Origin(
            actor=actor if actor is not None else current.actor,
            ip=ip if ip is not None else current.ip,
            user_agent=user_agent if user_agent is not None else current.user_agent,
        )
    )


def reset_origin(token: Token[Origin]) -> None:
    _origin.reset(token)


def current_origin() -> Origin:
    return _origin.get()


# What an event says about a person besides the user ID: scrubbed to fingerprints when
# the account is deleted (``AuthState.delete_user``); session handles and token
# fingerprints are already one-way.
PERSONAL_FIELDS = ("ip", "user_agent")


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One event; ``id`` is set once stored (the pagination cursor)."""

    type: str
    ts: float
    actor: str | None = None
    user_id: str | None = None
    session: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    token_fp: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    id: str | None = None

    @classmethod
    def from_row(cls, row: AuditRow) -> AuditEvent:
        e = row.event

        def text(name: str) -> str | None:
            value = e.get(name)
            return value if isinstance(value, str) else None

        detail = e.get("detail")
        return cls(
            type=str(e.get("type", "")),
            ts=float(e.get("ts", 0.0)),
            actor=text("actor"),
            user_id=text("user_id"),
            session=text("session"),
            ip=text("ip"),
            user_agent=text("user_agent"),
            token_fp=text("token_fp"),
            detail=detail if isinstance(detail, dict) else {},
            id=row.id,
        )

    def to_json(self) -> JSON:
        """The event as the API and ``authstate audit --json`` print it."""
        return {
            "id": self.id,
            "type": self.type,
            "time": datetime.fromtimestamp(self.ts, UTC).isoformat(timespec="milliseconds"),
            "ts": self.ts,
            "actor": self.actor,
            "user_id": self.user_id,
            "session": self.session,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "token_fp": self.token_fp,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class AuditPage:
    """A page of events, newest first; pass ``next_before`` as ``before`` for the next."""

    events: tuple[AuditEvent, ...]
    next_before: str | None


def parse_since(text: str, now: float) -> float:
    """A lower time bound from operator input: a relative age (``30m``, ``24h``, ``7d``,
    ``2w``), an ISO 8601 date or time (UTC unless it says otherwise) or epoch seconds."""
    text = text.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative:
        return now - int(relative.group(1)) * _UNITS[relative.group(2)]
    try:
        return float(text) if re.fullmatch(r"\d{9,11}(\.\d+)?", text) else _iso(text)
    except ValueError:
        raise InvalidInput(
            "since must be an age like 30m, 24h or 7d, an ISO 8601 time, or epoch seconds"
        ) from None


def _iso(text: str) -> float:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


class EventMetrics(Protocol):
    """What the audit log tells the metrics (``authstate.metrics.Metrics`` is one): declared
    here, so that ``metrics`` may know ``AuditEvent`` without the two importing each other."""

    def observe_event(self, event: AuditEvent) -> None: ...

    def store_error(self, operation: str) -> None: ...


class AuditLog:
    """Records and reads events. A store outage never blocks the action being audited,
    but the event still reaches the log (and the store-error metric)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        metrics: EventMetrics | None = None,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.retention_days = retention_days

    async def record(
        self,
        type: str,
        *,
        actor: str | None = None,
        user_id: str | None = None,
        session: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        token: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditEvent:
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown audit event type {type!r}")
        origin = _origin.get()
        actor = actor if actor is not None else origin.actor
        ip = ip if ip is not None else origin.ip
        user_agent = user_agent if user_agent is not None else origin.user_agent
        event = AuditEvent(
            type=type,
            ts=self.clock.now(),
            actor=actor,
            user_id=user_id,
            session=session,
            ip=ip,
            user_agent=redact(user_agent[:USER_AGENT_MAX]) if user_agent else None,
            token_fp=fingerprint(token) if token else None,
            detail=redact_value(detail) if detail else {},
        )
        row = asdict(event)
        del row["id"]
        logger.info(
            "%s", json.dumps({"event": "audit", **row}, separators=(",", ":"), default=str),
            extra={AUDIT_ATTRIBUTE: row},
        )
        if self.metrics is not None:
            self.metrics.observe_event(event)
        try:
            event_id = await self.store.append_event(row)
        except StoreUnavailable as error:
            logger.error("audit event %s not stored: %s", type, error)
            if self.metrics is not None:
                self.metrics.store_error("append_event")
            return event
        return replace(event, id=event_id)

    async def query(
        self,
        *,
        user_id: str | None = None,
        type: str | None = None,
        since: float | None = None,
        before: str | None = None,
        limit: int = 100,
    ) -> AuditPage:
        """Events matching every filter given, newest first, at most ``limit``; the page
        says where the next one starts (``next_before``), or None at the end."""
        if type is not None and type not in EVENT_TYPES:
            raise InvalidInput(f"unknown event type; known: {', '.join(sorted(EVENT_TYPES))}")
        if not 1 <= limit <= PAGE_MAX:
            raise InvalidInput(f"limit must be 1..{PAGE_MAX}")
        if before is not None and not CURSOR_PATTERN.fullmatch(before):
            raise InvalidInput("before must be an event id from a previous page")
        if user_id is not None and not _USER_ID.fullmatch(user_id):
            raise InvalidInput("user must be 1..128 printable characters")
        try:
            rows = await self.store.query_events(
                user_id=user_id, type=type, since=since, before_id=before, limit=limit + 1
            )
        except ValueError:  # a well-formed cursor from another backend's id space
            raise InvalidInput("before must be an event id from a previous page") from None
        events = tuple(AuditEvent.from_row(r) for r in rows[:limit])
        more = len(rows) > limit
        return AuditPage(events, events[-1].id if more and events else None)

    async def prune(self, *, retention_days: int | None = None) -> int:
        """Delete events older than the retention period; how many went."""
        days = self.retention_days if retention_days is None else retention_days
        if days < 1:
            raise InvalidInput("retention must be at least one day")
        return await self.store.prune_events(self.clock.now() - days * 86400)
