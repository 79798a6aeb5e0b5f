"""authstate: server-side sessions, JWTs and the hybrid, with revocation that works.

The promised public face is small: ``from authstate import AuthState, Settings, errors``,
the ASGI ``AuthMiddleware``, and the ``Verifier`` for services that only verify tokens.
Everything else is importable from its module but not promised (the test clock is
``authstate.clock.FrozenClock``).

The names are loaded on first use (PEP 562), so ``import authstate.verifier`` in a
function or an edge worker pays for the JOSE layer only, not for settings, stores or the
middleware.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from authstate import errors
    from authstate.clock import Clock
    from authstate.config import Settings
    from authstate.identity import Identity
    from authstate.sessions import Session
    from authstate.state import AuthState
    from authstate.stores import Store, open_store
    from authstate.verifier import Verifier
    from authstate.web.middleware import AuthMiddleware

__version__ = "0.1.0"

__all__ = [
    "AuthMiddleware",
    "AuthState",
    "Clock",
    "Identity",
    "Session",
    "Settings",
    "Store",
    "Verifier",
    "__version__",
    "errors",
    "open_store",
]

# name -> the module that defines it (a module itself when the name is the module's)
_LAZY: dict[str, str] = {
    "AuthMiddleware": "authstate.web.middleware",
    "AuthState": "authstate.state",
    "Clock": "authstate.clock",
    "Identity": "authstate.identity",
    "Session": "authstate.sessions",
    "Settings": "authstate.config",
    "Store": "authstate.stores",
    "Verifier": "authstate.verifier",
    "errors": "authstate.errors",
    "open_store": "authstate.stores",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'authstate' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name == f"authstate.{name}" else getattr(module, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
