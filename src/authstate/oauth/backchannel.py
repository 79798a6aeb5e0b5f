"""OpenID Connect Back-Channel Logout 1.0: when a session ends, tell every client that
holds tokens from it, server to server.

Who to tell: ``remember`` writes one small record per (session ``sid``, client) when a
code is issued for the session (kind ``oidc_rp``, expiring with the session at the
latest). ``session_ended`` is called from ``AuthState._session_ended``, the one place
every session end passes (logout, RP-initiated logout, revoke, admin revoke, disable,
password change or reset, refresh reuse, delete): it reads the session's records and,
for each client registered with a ``backchannel_logout_uri``, writes an outbox entry.

How: an outbox entry (kind ``bcl_outbox``, keyed by the logout token's ``jti``) is
delivered by a background task, never by the request that ended the session: an HTTP
POST of ``logout_token=<JWT>`` (form-encoded, §2.5), a 2xx answer being success. A
failure (a transport error, a timeout, any other status) is retried ``attempts`` times
in all, waiting ``backoff``, 2 x ``backoff``, 4 x ... seconds; then it is given up. Each
outcome is audited (``backchannel_logout_sent`` / ``backchannel_logout_failed``).
The token is signed at each attempt (fresh ``iat``/``exp``, the same ``jti``), so a late
retry never sends an expired one.

Durability: the outbox lives in the store, so an entry survives the process. Each
attempt first moves the entry's ``due`` past its own deadline; ``pump`` (every
``interval`` seconds) takes over entries whose ``due`` has passed, i.e. those whose
deliverer stopped or died. Two instances may then both deliver one entry: a
receiver sees the same ``jti`` twice, which §2.6 lets it detect. Entries are kept at most
``OUTBOX_TTL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from authstate.audit import AuditLog
from authstate.clock import Clock
from authstate.errors import AuthstateError, StoreUnavailable
from authstate.keystore import KeySet
from authstate.oauth.oidc import sign
from authstate.stores.base import Store

logger = logging.getLogger("authstate.backchannel")

RP_KIND = "oidc_rp"
OUTBOX = "bcl_outbox"
EVENT = "http://schemas.openid.net/event/backchannel-logout"
TOKEN_TYPE = "logout+jwt"  # noqa: S105 - Back-Channel Logout 1.0 §2.4 (and RFC 8417 style typing)
TOKEN_TTL = 120  # a logout token is used at once; two minutes absorbs clock skew
OUTBOX_TTL = 86400
ATTEMPTS = 5
BACKOFF = 1.0  # seconds before the 2nd attempt; doubled each time (1, 2, 4, 8)
TIMEOUT = 5.0  # per POST

ClientLookup = Callable[[str], Awaitable[Any]]


def logout_claims(issuer: str, client_id: str, user_id: str, sid: str, jti: str,
                  now: float) -> dict[str, Any]:
    """The claims of a logout token (§2.4): no ``nonce``, the event member."""
    return {
        "iss": issuer, "aud": client_id, "iat": int(now), "exp": int(now) + TOKEN_TTL,
        "jti": jti, "sub": user_id, "sid": sid, "events": {EVENT: {}},
    }


class BackchannelLogout:
    """Remember which clients a session served; tell them when it ends (module doc)."""

    def __init__(
        self,
        store: Store,
        keys: KeySet,
        audit: AuditLog,
        *,
        clock: Clock,
        issuer: str,
        client: ClientLookup,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF,
        timeout: float = TIMEOUT,
        interval: float = 60.0,
    ) -> None:
        self.store = store
        self.keys = keys
        self.audit = audit
        self.clock = clock
        self.issuer = issuer
        self.client = client
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.interval = interval
        self._http: httpx.AsyncClient | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pump: asyncio.Task[None] | None = None
        # Stopping is a signal, not a cancellation: a task cancelled inside a store call
        # can leave the store's connection unusable (seen with redis-py), so every loop
        # here waits on this event and leaves by itself between store calls.
        self._stop = asyncio.Event()

    # -- who to tell ---------------------------------------------------------------

    async def remember(self, user_id: str, sid: str, client_id: str, expires_at: float) -> None:
        """Note that ``client_id`` got a code (so tokens) from the session ``sid``."""
        await self.store.put(
            RP_KIND, f"{sid}.{client_id}", {"sid": sid, "client_id": client_id},
            expires_at=expires_at, user_id=user_id,
        )

    async def clients_of(self, user_id: str, sid: str) -> list[str]:
        records = await self.store.list_by_user(RP_KIND, user_id)
        return sorted({r.value["client_id"] for r in records if r.value.get("sid") == sid})

    async def session_ended(self, user_id: str, sid: str) -> int:
        """Queue a logout token for every client of the session that registered a
        back-channel URI; how many. Delivery happens in the background."""
        queued = 0
        for client_id in await self.clients_of(user_id, sid):
            await self.store.delete(RP_KIND, f"{sid}.{client_id}")
            client = await self.client(client_id)
            uri = getattr(client, "backchannel_logout_uri", None)
            if not uri:
                continue
            jti = secrets.token_urlsafe(16)
            now = self.clock.now()
            await self.store.put(
                OUTBOX, jti,
                {"client_id": client_id, "uri": uri, "user_id": user_id, "sid": sid,
                 "attempt": 0, "due": now + self.timeout + 1},  # ours to start first
                expires_at=now + OUTBOX_TTL,
            )
            self._spawn(jti)
            queued += 1
        return queued

    # -- delivery --------------------------------------------------------------------

    def _spawn(self, jti: str) -> None:
        if jti in self._tasks:
            return
        task = asyncio.create_task(self._deliver(jti), name="authstate-backchannel")
        self._tasks[jti] = task
        task.add_done_callback(lambda _: self._tasks.pop(jti, None))

    async def _deliver(self, jti: str) -> None:
        try:
            await self._deliver_entry(jti)
        except StoreUnavailable as error:  # the pump takes it over when the store is back
            logger.warning("back-channel logout postponed: %s", error.message)

    async def _deliver_entry(self, jti: str) -> None:
        record = await self.store.get(OUTBOX, jti)
        if record is None:
            return
        entry = dict(record.value)
        attempt = int(entry.get("attempt", 0))
        problem: str | None = "not attempted"
        resumed = attempt  # a pump resumes after ``due``, which included the wait
        while attempt < self.attempts:
            if attempt > resumed and await self._stopped_within(
                    self.backoff * 2 ** (attempt - 1)):
                return  # the entry stays in the outbox for a pump to resume
            attempt += 1
            # the deadline of this attempt: past it, another instance's pump takes over
            await self.store.patch(OUTBOX, jti, {
                "attempt": attempt,
                "due": self.clock.now() + self.timeout + self.backoff * 2 ** attempt + 1,
            })
            problem = await self._post(entry, jti)
            if problem is None:
                await self.store.delete(OUTBOX, jti)
                await self.audit.record(
                    "backchannel_logout_sent", user_id=entry["user_id"],
                    detail={"client_id": entry["client_id"], "attempts": attempt},
                )
                return
        await self.store.delete(OUTBOX, jti)
        await self.audit.record(
            "backchannel_logout_failed", user_id=entry["user_id"],
            detail={"client_id": entry["client_id"], "attempts": attempt, "error": problem},
        )

    async def _post(self, entry: dict[str, Any], jti: str) -> str | None:
        """One POST; None on success, else a short reason (no token in it)."""
        now = self.clock.now()
        try:
            token = sign(self.keys, logout_claims(self.issuer, entry["client_id"],
                                                  entry["user_id"], entry["sid"], jti, now),
                         typ=TOKEN_TYPE, now=now)
        except AuthstateError as error:
            return error.code
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        try:
            answer = await self._http.post(entry["uri"], data={"logout_token": token},
                                           headers={"Cache-Control": "no-store"})
        except httpx.HTTPError as error:
            return type(error).__name__
        if 200 <= answer.status_code < 300:
            return None
        return f"HTTP {answer.status_code}"

    # -- the outbox pump -----------------------------------------------------------

    async def pump(self) -> int:
        """Take over outbox entries whose deliverer is gone (``due`` passed); how many."""
        now = self.clock.now()
        taken = 0
        for record in await self.store.scan(OUTBOX, limit=1000):
            if record.key not in self._tasks and float(record.value.get("due", 0)) <= now:
                self._spawn(record.key)
                taken += 1
        return taken

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait ``seconds``; True as soon as ``close`` is called."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return self._stop.is_set()

    async def _pump_forever(self) -> None:
        while not await self._stopped_within(self.interval):
            try:
                await self.pump()
            except StoreUnavailable as error:
                logger.warning("back-channel outbox not read: %s", error.message)

    def start(self) -> None:
        """Run the pump every ``interval`` seconds (not at once: a process that only
        runs one command should not scan the outbox on its way)."""
        if self._pump is None:
            self._stop = asyncio.Event()
            self._pump = asyncio.create_task(self._pump_forever(), name="authstate-bcl-pump")

    async def drain(self) -> None:
        """Wait for the deliveries under way (tests, an orderly shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        """Stop: an attempt under way finishes (at most ``timeout``; so a CLI command
        that ended a session delivers before it exits), no retry waits; what is left
        stays in the outbox for the next pump. Cancelling is the last resort only."""
        self._stop.set()
        tasks = [t for t in (self._pump, *self._tasks.values()) if t is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.timeout + 1)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._pump = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None
