"""Accounts: a ``user`` record by ID and an ``email`` record mapping the address to it.

The email record is written with ``store.create`` first, so two concurrent sign-ups of
one address cannot both win, on any backend. Only the argon2id hash of a password is
stored, and it never leaves this module: ``User`` does not carry it.

``authenticate`` does the same work whether the address is unknown or the password wrong
(it verifies against a dummy hash with the current parameters), so neither the answer nor
its timing tells a caller which accounts exist. A disabled account is checked the same
way: the password is verified first, and only then is the account found disabled
(``AccountDisabled``, which the front door answers exactly as a wrong password).

The record also holds what the account may do and whether it may log in at all:
``scopes`` (a sorted list of names matching ``SCOPE_PATTERN``: the scopes its tokens may
be granted) and ``disabled_at`` / ``disabled_reason`` (None while enabled). This module
only keeps them; what a change must end (sessions, tokens) is ``AuthState``'s business.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from authstate.clock import Clock
from authstate.errors import (
    AccountDisabled,
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    InvalidScope,
    NotFound,
)
from authstate.passwords import MAX_LENGTH, PasswordHasher, check_strength
from authstate.stores.base import JSON, Store

KIND_USER = "user"
KIND_EMAIL = "email"
EMAIL_MAX = 254  # RFC 5321 §4.5.3.1.3 path limit, less the angle brackets
EMAIL_PATTERN = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]{1,253}$")
USER_ID_PATTERN = re.compile(r"^u_[A-Za-z0-9_-]{16}$")
SCOPE_PATTERN = re.compile(r"[A-Za-z0-9:._-]{1,64}")  # fullmatch; RFC 6749 §3.3, narrowed
SCOPES_MAX = 100  # a user record stays small: it is read on every session request
REASON_MAX = 200


def check_scopes(scopes: object) -> tuple[str, ...]:
    """Scope names as stored: unique and sorted; ``InvalidScope`` for a bad name."""
    if isinstance(scopes, str) or not isinstance(scopes, list | tuple | set | frozenset):
        raise InvalidScope("scopes must be a list of names")
    names = set()
    for name in scopes:
        if not isinstance(name, str) or SCOPE_PATTERN.fullmatch(name) is None:
            raise InvalidScope("a scope name is 1 to 64 characters of A-Z a-z 0-9 : . _ -")
        names.add(name)
    if len(names) > SCOPES_MAX:
        raise InvalidScope(f"a user may hold at most {SCOPES_MAX} scopes")
    return tuple(sorted(names))


def check_reason(reason: str | None) -> str | None:
    """A disable reason as stored: printable, at most ``REASON_MAX`` characters."""
    if reason is None or not reason.strip():
        return None
    reason = reason.strip()
    if len(reason) > REASON_MAX or not reason.isprintable():
        raise InvalidInput(f"a reason is at most {REASON_MAX} printable characters")
    return reason


def normalize_email(email: str) -> str:
    """The canonical form used for uniqueness and look-up (trimmed, lower-cased)."""
    canonical = email.strip().lower()
    if len(canonical) > EMAIL_MAX or not EMAIL_PATTERN.match(canonical):
        raise InvalidInput("not a valid email address")
    return canonical


@dataclass(frozen=True, slots=True)
class User:
    """An account as the rest of authstate sees it (no password hash)."""

    id: str
    email: str
    is_admin: bool
    created_at: float
    password_changed_at: float
    scopes: tuple[str, ...] = ()
    disabled_at: float | None = None
    disabled_reason: str | None = None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    @classmethod
    def from_value(cls, user_id: str, value: JSON) -> User:
        disabled_at = value.get("disabled_at")
        return cls(
            id=user_id,
            email=value["email"],
            is_admin=bool(value.get("is_admin", False)),
            created_at=value["created_at"],
            password_changed_at=float(value.get("password_changed_at") or value["created_at"]),
            scopes=tuple(value.get("scopes") or ()),
            disabled_at=float(disabled_at) if disabled_at is not None else None,
            disabled_reason=value.get("disabled_reason"),
        )

    def public(self) -> dict[str, Any]:
        """What the API shows about a user."""
        return {"id": self.id, "email": self.email, "is_admin": self.is_admin,
                "scopes": list(self.scopes), "disabled": self.disabled}


class Users:
    """Create, find and authenticate accounts on any store."""

    def __init__(self, store: Store, *, clock: Clock, hasher: PasswordHasher) -> None:
        self.store = store
        self.clock = clock
        self.hasher = hasher

    async def create(self, email: str, password: str, *, admin: bool = False) -> User:
        canonical = normalize_email(email)
        check_strength(password)
        password_hash = await self.hasher.hash_async(password)
        user_id = "u_" + secrets.token_urlsafe(12)
        if not await self.store.create(KIND_EMAIL, canonical, {"user_id": user_id}):
            raise Conflict("a user with this email address already exists")
        now = self.clock.now()
        value: JSON = {
            "email": canonical,
            "is_admin": admin,
            "created_at": now,
            "password_changed_at": now,
            "password_hash": password_hash,
        }
        await self.store.put(KIND_USER, user_id, value)
        return User.from_value(user_id, value)

    async def get(self, user_id: str) -> User | None:
        if not isinstance(user_id, str) or not USER_ID_PATTERN.match(user_id):
            return None
        record = await self.store.get(KIND_USER, user_id)
        return User.from_value(user_id, record.value) if record is not None else None

    async def by_email(self, email: str) -> User | None:
        try:
            canonical = normalize_email(email)
        except InvalidInput:
            return None
        found = await self._find(canonical)
        return found[0] if found is not None else None

    async def list(self, *, limit: int = 1000) -> list[User]:
        records = await self.store.scan(KIND_USER, limit=limit)
        users = [User.from_value(r.key, r.value) for r in records]
        return sorted(users, key=lambda u: (u.created_at, u.email))

    async def authenticate(self, email: str, password: str) -> User:
        """The user with this email and password, or ``AuthenticationFailed`` (one error
        for an unknown address and a wrong password, after the same argon2 work)."""
        try:
            canonical = normalize_email(email)
        except InvalidInput:
            canonical = None
        found = await self._find(canonical) if canonical is not None else None
        if found is None or len(password) > MAX_LENGTH:
            await self.hasher.verify_async(self.hasher.dummy_hash, password[:MAX_LENGTH])
            raise AuthenticationFailed("wrong email or password")
        user, password_hash = found
        if not await self.hasher.verify_async(password_hash, password):
            raise AuthenticationFailed("wrong email or password")
        if user.disabled:
            raise AccountDisabled("wrong email or password")
        if self.hasher.needs_rehash(password_hash):
            await self.store.patch(
                KIND_USER, user.id, {"password_hash": await self.hasher.hash_async(password)}
            )
        return user

    async def check_password(self, user_id: str, password: str) -> bool:
        """Whether ``password`` is this user's current one (for re-authentication)."""
        record = await self.store.get(KIND_USER, user_id) if self._valid_id(user_id) else None
        if record is None or len(password) > MAX_LENGTH:
            await self.hasher.verify_async(self.hasher.dummy_hash, password[:MAX_LENGTH])
            return False
        return await self.hasher.verify_async(record.value["password_hash"], password)

    async def set_password(self, user_id: str, new_password: str) -> User:
        """Replace the password (the caller has already checked the old one)."""
        check_strength(new_password)
        password_hash = await self.hasher.hash_async(new_password)
        record = await self.store.patch(
            KIND_USER,
            user_id,
            {"password_hash": password_hash, "password_changed_at": self.clock.now()},
        )
        if record is None:
            raise InvalidInput("no such user")
        return User.from_value(user_id, record.value)

    async def set_scopes(self, user_id: str, scopes: object) -> User:
        """Replace the scopes the user may be granted (``InvalidScope`` for a bad name,
        ``NotFound`` for an unknown user)."""
        names = check_scopes(scopes)
        return await self._patch(user_id, {"scopes": list(names)})

    async def set_disabled(self, user_id: str, *, reason: str | None) -> User:
        """Mark the account disabled (login refused); what it ends is the caller's job."""
        return await self._patch(
            user_id, {"disabled_at": self.clock.now(), "disabled_reason": check_reason(reason)}
        )

    async def set_enabled(self, user_id: str) -> User:
        return await self._patch(user_id, {"disabled_at": None, "disabled_reason": None})

    async def set_admin(self, user_id: str, admin: bool) -> User:
        return await self._patch(user_id, {"is_admin": bool(admin)})

    async def delete(self, user_id: str) -> User | None:
        """Remove the account and its email mapping; what was removed, or None."""
        record = await self.store.delete(KIND_USER, user_id) if self._valid_id(user_id) else None
        if record is None:
            return None
        user = User.from_value(user_id, record.value)
        mapping = await self.store.get(KIND_EMAIL, user.email)
        if mapping is not None and mapping.value.get("user_id") == user_id:
            await self.store.delete(KIND_EMAIL, user.email)
        return user

    async def _patch(self, user_id: str, fields: JSON) -> User:
        """Merge ``fields`` into the user record atomically (``Store.patch``); a field
        set to None is stored as null, which ``from_value`` reads as absent."""
        record = await self.store.patch(KIND_USER, user_id, fields) if self._valid_id(
            user_id) else None
        if record is None:
            raise NotFound("no such user")
        return User.from_value(user_id, record.value)

    async def _find(self, canonical: str) -> tuple[User, str] | None:
        mapping = await self.store.get(KIND_EMAIL, canonical)
        user_id = mapping.value.get("user_id") if mapping is not None else "u_" + "0" * 16
        record = await self.store.get(KIND_USER, str(user_id))
        if mapping is None or record is None:
            return None
        return User.from_value(str(user_id), record.value), str(record.value["password_hash"])

    @staticmethod
    def _valid_id(user_id: str) -> bool:
        return isinstance(user_id, str) and USER_ID_PATTERN.match(user_id) is not None
