"""Server-side sessions: an opaque random ID for the client, its SHA-256 digest in the store.

Only the digest is stored, so a leaked store dump cannot be replayed as cookies. The
public ``handle`` (device lists, logs, audit) is the first 16 hex of the digest; the
``sid`` is a separate random reference that survives rotation and is what access tokens
carry, so a token never holds anything that leads back to the session ID.

Idle expiry slides, but the "last seen" write happens at most once per
``touch_interval`` so a hot session does not write on every request; the absolute
expiry never moves. Rotation (login, privilege change) moves the record to a new ID in
one store operation and the old ID is dead when it returns.

A session may have no user yet (``create(None)``): the visitor's session an app keeps a
cart or a flash message in before anyone logs in. It is kept out of every per-user index
(no device list, no "log out everywhere"), its ``user_id`` reads as ``""``
(``Session.anonymous``), and it never authenticates anyone: ``AuthState`` answers a
request that carries one as anonymous. Logging in replaces it with a new session of the
user (a new ID) that inherits its data (``AuthState.login``).

With push revocation live, a looked-up session is kept in the process
(``SessionCache``, ``buscache``'s rules): every change to a session (its data, a
rotation, its end) announces a ``sess`` event naming its digest, which drops the copy in
this process before the call returns and in every other within the push delay. So a
cookie request on a networked store costs no store read while the session is hot, and a
revoked or rotated ID is still refused at the next request (in another process: after
the few milliseconds the event takes). Without a live bus every lookup reads the store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from authstate.buscache import BusCache, Epoch, Events
from authstate.clock import Clock, SystemClock
from authstate.errors import InvalidInput, StoreUnavailable
from authstate.outage import OutageLog
from authstate.randomtoken import digest as digest  # re-exported: the stored form of an ID
from authstate.stores.base import JSON, Record, Store

logger = logging.getLogger("authstate.sessions")

KIND = "session"
ID_BYTES = 32  # 256 bits, ASVS 5.0 V7.2.3 asks for at least 128 bits of entropy
ID_MAX = 128
ID_PATTERN = re.compile(rf"^[A-Za-z0-9_-]{{1,{ID_MAX}}}$")
HANDLE_LEN = 16
DATA_MAX_BYTES = 4096
USER_AGENT_MAX = 512
CACHE_SIZE = 50_000  # entries; ~1 KB each with a small data object, at most ~50 MB


def fingerprint(secret: str) -> str:
    """A short, non-reversible tag of any secret, safe for logs and audit rows."""
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()[:8]


def valid_id(session_id: object) -> bool:
    return isinstance(session_id, str) and ID_PATTERN.match(session_id) is not None


_new_tuple = tuple.__new__
# The default for Session.data: read-only, so the one object every Session shares cannot
# be changed through one of them (a mutable {} default would be shared and writable).
NO_DATA: Mapping[str, Any] = MappingProxyType({})


class Session(NamedTuple):
    """A live session as the core sees it. Never holds the session ID itself.

    A NamedTuple rather than the frozen dataclass STYLE.md prefers: it is built on every
    authenticated request, and a frozen dataclass of these eleven fields costs about 3 µs
    to construct here against 1 µs for this (measured), which alone was a third of a
    SQLite session lookup. It is just as immutable.
    """

    handle: str
    sid: str
    user_id: str
    created_at: float
    last_seen: float
    idle_expires_at: float
    absolute_expires_at: float
    auth_time: float
    ip: str | None = None
    user_agent: str | None = None
    data: Mapping[str, Any] = NO_DATA  # read-only when defaulted; from_record passes a fresh dict

    @property
    def expires_at(self) -> float:
        return min(self.idle_expires_at, self.absolute_expires_at)

    @property
    def anonymous(self) -> bool:
        """A visitor's session that no one has logged in to (see the module docstring)."""
        return not self.user_id

    @classmethod
    def from_record(cls, record: Record) -> Session:
        v = record.value
        # tuple.__new__ skips the generated keyword-handling __new__: half the cost here
        return _new_tuple(cls, (
            record.key[:HANDLE_LEN],
            v["sid"],
            v["user_id"] or "",  # None (stored) for an anonymous session
            v["created_at"],
            v["last_seen"],
            v["idle_expires_at"],
            v["absolute_expires_at"],
            v["auth_time"],
            v.get("ip"),
            v.get("user_agent"),
            v.get("data") or {},
        ))


