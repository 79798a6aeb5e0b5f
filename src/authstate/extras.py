"""Which optional install brings which modules, and the one check before using them.

The core install (``pip install authstate``) is the library, JWT verification, the memory
and SQLite stores and the CLI's non-serving commands. The engines and the service are
extras: ``authstate[redis]``, ``authstate[postgres]`` and ``authstate[server]`` (FastAPI,
uvicorn, Jinja2: ``authstate serve``, ``authstate bench``). Backends import their driver
inside their own module and raise ``MissingDependencyError`` naming the extra; commands
that need the service call ``require`` before importing it. Either way a user reads what
to install, not a traceback from deep inside an import.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Final

from authstate.errors import MissingDependencyError

__all__ = ["EXTRAS", "require"]

EXTRAS: Final[dict[str, tuple[str, ...]]] = {
    "redis": ("redis",),
    "postgres": ("psycopg", "psycopg_pool"),
    "server": ("fastapi", "starlette", "uvicorn", "jinja2"),
    "flask": ("flask",),
    "django": ("django",),
}


def require(extra: str) -> None:
    """Raise ``MissingDependencyError`` naming ``extra`` unless all its modules are
    installed; found without importing them, so the check itself costs nothing."""
    for module in EXTRAS[extra]:
        if find_spec(module) is None:
            raise MissingDependencyError(module, extra)
