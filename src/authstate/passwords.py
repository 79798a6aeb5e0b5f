"""Password hashing with argon2id (argon2-cffi), rehashed on login when parameters change.

The cost parameters come from settings, so raising them later upgrades every account on
its next successful login (``needs_rehash``) without a migration. Hashing is CPU- and
memory-bound work, so the async wrappers run it in a worker thread and the event loop
keeps serving other requests meanwhile.

Passwords are checked for length only (NIST SP 800-63B §3.1.1.2: at least 8 characters,
no composition rules, accept long passphrases); the upper bound keeps one request from
buying unbounded work.
"""

from __future__ import annotations

import asyncio
import secrets

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from authstate.errors import ConfigurationError, InvalidInput

MIN_LENGTH = 8  # NIST SP 800-63B §3.1.1.2
MAX_LENGTH = 1024


def check_strength(password: str) -> None:
    """Refuse a new password that is too short or absurdly long."""
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"a password has at most {MAX_LENGTH} characters")


class PasswordHasher:
    """argon2id with the configured cost; every hash carries its own parameters."""

    def __init__(
        self, *, time_cost: int = 2, memory_kib: int = 19 * 1024, parallelism: int = 1
    ) -> None:
        if memory_kib < 8 * parallelism:
            raise ConfigurationError("password_memory_kib must be at least 8 times parallelism")
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        return str(self._hasher.hash(password))

    def verify(self, password_hash: str, password: str) -> bool:
        """True when ``password`` matches; a corrupt hash is a mismatch, not a crash."""
        try:
            return bool(self._hasher.verify(password_hash, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return bool(self._hasher.check_needs_rehash(password_hash))
        except (InvalidHashError, ValueError):
            return True

    @property
    def dummy_hash(self) -> str:
        """A hash of a random password with the current parameters, verified against
        when the account does not exist so that the answer takes the same time."""
        if self._dummy is None:
            self._dummy = self.hash(secrets.token_urlsafe(16))
        return self._dummy

    async def hash_async(self, password: str) -> str:
        return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, password_hash: str, password: str) -> bool:
        return await asyncio.to_thread(self.verify, password_hash, password)
