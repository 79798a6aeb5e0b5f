"""Time as an injectable seam, so tests move time instead of sleeping."""

from __future__ import annotations

import math
import time
from typing import Protocol

from authstate.errors import InvalidClaim, MissingClaim

# The last second a datetime can hold (9999-12-31T23:59:59Z). A NumericDate past it (or
# before 1970) is no date anyone issues; bounding it where it comes in keeps every later
# use (comparisons, ``datetime.fromtimestamp``, a store's expiry) from overflowing.
NUMERIC_DATE_MAX = 253_402_300_799
# Clock skew a verifier accepts on exp/nbf/iat; the one bound settings and verifiers share.
LEEWAY_DEFAULT = 30
LEEWAY_MAX = 300  # RFC 7519 §4.1.4 allows "small" leeway; more hides clock bugs
# Over an hour, an access token is a long-lived credential: issuing one needs an explicit
# allow_long_lifetime, and ``authstate inspect`` warns about one.
LONG_LIFETIME = 3600
ACCESS_TTL_DEFAULT = 600  # 10 minutes: short enough that revocation by expiry is quick


class Clock(Protocol):
    """Wall-clock seconds since the epoch, as a float."""

    def now(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()


class FrozenClock:
    """A clock that only moves when told to; for tests and reproducible runs."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def set(self, when: float) -> None:
        self._now = when


def numeric_date(value: object, name: str) -> int:
    """A NumericDate (RFC 7519 §2) from outside (a token, an introspection answer) as
    whole seconds: a JSON number, never a string or a boolean (``MissingClaim``), and
    between 1970 and the end of year 9999 (``InvalidClaim``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MissingClaim(f"the {name} claim must be a number")
    seconds = int(value)
    if not 0 <= seconds <= NUMERIC_DATE_MAX:
        raise InvalidClaim(f"the {name} claim is not a date between 1970 and 9999")
    return seconds
