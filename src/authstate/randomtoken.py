"""Random bearer secrets: minted from 256 bits, recognised by shape, stored as SHA-256.

Refresh tokens (``rt_…``) and opaque access tokens (``at_…``) are the same thing under
two prefixes, and session IDs are stored the same way; one definition keeps them from
drifting apart. The prefix lets a malformed or foreign credential be refused before the
store is asked.
"""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_BYTES = 32  # 256 bits; token_urlsafe gives 43 base64url characters


def digest(secret: str) -> str:
    """The stored form of a token or session ID; the plain value is never kept."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


class PrefixedToken:
    """The shape of one kind of token: ``prefix`` then 43 base64url characters."""

    __slots__ = ("_pattern", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._pattern = re.compile(rf"^{re.escape(prefix)}[A-Za-z0-9_-]{{43}}$")

    def mint(self) -> str:
        """A fresh token, to be given to its holder once."""
        return self.prefix + secrets.token_urlsafe(TOKEN_BYTES)

    def looks_like(self, token: object) -> bool:
        """Whether ``token`` has this shape (says nothing of its validity)."""
        return isinstance(token, str) and self._pattern.match(token) is not None
