"""Who is calling, as every authentication method reports it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from authstate.sessions import Session

Method = Literal["session", "jwt", "opaque"]


@dataclass(frozen=True, slots=True)
class Identity:
    """The result of authenticating one request; holds no credential."""

    user_id: str
    method: Method
    expires_at: float
    sid: str | None = None
    scope: tuple[str, ...] = ()
    claims: dict[str, Any] = field(default_factory=dict)
    session: Session | None = None