RevokeHook = Callable[[Session, str], Awaitable[None]]


class SessionCache(BusCache[Session]):
    """Looked-up sessions by digest, kept while push revocation is live (``buscache``).

    A cached ``Session`` is shared by the requests that hit it: its ``data`` is a
    read-only view (``MappingProxyType``), so a caller that changes it goes through
    ``SessionManager.update`` (which announces the change) instead of editing the copy
    every other request sees."""

    EVENT = "sess"

    def __init__(
        self, revocation: Events, *, clock: Clock, ttl: float, size: int = CACHE_SIZE,
    ) -> None:
        super().__init__(revocation, clock=clock, ttl=ttl, size=size,
                         events=frozenset({self.EVENT}), field="key")

    def hit(self, key: str, now: float, touch_interval: float) -> Session | None:
        """The cached session, if it is still live and needs no last-seen write now
        (a lookup that must slide the idle expiry goes to the store). Callers check
        ``usable`` first."""
        entry = self.peek(key)
        if entry is None:
            return None
        session = entry[1]
        if session.expires_at <= now or now - session.last_seen >= touch_interval:
            return None
        return session

    def keep_session(self, key: str, session: Session, epoch: Epoch) -> None:
        if isinstance(session.data, dict):
            session = session._replace(data=MappingProxyType(session.data))
        self.keep(key, session, epoch)

    async def changed(self, key: str, *, wait: bool = True) -> None:
        """Drop ``key`` here at once and in every process through the bus (``wait``:
        return only once the event is published; a data change need not)."""
        await self.revocation.announce_session_changed(key, wait=wait)

    def keep_own_write(self, key: str, session: Session, before: Epoch) -> None:
        """Keep what this process's own write left (``before``: the epoch taken before
        it), when the only change since was that write's own announcement: a change
        from elsewhere in between could be missing from ``session``, so then nothing is
        kept. One that lands after is dropped by its event, like any entry."""
        self.keep_session(key, session, (before[0] + 1, before[1]))


