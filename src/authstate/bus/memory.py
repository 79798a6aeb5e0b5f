"""The in-process bus: for a single process (the memory store) and for tests.

Delivery is synchronous, inside ``publish``, so a revocation is seen by every listener in
the process before the revoking call returns. ``interrupt`` and ``restore`` take the bus
down and up again, so the fallback logic can be exercised without a network.
"""

from __future__ import annotations

from authstate.bus.base import JSON, BusListener, decode, encode
from authstate.errors import BusUnavailable


class MemoryBus:
    name = "memory"

    def __init__(self) -> None:
        self._listeners: list[BusListener] = []
        self._down: BaseException | None = None

    async def start(self, listener: BusListener) -> None:
        self._listeners.append(listener)
        if self._down is None:
            await listener.bus_connected()
        else:
            listener.bus_lost(self._down)

    async def publish(self, event: JSON) -> None:
        if self._down is not None:
            raise BusUnavailable("in-process bus interrupted")
        data = encode(event)
        for listener in list(self._listeners):
            decoded = decode(data)
            if decoded is not None:
                listener.bus_event(decoded)

    def interrupt(self, error: BaseException | None = None) -> None:
        """Simulate losing the connection: listeners are told, events are dropped."""
        self._down = error or BusUnavailable("in-process bus interrupted")
        for listener in list(self._listeners):
            listener.bus_lost(self._down)

    async def restore(self) -> None:
        """Reconnect: every listener resynchronises, as after a real reconnection."""
        self._down = None
        for listener in list(self._listeners):
            await listener.bus_connected()

    async def close(self) -> None:
        self._listeners.clear()
