"""Who is calling, as every authentication method reports it."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from authstate.sessions import Session

if TYPE_CHECKING:  # the accounts module (and its password hashing) stays unimported here
    from authstate.users import User

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
    # The account record the session path read (or took from ``UserCache``), so that a
    # caller needing it (the service's own API) does not read it a second time.
    user: User | None = None
