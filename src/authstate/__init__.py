"""authstate: server-side sessions, JWTs and the hybrid, with revocation that works.

The promised public face is small: ``from authstate import AuthState, Settings, errors``.
Everything else is importable from its module but not promised.
"""

from __future__ import annotations

from authstate import errors
from authstate.clock import Clock, FrozenClock, SystemClock
from authstate.config import Settings
from authstate.identity import Identity
from authstate.sessions import Session
from authstate.state import AuthState
from authstate.stores import Store, open_store

__version__ = "0.1.0"

__all__ = [
    "AuthState",
    "Clock",
    "FrozenClock",
    "Identity",
    "Session",
    "Settings",
    "Store",
    "SystemClock",
    "__version__",
    "errors",
    "open_store",
]
