"""Who is calling, as every authentication method reports it."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from authstate.sessions import Session

Method = Literal["session", "jwt", "opaque"]
# The default for claims: read-only, so the one object every Identity shares cannot be
# changed through one of them (a mutable {} default would be shared and writable).
NO_CLAIMS: Mapping[str, Any] = MappingProxyType({})


class Identity(NamedTuple):
    """The result of authenticating one request; holds no credential.

    A NamedTuple, like ``Session`` and for the same reason: one is built per request,
    and a frozen dataclass costs a few microseconds more to build than this."""

    user_id: str
    method: Method
    expires_at: float
    sid: str | None = None
    scope: tuple[str, ...] = ()
    claims: Mapping[str, Any] = NO_CLAIMS
    session: Session | None = None
