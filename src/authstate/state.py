"""The front door: one object composes the store, sessions, keys, tokens and revocation.

``web``, ``cli`` and ``bench`` each hold one ``AuthState`` and call it, rather than each
wiring the core modules together on its own. Build it from ``Settings`` with
``await AuthState.open(settings)`` (or ``async with``), or hand it an already open store.
"""

from __future__ import annotations

from types import TracebackType

from authstate.audit import AuditLog
from authstate.clock import Clock, SystemClock
from authstate.config import Settings
from authstate.identity import Identity
from authstate.sessions import Session, SessionManager
from authstate.stores import Store, open_store


class AuthState:
    def __init__(self, settings: Settings, store: Store, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock or SystemClock()
        self.audit = AuditLog(store, self.clock)
        self.sessions = SessionManager(
            store,
            clock=self.clock,
            idle_timeout=settings.session_idle_timeout,
            absolute_timeout=settings.session_absolute_timeout,
            touch_interval=settings.session_touch_interval,
            on_revoke=self._session_ended,
        )

    async def authenticate_session(self, session_id: object) -> Identity | None:
        """The identity behind a session cookie, or None (unknown, expired, revoked,
        malformed and store-down are one answer)."""
        session = await self.sessions.lookup(session_id)
        if session is None:
            return None
        return Identity(
            user_id=session.user_id,
            method="session",
            expires_at=session.expires_at,
            sid=session.sid,
            session=session,
        )

    async def _session_ended(self, session: Session, reason: str) -> None:
        """Every way a session ends passes here: audit it (and, with the hybrid's
        policies, revoke the tokens bound to it)."""
        await self.audit.record(
            "session_revoked", user_id=session.user_id, session=session.handle,
            detail={"reason": reason},
        )

    @classmethod
    async def open(cls, settings: Settings, *, clock: Clock | None = None) -> AuthState:
        """Open the store named by ``settings.store`` and everything that rests on it."""
        clock = clock or SystemClock()
        store = await open_store(settings.store, clock=clock, namespace=settings.namespace)
        return cls(settings, store, clock=clock)

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> AuthState:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
