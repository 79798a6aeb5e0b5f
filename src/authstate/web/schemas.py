"""The JSON shapes of the service's API, as its OpenAPI document shows them.

Request models cap every string, so a single field cannot buy unbounded work; response
models never have a field for a password hash or a session ID.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from authstate.passwords import MAX_LENGTH
from authstate.users import EMAIL_MAX, REASON_MAX, SCOPES_MAX, User


def when(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class UserOut(BaseModel):
    id: str
    email: str
    is_admin: bool

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, email=user.email, is_admin=user.is_admin)


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=1, max_length=EMAIL_MAX + 64)
    password: str = Field(min_length=1, max_length=MAX_LENGTH)


class LoginOut(BaseModel):
    user: UserOut
    csrf_token: str = Field(description="Send it as X-CSRF-Token on state-changing requests.")
    expires_at: datetime


class AuthOut(BaseModel):
    method: Literal["session", "jwt", "opaque"]
    expires_at: datetime


class MeOut(BaseModel):
    user: UserOut
    auth: AuthOut
    csrf_token: str | None = Field(None, description="Present for session-cookie callers.")


class SessionOut(BaseModel):
    id: str = Field(description="The session's public handle, never its secret ID.")
    created_at: datetime
    last_seen: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool


class SessionsOut(BaseModel):
    sessions: list[SessionOut]


class RevokedOut(BaseModel):
    revoked: int


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=MAX_LENGTH)
    new_password: str = Field(min_length=1, max_length=MAX_LENGTH)


class AccessTokenOut(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - RFC 6749 token type
    expires_in: int
    expires_at: datetime


class AdminUserOut(BaseModel):
    """A user as an admin sees it (never the password hash)."""

    id: str
    email: str
    is_admin: bool
    scopes: list[str]
    disabled: bool
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> AdminUserOut:
        return cls(
            id=user.id, email=user.email, is_admin=user.is_admin, scopes=list(user.scopes),
            disabled=user.disabled,
            disabled_at=when(user.disabled_at) if user.disabled_at is not None else None,
            disabled_reason=user.disabled_reason, created_at=when(user.created_at),
        )


class AdminUserPatch(BaseModel):
    """What an admin may change; each field given is applied (scopes, then admin, then
    disabled), each through ``AuthState`` and audited. A scope name outside
    ``[A-Za-z0-9:._-]{1,64}`` is a 400 ``invalid_scope``."""

    model_config = ConfigDict(extra="forbid")

    disabled: bool | None = None
    reason: str | None = Field(default=None, max_length=REASON_MAX)
    scopes: list[Annotated[str, Field(max_length=256)]] | None = Field(
        default=None, max_length=SCOPES_MAX
    )
    is_admin: bool | None = None


class AdminRevokedOut(BaseModel):
    revoked_sessions: int
    revoked_families: int


class HealthOut(BaseModel):
    status: Literal["ok"]
    store: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None


class OAuthErrorOut(BaseModel):
    """RFC 6749 §5.2."""

    error: str
    error_description: str | None = None


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry documenting problem answers for these statuses."""
    return {
        s: {
            "content": {"application/problem+json": {"schema": Problem.model_json_schema()}},
            "description": "problem details (RFC 9457)",
        }
        for s in statuses
    }
