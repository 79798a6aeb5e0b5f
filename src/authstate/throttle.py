"""Login throttling: every attempt takes a slot per account and per client IP, first.

An attempt is counted *before* its password is checked, with one atomic store operation
per counter (``Store.incr_below``): the store adds one only while the counter is below
the limit, so however many guesses arrive at once, at most ``account_limit`` of them per
account (and ``ip_limit`` per IP) get as far as argon2. An attempt that finds either
counter full is refused with ``Throttled`` (HTTP 429 + ``Retry-After``) and changes
nothing: the account slot it took is given back when the IP refuses it, so a refused
attempt costs no budget. Reading the counter, hashing, and counting afterwards (as
this module once did) let a burst of parallel guesses all pass the read together.

How an attempt settles:

- **failure** (wrong password, unknown account): its slots stay taken until the window
  ends. A failure writes nothing more; it was counted when it started.
- **success**: gives back its own two slots (``Store.decr``), so successful logins never
  use up a limit. It never deletes or resets a counter: failures already counted, and
  attempts still in flight, stay counted until the window ends. (Wiping the counter on
  success, as this module once did, let a correct password in flight erase the
  concurrent guesses counted against the account.)
- **anything else** (the store failed, the task was cancelled): the slots stay taken.
  Failing closed costs a legitimate user at most one slot.

Counters are fixed windows (the expiry is set when the store creates the counter), keyed
by the window's index, so every instance on one store shares them and ``Retry-After`` is
the time left in the window (an upper bound: a success in flight may free a slot sooner).
The account key is a digest of the normalised address, so an unknown address is
throttled exactly like a known one (no enumeration) and the store holds no addresses in
counter keys. A store outage raises ``StoreUnavailable``: the caller fails closed.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from authstate.clock import Clock
from authstate.errors import Throttled
from authstate.stores.base import Store

KIND = "throttle"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One admitted attempt: the counters it holds a slot in, and its slot numbers."""

    account_key: str
    ip_key: str
    account_slot: int
    ip_slot: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a failure did: the counts it was admitted at and whether it took the last slot."""

    account_failures: int
    ip_failures: int
    tripped: bool


class LoginThrottle:
    def __init__(
        self,
        store: Store,
        *,
        clock: Clock,
        account_limit: int = 5,
        ip_limit: int = 50,
        window: int = 15 * 60,
    ) -> None:
        self.store = store
        self.clock = clock
        self.account_limit = account_limit
        self.ip_limit = ip_limit
        self.window = window

    def _window(self) -> tuple[int, float]:
        index = int(self.clock.now() // self.window)
        return index, float((index + 1) * self.window)

    @staticmethod
    def _account_key(account: str, index: int) -> str:
        digest = hashlib.sha256(account.strip().lower().encode("utf-8", "replace")).hexdigest()
        return f"a:{digest[:32]}:{index}"

    @staticmethod
    def _ip_key(ip: str | None, index: int) -> str:
        return f"i:{(ip or 'unknown')[:64]}:{index}"

    def _retry_after(self, window_end: float) -> int:
        return max(1, math.ceil(window_end - self.clock.now()))

    async def admit(self, account: str, ip: str | None) -> Attempt:
        """Take a slot for this account and this IP before any password work, or raise
        ``Throttled`` (with nothing taken) when either has none left in this window."""
        index, end = self._window()
        account_key, ip_key = self._account_key(account, index), self._ip_key(ip, index)
        account_slot = await self.store.incr_below(
            KIND, account_key, limit=self.account_limit, expires_at=end
        )
        if account_slot is None:
            raise self._throttled(end)
        ip_slot = await self.store.incr_below(KIND, ip_key, limit=self.ip_limit, expires_at=end)
        if ip_slot is None:
            await self.store.decr(KIND, account_key)
            raise self._throttled(end)
        return Attempt(account_key, ip_key, account_slot, ip_slot)

    def failed(self, attempt: Attempt) -> Verdict:
        """A failure keeps its slots (nothing to write); whether it took a last slot."""
        tripped = (
            attempt.account_slot == self.account_limit or attempt.ip_slot == self.ip_limit
        )
        return Verdict(attempt.account_slot, attempt.ip_slot, tripped)

    async def succeeded(self, attempt: Attempt) -> None:
        """Give back this attempt's own slots; every other count stays."""
        await self.store.decr(KIND, attempt.account_key)
        await self.store.decr(KIND, attempt.ip_key)

    async def forget(self, account: str) -> None:
        """Delete the account's counters (a deleted user): this window's and the last
        one's, the only ones that can still be live."""
        index, _ = self._window()
        for i in (index, index - 1):
            await self.store.delete(KIND, self._account_key(account, i))

    def _throttled(self, window_end: float) -> Throttled:
        return Throttled(
            "too many failed logins; try again later",
            retry_after=self._retry_after(window_end),
        )

    def retry_after(self) -> int:
        """Seconds until the current window ends."""
        _, end = self._window()
        return self._retry_after(end)
