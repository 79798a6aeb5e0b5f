"""Confidential clients of the introspection and revocation endpoints (RFC 7662, RFC 7009).

A client has a public ID and a random 256-bit secret shown once, at creation; the store
keeps only the secret's SHA-256 (a slow hash adds nothing for a secret with 256 bits of
entropy). The check is constant-time and does the same work for an unknown client ID.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from authstate.clock import Clock
from authstate.errors import InvalidInput
from authstate.stores.base import Store

KIND = "client"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
ID_PATTERN = re.compile(r"^c_[A-Za-z0-9_-]{16}$")
_DUMMY_DIGEST = hashlib.sha256(b"no such client").hexdigest()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True, slots=True)
class Client:
    id: str
    name: str
    created_at: float


class Clients:
    def __init__(self, store: Store, *, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def create(self, name: str) -> tuple[Client, str]:
        """A new client and its secret (the only time the secret exists in plain)."""
        if not NAME_PATTERN.match(name):
            raise InvalidInput(
                "a client name is 1-64 letters, digits, spaces, dots, dashes or underscores"
            )
        client_id = "c_" + secrets.token_urlsafe(12)
        secret = secrets.token_urlsafe(32)
        now = self.clock.now()
        await self.store.put(
            KIND, client_id, {"name": name, "created_at": now, "secret_sha256": _digest(secret)}
        )
        return Client(client_id, name, now), secret

    async def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The client when ``secret`` is its secret, else None."""
        record = None
        if ID_PATTERN.match(client_id):
            record = await self.store.get(KIND, client_id)
        expected = record.value["secret_sha256"] if record is not None else _DUMMY_DIGEST
        matches = hmac.compare_digest(_digest(secret), expected)
        if record is None or not matches:
            return None
        return Client(client_id, record.value["name"], record.value["created_at"])

    async def list(self, *, limit: int = 1000) -> list[Client]:
        records = await self.store.scan(KIND, limit=limit)
        clients = [Client(r.key, r.value["name"], r.value["created_at"]) for r in records]
        return sorted(clients, key=lambda c: c.created_at)
