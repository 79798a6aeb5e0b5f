"""Login throttling: failed attempts counted per account and per client IP in the store.

Counters are fixed windows (``store.incr`` sets the expiry only when it creates the
counter), keyed by the window's index, so every instance on one store shares them and
``Retry-After`` is simply the time left in the window. The account key is a digest of the
normalised address, so an unknown address is throttled exactly like a known one (no
enumeration) and the store holds no addresses in counter keys.

Only failures count; a success clears the account's counter (not the IP's, so one valid
account cannot launder an IP's guessing). A store outage raises ``StoreUnavailable``:
the caller fails closed.
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
class Verdict:
    """What a failure did: the counts after it and whether it just crossed a limit."""

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

    async def check(self, account: str, ip: str | None) -> None:
        """Raise ``Throttled`` when this account or IP has used up its failures."""
        index, end = self._window()
        for key, limit in (
            (self._account_key(account, index), self.account_limit),
            (self._ip_key(ip, index), self.ip_limit),
        ):
            record = await self.store.get(KIND, key)
            if record is not None and int(record.value.get("n", 0)) >= limit:
                raise Throttled(
                    "too many failed logins; try again later",
                    retry_after=self._retry_after(end),
                )

    async def failed(self, account: str, ip: str | None) -> Verdict:
        """Count one failure against both keys."""
        index, end = self._window()
        per_account = await self.store.incr(
            KIND, self._account_key(account, index), expires_at=end
        )
        per_ip = await self.store.incr(KIND, self._ip_key(ip, index), expires_at=end)
        tripped = per_account == self.account_limit or per_ip == self.ip_limit
        return Verdict(per_account, per_ip, tripped)

    async def succeeded(self, account: str) -> None:
        index, _ = self._window()
        await self.store.delete(KIND, self._account_key(account, index))

    def retry_after(self) -> int:
        """Seconds until the current window ends."""
        _, end = self._window()
        return self._retry_after(end)
