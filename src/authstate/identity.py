"""Who is calling, as every authentication method reports it."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from authstate.sessions import Session

Method = Literal["session", "jwt", "opaque"]


class Identity(NamedTuple):
    """The result of authenticating one request; holds no credential.

    A NamedTuple, like ``Session`` and for the same reason: one is built per request,
    and a frozen dataclass costs a few microseconds more to build than this."""

    user_id: str
    method: Method
    expires_at: float
    sid: str | None = None
    scope: tuple[str, ...] = ()
    claims: dict[str, Any] = {}  # never mutated; callers pass their own dict
    session: Session | None = None
