"""Log a dependency outage once when it starts and once when it ends, never per request."""

from __future__ import annotations

import logging
from collections.abc import Callable


class OutageLog:
    """Tracks whether a dependency (store, bus) is down, so a flood of failing requests
    produces two log lines per outage instead of one per request."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._logger = logger
        self._what = what
        self._on_failure = on_failure
        self.down = False

    def failed(self, error: BaseException) -> None:
        """Every failure is counted (``on_failure``, e.g. a metric); only the first of an
        outage is logged."""
        if self._on_failure is not None:
            self._on_failure(error)
        if not self.down:
            self.down = True
            self._logger.error("%s unavailable, failing closed: %s", self._what, error)

    def recovered(self) -> None:
        if self.down:
            self.down = False
            self._logger.warning("%s available again", self._what)
