"""Which scopes a request gets: what it asked for, within what the user and the client
may have, or ``InvalidScope`` (RFC 6749 §3.3); never silently less.

``BASE`` (``openid profile email``) describes the user to the user's own apps, so every
user and every client may have it without a grant; any other scope must be allowed to
both the user (``authstate users set-scopes``) and the client (``clients add --scope``).
A request without ``scope`` gets no scope at all (RFC 6749 §3.3 lets the server pick the
default; "nothing" cannot surprise anyone).
"""

from __future__ import annotations

from collections.abc import Iterable

from authstate.errors import InvalidScope
from authstate.users import SCOPE_PATTERN

BASE = frozenset({"openid", "profile", "email"})
MAX_SCOPES = 64


def parse(value: str | None) -> tuple[str, ...]:
    """The scopes of a ``scope`` parameter (space-separated), sorted, without repeats;
    ``InvalidScope`` for a malformed one."""
    if value is None:
        return ()
    items = value.split(" ")
    if len(items) > MAX_SCOPES or any(not SCOPE_PATTERN.fullmatch(item) for item in items if item):
        raise InvalidScope("a scope is 1-64 letters, digits, colons, dots, dashes or "
                           "underscores, separated by spaces")
    return tuple(sorted({item for item in items if item}))


def check_names(scopes: Iterable[str]) -> tuple[str, ...]:
    """Scopes to allow a client or user, validated, sorted, without repeats."""
    return parse(" ".join(scopes))


def within(requested: tuple[str, ...], allowed: Iterable[str], whose: str) -> None:
    """``InvalidScope`` unless every requested scope is in ``allowed`` or ``BASE``."""
    refused = sorted(set(requested) - BASE - set(allowed))
    if refused:
        raise InvalidScope(f"scope not allowed for this {whose}: {' '.join(refused)}")


def space(scopes: Iterable[str]) -> str:
    """The RFC 6749 §3.3 form: space-separated."""
    return " ".join(scopes)