class SessionManager:
    """Create, look up, slide, rotate, update and revoke sessions on any store."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        idle_timeout: float = 30 * 60,
        absolute_timeout: float = 12 * 3600,
        touch_interval: float = 60,
        on_revoke: RevokeHook | None = None,
        on_store_error: Callable[[BaseException], None] | None = None,
        cache: SessionCache | None = None,
    ) -> None:
        if not 0 < idle_timeout <= absolute_timeout:
            raise ValueError("need 0 < idle_timeout <= absolute_timeout")
        self.store = store
        self.clock = clock or SystemClock()
        self.idle_timeout = idle_timeout
        self.absolute_timeout = absolute_timeout
        self.touch_interval = touch_interval
        self.on_revoke = on_revoke
        self.cache = cache
        self._outage = OutageLog(logger, "session store", on_failure=on_store_error)
        self._touch_outage = OutageLog(
            logger, "session store (last-seen writes)", on_failure=on_store_error
        )

    async def create(
        self,
        user_id: str | None,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
        data: JSON | None = None,
        auth_time: float | None = None,
    ) -> tuple[str, Session]:
        """A new session; returns the secret ID (to give to the client, once) and the
        session. ``user_id=None`` makes an anonymous session (see the module docstring)."""
        if user_id is not None and not 0 < len(user_id) <= 128:
            raise InvalidInput("user_id must be 1..128 characters")
        _check_data(data)
        now = self.clock.now()
        session_id = secrets.token_urlsafe(ID_BYTES)
        absolute = now + self.absolute_timeout
        value: JSON = {
            "sid": secrets.token_urlsafe(16),
            "user_id": user_id,
            "created_at": now,
            "last_seen": now,
            "idle_expires_at": min(now + self.idle_timeout, absolute),
            "absolute_expires_at": absolute,
            "auth_time": now if auth_time is None else auth_time,
            "ip": ip,
            "user_agent": (user_agent or "")[:USER_AGENT_MAX] or None,
            "data": data or {},
        }
        key = digest(session_id)
        expires = value["idle_expires_at"]
        await self.store.put(KIND, key, value, expires_at=expires, user_id=user_id)
        return session_id, Session.from_record(Record(key, value, expires, user_id))

    async def lookup(self, session_id: object) -> Session | None:
        """The live session for this ID, or None: unknown, expired, revoked and malformed
        are the same answer. A store that cannot answer raises ``StoreUnavailable``
        instead, because "the store is down" is not "you are logged out": callers answer
        503 and leave the cookie alone (security invariant 7). The outage is logged once
        when it starts and once when it ends, not once per request."""
        if not valid_id(session_id):
            return None
        assert isinstance(session_id, str)
        key = digest(session_id)
        cache = self.cache
        epoch = None
        if cache is not None and cache.usable:
            hit = cache.hit(key, self.clock.now(), self.touch_interval)
            if hit is not None:
                return hit
            epoch = cache.epoch()
        try:
            record = await self.store.get(KIND, key)
        except StoreUnavailable as error:
            self._outage.failed(error)
            raise
        self._outage.recovered()
        if record is None:
            return None
        session = Session.from_record(record)
        now = self.clock.now()
        if session.expires_at <= now:
            return None
        if now - session.last_seen >= self.touch_interval:
            session = await self._touch(key, session, now)
        if epoch is not None:
            assert cache is not None
            cache.keep_session(key, session, epoch)
        return session

    def lookup_cached(self, session_id: object) -> Session | None:
        """``lookup``'s answer when this process's copy can give it without awaiting
        (CPU only, from any thread: the sync face's fast path); None means "await
        ``lookup``", never "no session"."""
        cache = self.cache
        # no pattern check: only valid IDs are ever kept, so any other misses
        if (cache is None or not cache.usable or not isinstance(session_id, str)
                or len(session_id) > ID_MAX or not session_id.isascii()):
            return None
        return cache.hit(digest(session_id), self.clock.now(), self.touch_interval)

    async def _touch(self, key: str, session: Session, now: float) -> Session:
        """Slide the idle expiry. A failed write does not fail the request: the session
        was just read live, and a missed touch only means it slides at the next one (a
        store that takes reads but not writes, such as a standby, keeps users in)."""
        idle = min(now + self.idle_timeout, session.absolute_expires_at)
        try:
            record = await self.store.patch(
                KIND, key, {"last_seen": now, "idle_expires_at": idle}, expires_at=idle
            )
        except StoreUnavailable as error:
            self._touch_outage.failed(error)
            return session
        self._touch_outage.recovered()
        return Session.from_record(record) if record is not None else session

    async def rotate(self, session_id: str) -> tuple[str, Session] | None:
        """Give the session a new ID (login, privilege change); the old ID dies at once."""
        if not valid_id(session_id):
            return None
        new_id = secrets.token_urlsafe(ID_BYTES)
        old = digest(session_id)
        record = await self.store.rename(
            KIND, old, digest(new_id), fields={"rotated_at": self.clock.now()}
        )
        if record is None:
            return None
        await self._changed(old)
        return new_id, Session.from_record(record)

    async def update(
        self, session_id: str, data: JSON, *, replace: bool = False
    ) -> Session | None:
        """Merge ``data`` into the session's data (or replace it), seen by the next
        lookup. The merge is one atomic store operation, so concurrent updates of
        different keys all land; each key replaces its value, and a key set to None is
        removed (a top-level JSON Merge Patch, RFC 7396). The merged data must still fit
        in ``DATA_MAX_BYTES``, or ``InvalidInput`` is raised and nothing changes."""
        _check_data(data)
        if not valid_id(session_id):
            return None
        key = digest(session_id)
        cache = self.cache
        before = cache.epoch() if cache is not None else None
        if replace:
            record = await self.store.patch(KIND, key, {"data": data})
        else:
            record = await self.store.merge(KIND, key, "data", data, max_bytes=DATA_MAX_BYTES)
        if record is None:
            return None
        session = Session.from_record(record)
        await self._changed(key, wait=False)
        if cache is not None and before is not None:  # the next request here needs no read
            cache.keep_own_write(key, session, before)
        return session

    async def revoke(self, session_id: str, *, reason: str = "user") -> Session | None:
        """End one session by its ID."""
        if not valid_id(session_id):
            return None
        record = await self.store.delete(KIND, digest(session_id))
        return await self._revoked(record, reason)

    async def revoke_handle(
        self, user_id: str, handle: str, *, reason: str = "user"
    ) -> Session | None:
        """End one of ``user_id``'s sessions by its public handle; None when it is not
        theirs."""
        if len(handle) != HANDLE_LEN or not handle.isascii():
            return None
        for record in await self.store.list_by_user(KIND, user_id):
            if secrets.compare_digest(record.key[:HANDLE_LEN], handle):
                removed = await self.store.delete(KIND, record.key)
                return await self._revoked(removed, reason)
        return None

    async def revoke_all(
        self, user_id: str, *, except_id: str | None = None, reason: str = "user"
    ) -> list[Session]:
        """Log the user out everywhere, optionally except the current session."""
        keep = digest(except_id) if except_id and valid_id(except_id) else None
        removed = await self.store.delete_by_user(KIND, user_id, keep=keep)
        return [s for r in removed if (s := await self._revoked(r, reason)) is not None]

    async def for_user(self, user_id: str) -> list[Session]:
        """The user's live sessions (their devices), newest first."""
        now = self.clock.now()
        sessions = [
            Session.from_record(r) for r in await self.store.list_by_user(KIND, user_id)
        ]
        live = [s for s in sessions if s.expires_at > now]
        return sorted(live, key=lambda s: s.created_at, reverse=True)

    async def find(self, handle_prefix: str, *, limit: int = 100) -> list[Session]:
        """Sessions whose handle starts with ``handle_prefix`` (for operators)."""
        return [Session.from_record(r) for r in await self._scan(handle_prefix, limit)]

    async def revoke_prefix(self, handle_prefix: str, *, reason: str = "admin") -> list[Session]:
        """End every session whose handle starts with ``handle_prefix`` (for operators)."""
        ended = []
        for record in await self._scan(handle_prefix, 1000):
            removed = await self.store.delete(KIND, record.key)
            if (session := await self._revoked(removed, reason)) is not None:
                ended.append(session)
        return ended

    async def _scan(self, handle_prefix: str, limit: int) -> list[Record]:
        if not re.fullmatch(r"[0-9a-f]{4,64}", handle_prefix):
            raise InvalidInput("a session handle prefix is 4 to 64 lowercase hex characters")
        return await self.store.scan(KIND, prefix=handle_prefix, limit=limit)

    async def _changed(self, key: str, *, wait: bool = True) -> None:
        if self.cache is not None:
            await self.cache.changed(key, wait=wait)

    async def _revoked(self, record: Record | None, reason: str) -> Session | None:
        if record is None:
            return None
        await self._changed(record.key)
        session = Session.from_record(record)
        if self.on_revoke is not None:
            await self.on_revoke(session, reason)
        return session


def _check_data(data: JSON | None) -> None:
    if data is None:
        return
    if not isinstance(data, dict):
        raise InvalidInput("session data must be a JSON object")
    try:
        size = len(json.dumps(data, separators=(",", ":")))
    except (TypeError, ValueError) as error:
        raise InvalidInput("session data must be JSON-serialisable") from error
    if size > DATA_MAX_BYTES:
        raise InvalidInput(f"session data is limited to {DATA_MAX_BYTES} bytes of JSON")
