"""Log a dependency outage once when it starts and once when it ends, never per request."""

from __future__ import annotations

import logging


class OutageLog:
    """Tracks whether a dependency (store, bus) is down, so a flood of failing requests
    produces two log lines per outage instead of one per request."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._logger = logger
        self._what = what
        self.down = False

    def failed(self, error: BaseException) -> None:
        if not self.down:
            self.down = True
            self._logger.error("%s unavailable, failing closed: %s", self._what, error)

    def recovered(self) -> None:
        if self.down:
            self.down = False
            self._logger.warning("%s available again", self._what)
