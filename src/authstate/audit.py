"""The audit trail: one event per thing that happened, with no secret in it.

An event names the actor, the subject user, the session's public handle, the client and a
token *fingerprint* (a short hash prefix), never a whole token, session ID, refresh token,
password or key: ``record`` takes the raw token only to fingerprint it here, in one place.
Events go to the store (append-only) and to the ``authstate.audit`` logger as one JSON
line each.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from authstate.clock import Clock
from authstate.errors import StoreUnavailable
from authstate.sessions import fingerprint
from authstate.stores.base import Store

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
        "password_changed",
        "key_generated",
        "key_rotated",
        "key_retired",
        "client_created",
        "throttle_tripped",
    }
)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    type: str
    ts: float
    actor: str | None = None
    user_id: str | None = None
    session: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    token_fp: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class AuditLog:
    """Records events; a store outage never blocks the action being audited, but the event
    still reaches the log."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

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
        event = AuditEvent(
            type=type,
            ts=self.clock.now(),
            actor=actor,
            user_id=user_id,
            session=session,
            ip=ip,
            user_agent=(user_agent or "")[:256] or None,
            token_fp=fingerprint(token) if token else None,
            detail=detail or {},
        )
        row = asdict(event)
        logger.info(json.dumps({"event": "audit", **row}, separators=(",", ":")))
        try:
            await self.store.append_event(row)
        except StoreUnavailable as error:
            logger.error("audit event %s not stored: %s", type, error)
        return event
