"""Access-token revocation: three policies, checked from a local copy that a bus keeps fresh.

A signed token stays valid until it expires unless the verifier knows better. The
policies, each switched on in ``Settings``:

- **denylist**: a revoked ``jti`` is remembered until that token's ``exp`` (+ leeway),
  so the list never outgrows the tokens still alive;
- **token version**: a per-user counter, stamped into tokens as ``ver``; bumping it
  revokes every earlier token of that user in O(1);
- **session-bound**: ending a session leaves a tombstone for its ``sid`` for as long as an
  access token can live, and tokens carrying that ``sid`` are refused.

The store is the source of truth. With push revocation each revoking call also publishes
an event, and every verifier process keeps a bounded, expiring copy of what is revoked, so
the per-request check is a few dictionary lookups. The copy is trusted only while its bus
is connected and after a full resynchronisation from the store that followed the latest
(re)connection; otherwise each check reads the store or is refused (``bus_fallback``),
so a revoked token is never accepted because a message was missed.

Store layout. Keys of the scanned kinds are SHA-256 hex digests, so a resync can page
through any number of them by hex prefix with the plain ``scan``:

- ``deny``        sha256(jti)            ``{"jti"}``          until exp + leeway
- ``revoked_sid`` sha256(sid)            ``{"sid"}``          until now + token lifetime
- ``ver``         user id                the counter (``incr``), kept forever, read at issue
- ``ver_bump``    sha256(user \\0 n)      ``{"sub", "ver"}``   until now + token lifetime

A bump older than the longest token lifetime cannot reject a live token (every live token
was issued after it and carries its number), so the copy needs only the recent bumps.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from authstate.bus.base import JSON, Bus
from authstate.clock import Clock, SystemClock
from authstate.errors import BusUnavailable, StoreUnavailable, TokenRevoked
from authstate.outage import OutageLog
from authstate.stores.base import Record, Store

if TYPE_CHECKING:
    from authstate.tokens.access import VerifiedTokenCache

logger = logging.getLogger("authstate.revocation")

DENY = "deny"
SID = "revoked_sid"
VERSION = "ver"
BUMP = "ver_bump"
SCAN_PAGE = 1000
HEX = "0123456789abcdef"
MAX_ENTRIES = 1_000_000
RESYNC_INTERVAL = 60.0  # also repairs a copy that missed an event whose publish failed
PURGE_INTERVAL = 1.0
PUBLISH_DRAIN = 2.0  # seconds close() waits for background publishes

Mode = Literal["push", "store", "reject"]
EventHook = Callable[[JSON], None]


def _h(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Policies:
    """Which checks run; each is one ``revocation_*`` setting."""

    denylist: bool = True
    token_version: bool = True
    session_bound: bool = True


class Revocations:
    """Revoke access tokens, and check claims against what is revoked.

    ``lifetime`` is the longest an access token can be accepted (its ttl plus the
    verifier's leeway); ``leeway`` is added to a denied token's ``exp``.

    What rests on the local copy is given here, at construction: ``cache``, the
    verified-token cache of the ``AccessTokens`` that checks tokens against this copy
    (each revocation evicts the tokens it names; a resync empties it, since it may have
    learnt revocations the bus never delivered); ``sync_keys``, run when a key event
    arrives and after each resync (the key set lives in the store); ``on_lag``, told the
    seconds from publish to arrival of each bus event (metrics). ``on_event`` lists
    observers of applied events (the bench's delay measurement).
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        policies: Policies | None = None,
        lifetime: float,
        leeway: float = 0.0,
        bus: Bus | None = None,
        fallback: Literal["store", "reject"] = "store",
        max_entries: int = MAX_ENTRIES,
        resync_interval: float = RESYNC_INTERVAL,
        cache: VerifiedTokenCache | None = None,
        sync_keys: Callable[[], Awaitable[object]] | None = None,
        on_lag: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.policies = policies or Policies()
        self.lifetime = lifetime
        self.leeway = leeway
        self.bus = bus
        self.fallback = fallback
        self.max_entries = max_entries
        self.resync_interval = resync_interval
        self.cache = cache
        self.sync_keys = sync_keys
        self.on_lag = on_lag
        self.on_event: list[EventHook] = []
        self._key_syncs: set[asyncio.Task[object]] = set()
        self._publishing: set[asyncio.Task[None]] = set()  # announce_session_changed(wait=False)
        self.resyncs = 0
        self.events = 0
        # tags what this instance publishes, so it skips its own events when the bus
        # delivers them back (they were applied here before publishing)
        self.origin = secrets.token_hex(8)
        self._deny: dict[str, float] = {}
        self._sids: dict[str, float] = {}
        self._versions: dict[str, tuple[int, float]] = {}
        self._expiry: list[tuple[float, str, str]] = []
        self._started = False
        self._bus_up = False
        self._overflow = False
        self.local = False
        self._periodic: asyncio.Task[None] | None = None
        self._outage = OutageLog(logger, "revocation store")

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the bus (if any); until the first resync succeeds, checks use the
        fallback."""
        if self._started or self.bus is None:
            return
        self._started = True
        await self.bus.start(self)
        self._periodic = asyncio.create_task(self._maintain())

    async def close(self) -> None:
        for task in list(self._key_syncs):
            task.cancel()
        if self._publishing:  # events announced without waiting still go out
            await asyncio.wait(list(self._publishing), timeout=PUBLISH_DRAIN)
        if self._periodic is not None:
            self._periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._periodic
            self._periodic = None
        if self.bus is not None:
            await self.bus.close()
        self._bus_up = False
        self._started = False
        self._update()

    @property
    def mode(self) -> Mode:
        """How a check is answered right now."""
        if not self._started:
            return "store"
        if self._bus_up and not self._overflow:
            return "push"
        return "store" if self._overflow else self.fallback

    def _update(self) -> None:
        self.local = self.mode == "push"

    # -- the bus listener ------------------------------------------------------------

    async def bus_connected(self) -> None:
        await self.resync()
        self._bus_up = True
        self._update()

    def bus_event(self, event: JSON) -> None:
        self.events += 1
        if event.get("o") == self.origin:
            return  # applied when it was announced; applying it again would only cost
        sent = event.get("at")
        if self.on_lag is not None and isinstance(sent, int | float):
            self.on_lag(self.clock.now() - sent)
        self._apply(event)

    def bus_lost(self, error: BaseException) -> None:
        self._bus_up = False
        self._update()

    async def resync(self) -> None:
        """Merge every live revocation in the store into the local copy. Entries are only
        ever added (and dropped when they expire), so events that arrive meanwhile are
        never undone by it. Then the verified-token cache is emptied and the key set
        synced: the bus may have missed changes to either."""
        now = self.clock.now()
        kinds = [
            (DENY, self.policies.denylist),
            (SID, self.policies.session_bound),
            (BUMP, self.policies.token_version),
        ]
        records: list[tuple[str, Record]] = []
        for kind, enabled in kinds:
            if enabled:
                records += [(kind, r) for r in await self._scan_all(kind, "")]
        if len(records) > self.max_entries:
            self._drop_copy("more live revocations than max_entries")
            return
        self._overflow = False
        self._update()
        for kind, record in records:
            until = record.expires_at if record.expires_at is not None else now + self.lifetime
            event = _event_from_record(kind, record.value, until)
            if event is not None:
                self._apply(event, notify=False)
        if self.cache is not None:
            self.cache.clear()
        if self.sync_keys is not None:
            await self.sync_keys()
        self.resyncs += 1

    async def _scan_all(self, kind: str, prefix: str) -> list[Record]:
        page = await self.store.scan(kind, prefix=prefix, limit=SCAN_PAGE)
        if len(page) < SCAN_PAGE or len(prefix) >= 64:
            return page
        found: list[Record] = []
        for c in HEX:
            found += await self._scan_all(kind, prefix + c)
        return found

    async def _maintain(self) -> None:
        """Drop expired entries every second (the request path never does), and resync
        every ``resync_interval``."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(min(PURGE_INTERVAL, self.resync_interval))
            self.purge()
            if self._bus_up and time.monotonic() - last >= self.resync_interval:
                last = time.monotonic()
                try:
                    await self.resync()
                    self._outage.recovered()
                except StoreUnavailable as error:
                    self._outage.failed(error)

    # -- revoking --------------------------------------------------------------------

    async def revoke_jti(self, jti: str, exp: float) -> None:
        """Deny one access token until it would have expired anyway."""
        until = exp + self.leeway
        if until <= self.clock.now():
            return
        await self.store.put(DENY, _h(jti), {"jti": jti}, expires_at=until)
        await self._announce({"t": "jti", "jti": jti, "until": until})

    async def revoke_sid(self, sid: str) -> None:
        """Refuse every access token bound to the session ``sid``."""
        until = self.clock.now() + self.lifetime
        await self.store.put(SID, _h(sid), {"sid": sid}, expires_at=until)
        await self._announce({"t": "sid", "sid": sid, "until": until})

    async def bump_version(self, user_id: str) -> int:
        """Revoke every access token issued to ``user_id`` so far; the new version."""
        version = await self.store.incr(VERSION, user_id)
        until = self.clock.now() + self.lifetime
        await self.store.put(
            BUMP, _h(f"{user_id}\0{version}"), {"sub": user_id, "ver": version},
            expires_at=until,
        )
        await self._announce({"t": "ver", "sub": user_id, "ver": version, "until": until})
        return version

    async def version(self, user_id: str) -> int:
        """The version to stamp into a token issued now (0 before any bump)."""
        record = await self.store.get(VERSION, user_id)
        return int(record.value["n"]) if record is not None else 0

    async def announce_user_changed(self, user_id: str) -> None:
        """Tell every process that a user record changed (scopes, admin flag, disabled):
        each drops its cached copy (``UserCache``). Nothing is stored: a resync empties
        those caches anyway, so a missed event cannot outlive the next one."""
        await self._announce({"t": "user", "sub": user_id})

    async def announce_session_changed(self, key: str, *, wait: bool = True) -> None:
        """Tell every process that the session stored under ``key`` (its ID's digest, the
        store key: never the ID) changed or ended: each drops its cached copy
        (``SessionCache``). Nothing more is stored: the change itself is in the store.

        ``wait=False`` (a change of the session's data, not its end) applies the event
        here at once and publishes it in the background, sparing the write a bus round
        trip: other processes see the change as soon as they would have anyway (the
        publish goes out right away), the caller just does not wait for it."""
        event: JSON = {"t": "sess", "key": key}
        if wait:
            await self._announce(event)
            return
        self._apply(event)
        if self.bus is not None:
            task = asyncio.get_running_loop().create_task(self._publish(self.bus, event))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    async def announce_key_retired(self, kid: str) -> None:
        """Tell every verifier to drop a signing key (the key set lives in the store)."""
        await self._announce({"t": "key", "kid": kid})

    async def _announce(self, event: JSON) -> None:
        """Apply here at once (this process never accepts what it just revoked), then
        publish. A failed publish is logged, not raised: the revocation is in the store,
        verifiers without a bus read it there, and the periodic resync repairs the rest."""
        self._apply(event)
        if self.bus is not None:
            await self._publish(self.bus, event)

    async def _publish(self, bus: Bus, event: JSON) -> None:
        try:
            await bus.publish({**event, "at": self.clock.now(), "o": self.origin})
        except BusUnavailable as error:
            logger.error("revocation event %s not published: %s", event["t"], error)

    # -- the local copy --------------------------------------------------------------

    def _apply(self, event: JSON, *, notify: bool = True) -> None:
        now = self.clock.now()
        kind = event.get("t")
        until = event.get("until")
        try:
            if kind == "jti" and self.policies.denylist:
                self._remember(self._deny, "jti", str(event["jti"]), float(until or 0), now)
            elif kind == "sid" and self.policies.session_bound:
                self._remember(self._sids, "sid", str(event["sid"]), float(until or 0), now)
            elif kind == "ver" and self.policies.token_version:
                self._remember_version(str(event["sub"]), int(event["ver"]),
                                       float(until or 0), now)
        except (KeyError, TypeError, ValueError):
            logger.warning("ignored a malformed revocation event of type %r", kind)
            return
        if notify:
            self._evict(event)
            for hook in self.on_event:
                hook(event)

    def _evict(self, event: JSON) -> None:
        """Drop the cached verifications an event revokes; reload the key set (in the
        background: this runs inside a bus callback) when a key changed."""
        kind, cache = event.get("t"), self.cache
        if kind == "key":
            if self.sync_keys is not None:
                task = asyncio.get_running_loop().create_task(self._sync_keys())
                self._key_syncs.add(task)
                task.add_done_callback(self._key_syncs.discard)
        elif cache is None:
            return
        elif kind == "jti":
            cache.forget(str(event.get("jti")))
        elif kind == "sid":
            cache.invalidate(lambda claims: claims.get("sid") == event.get("sid"))
        elif kind == "ver":
            cache.invalidate(lambda claims: claims.get("sub") == event.get("sub"))

    async def _sync_keys(self) -> object:
        assert self.sync_keys is not None
        return await self.sync_keys()

    def _remember(
        self, table: dict[str, float], kind: str, key: str, until: float, now: float
    ) -> None:
        if until <= now or table.get(key, 0.0) >= until:
            return
        table[key] = until
        self._expire_later(until, kind, key, now)

    def _remember_version(self, sub: str, version: int, until: float, now: float) -> None:
        if until <= now:
            return
        known = self._versions.get(sub)
        if known is not None and known[0] >= version and known[1] >= until:
            return
        if known is not None:
            version, until = max(version, known[0]), max(until, known[1])
        self._versions[sub] = (version, until)
        self._expire_later(until, "ver", sub, now)

    def _expire_later(self, until: float, kind: str, key: str, now: float) -> None:
        heapq.heappush(self._expiry, (until, kind, key))
        self._purge(now)
        if self.size > self.max_entries:
            self._drop_copy("the local revocation copy is full")

    def purge(self) -> None:
        """Forget entries that have expired. An expired entry still in the copy is
        harmless (the token it names has expired too), so this runs on a timer."""
        self._purge(self.clock.now())

    def _purge(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            until, kind, key = heapq.heappop(self._expiry)
            if kind == "ver":
                known = self._versions.get(key)
                if known is not None and known[1] <= until:
                    del self._versions[key]
            else:
                table = self._deny if kind == "jti" else self._sids
                if table.get(key, until + 1) <= until:
                    del table[key]

    def _drop_copy(self, why: str) -> None:
        """Too much to hold: forget the copy and read the store per request until a
        periodic resync finds that it fits again."""
        if not self._overflow:
            logger.error("%s; checking revocations in the store until it fits", why)
        self._overflow = True
        self._update()
        self._deny.clear()
        self._sids.clear()
        self._versions.clear()
        self._expiry.clear()

    @property
    def size(self) -> int:
        return len(self._deny) + len(self._sids) + len(self._versions)

    # -- checking --------------------------------------------------------------------

    async def check(self, claims: Mapping[str, Any]) -> None:
        """Raise ``TokenRevoked`` if these (verified) claims are revoked. With the bus
        down, raise ``BusUnavailable`` under the ``reject`` fallback; a store that cannot
        be read raises ``StoreUnavailable``: never an answer of "not revoked" by default."""
        mode = self.mode
        if mode == "push":
            self.check_local(claims)
        elif mode == "store":
            await self.check_store(claims)
        else:
            raise BusUnavailable("revocation bus down and bus_fallback is reject")

    def check_local(self, claims: Mapping[str, Any]) -> None:
        """The push-mode check, dictionary lookups only; valid while ``local`` is true
        (the hot path calls it directly then, skipping a coroutine)."""
        get = claims.get
        try:
            if get("jti") in self._deny or get("sid") in self._sids:
                raise TokenRevoked()
            known = self._versions.get(get("sub"))  # type: ignore[arg-type]
        except TypeError:  # an unhashable claim value: no token this service signs
            raise TokenRevoked() from None
        if known is not None and _ver(claims) < known[0]:
            raise TokenRevoked()

    async def check_store(self, claims: Mapping[str, Any]) -> None:
        """The fallback check: up to one store read per enabled policy."""
        jti, sid, sub = claims.get("jti"), claims.get("sid"), claims.get("sub")
        denied = (
            self.policies.denylist and isinstance(jti, str) and bool(jti)
            and await self.store.get(DENY, _h(jti)) is not None
        )
        ended = (
            self.policies.session_bound and isinstance(sid, str) and bool(sid)
            and await self.store.get(SID, _h(sid)) is not None
        )
        if denied or ended:
            raise TokenRevoked()
        if self.policies.token_version and isinstance(sub, str) and sub and (
            _ver(claims) < await self.version(sub)
        ):
            raise TokenRevoked()

def _ver(claims: Mapping[str, Any]) -> int:
    """A token's version; a token without one predates every bump."""
    ver = claims.get("ver", 0)
    return ver if isinstance(ver, int) and not isinstance(ver, bool) else 0


def _event_from_record(kind: str, value: JSON, until: float) -> JSON | None:
    if kind == DENY and "jti" in value:
        return {"t": "jti", "jti": value["jti"], "until": until}
    if kind == SID and "sid" in value:
        return {"t": "sid", "sid": value["sid"], "until": until}
    if kind == BUMP and "sub" in value and "ver" in value:
        return {"t": "ver", "sub": value["sub"], "ver": value["ver"], "until": until}
    return None
