"""The data an app keeps in its visitors' sessions (a cart, a flash message, a wizard
step), framework-free: the ASGI middleware (``web/session_middleware.py``), the Django
engine (``django/sessions.py``) and the Flask interface (``flask/sessions.py``) load,
track and write it back with the functions here, so the three cannot differ.

The app's data is the top-level keys of ``Session.data`` except the reserved ones
(``csrf``, the session's CSRF token, which the front door owns; ``_expires_at``, the
expiry a framework set, such as Django's ``set_expiry``). Values are JSON.

**The merge rule.** A request writes back only the keys it changed (set, replaced,
mutated in place or deleted; found by comparing each key's JSON with what was loaded),
in one atomic ``SessionManager.update`` (``Store.merge``). So two concurrent requests of
one session that change different keys both land; when they change the same key, the
last one to write it wins for that key only. A key set to None is deleted (JSON Merge
Patch, RFC 7396). Nothing is written when nothing changed.

**The size cap.** The app's data is limited to ``MAX_BYTES`` of compact JSON (the
session's ``DATA_MAX_BYTES`` less room for the CSRF token a login adds), checked where
it can be (``SessionTooLarge`` from the assignment itself in the ASGI mapping) and
always by the store's merge at write-back (``SessionTooLarge`` then too, nothing
written), so concurrent writers cannot together push a session past it.

**Writes without a read.** Because the merge is per key and done by the store, a
request that only sets keys need not read the session first (``save_unread``): lazy
loading in the ASGI middleware uses this, so a write-only route costs one store write.

**Anonymous visitors** get a session (``SessionManager.create(None)``) only when the app
first writes to theirs: a request that writes nothing costs no store write. An anonymous
session emptied by the app is deleted, and its cookie cleared, as Starlette does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from authstate import csrf
from authstate.errors import InvalidInput, SessionTooLarge
from authstate.sessions import DATA_MAX_BYTES, Session, SessionManager
from authstate.stores.base import JSON, dumps, loads

EXPIRES = "_expires_at"  # a framework's own, shorter expiry (Django's set_expiry, Flask's)
RESERVED = frozenset({csrf.DATA_KEY, EXPIRES})
CSRF_ROOM = 64  # ',"csrf":"<43 characters>"' is 53 bytes; a login adds it
MAX_BYTES = DATA_MAX_BYTES - CSRF_ROOM

CookieAction = Literal["keep", "set", "clear"]


def check_item(key: object, value: object) -> None:
    """``InvalidInput`` unless ``key`` is an app key (a string, not reserved) and
    ``value`` is JSON."""
    if not isinstance(key, str):
        raise InvalidInput("session keys are strings")
    if key in RESERVED:
        raise InvalidInput(f"the session key {key!r} is reserved for authstate")
    try:
        dumps(value)
    except (TypeError, ValueError) as error:
        raise InvalidInput(f"the value of session key {key!r} is not JSON") from error


def check_size(values: Mapping[str, Any]) -> None:
    """``SessionTooLarge`` when the app's data is over ``MAX_BYTES`` of compact JSON."""
    try:
        size = len(dumps(dict(values)))
    except (TypeError, ValueError) as error:
        raise InvalidInput("session values must be JSON") from error
    if size > MAX_BYTES:
        raise SessionTooLarge(f"session data is limited to {MAX_BYTES} bytes of JSON")


def load(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The app's keys of a session's data as ``(values, snapshot)``: ``values`` a private
    deep copy for the app to change, ``snapshot`` each key's JSON as loaded, to find
    later what changed (``changes``)."""
    snapshot = {k: dumps(v) for k, v in data.items() if k not in RESERVED}
    return {k: loads(j) for k, j in snapshot.items()}, snapshot


def changes(snapshot: Mapping[str, str], values: Mapping[str, Any]) -> JSON:
    """What to merge to turn the loaded data into ``values``: each new or changed key
    with its value, each removed key with None (the merge rule)."""
    out: JSON = {}
    for key, value in values.items():
        if key in RESERVED:
            raise InvalidInput(f"the session key {key!r} is reserved for authstate")
        if value is None:
            if key in snapshot:
                out[key] = None
            continue
        try:
            encoded = dumps(value)
        except (TypeError, ValueError) as error:
            raise InvalidInput(f"the value of session key {key!r} is not JSON") from error
        if snapshot.get(key) != encoded:
            out[key] = value
    for key in snapshot:
        if key not in values:
            out[key] = None
    return out


class Saved(NamedTuple):
    """What a write-back did: the session's ID now (None: none), the session as stored,
    and what to do with the cookie (``set`` it to ``session_id``, ``clear`` it, or
    ``keep`` it as it is)."""

    session_id: str | None
    session: Session | None
    cookie: CookieAction


async def save(
    sessions: SessionManager,
    session_id: str | None,
    loaded: Session | None,
    values: Mapping[str, Any],
    changed: JSON,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
) -> Saved:
    """Write the ``changed`` keys back (see the module docstring for the rules).

    ``loaded`` is the session as read at the start of the request (None: no cookie, or
    a dead one). If it ended meanwhile (logout, revocation elsewhere), a user's session
    stays ended (its cookie is cleared, the write dropped: revocation is final) while a
    visitor's starts over as a new anonymous session holding ``values``."""
    if session_id is not None and loaded is not None:
        if not changed:
            return Saved(session_id, loaded, "keep")
        updated = await _merge(sessions, session_id, changed)
        if updated is None:
            if not loaded.anonymous:
                return Saved(None, None, "clear")
        elif updated.anonymous and not any(k not in RESERVED for k in updated.data):
            # emptied: a visitor's session with nothing in it is not kept (as Starlette)
            await sessions.revoke(session_id, reason="emptied")
            return Saved(None, None, "clear")
        else:
            return Saved(session_id, updated, "keep")
    kept = {k: v for k, v in values.items() if v is not None}
    if not kept:
        return Saved(session_id, loaded, "keep")
    check_size(kept)
    new_id, created = await sessions.create(None, ip=ip, user_agent=user_agent, data=kept)
    return Saved(new_id, created, "set")


async def save_unread(
    sessions: SessionManager,
    session_id: str,
    changed: Mapping[str, Any],
    *,
    now: float,
    ip: str | None = None,
    user_agent: str | None = None,
) -> Saved:
    """Write keys set on a session that was never read (a write-only request under lazy
    loading): the merge rule needs no read, since ``Store.merge`` applies the changed keys
    to whatever is stored, atomically. So a write-only request costs one store write and
    no read.

    What a read would have told ``save`` comes back from the merge: the session as
    stored, or None when the cookie's session is gone (expired, revoked, never existed).
    Gone, the cookie is treated as if it had been found dead at the start of the
    request, as ``save`` treats ``loaded=None``: the set keys start a new anonymous
    session (a revoked user's session stays ended: the new one logs no one in), and
    deletions alone change nothing."""
    updated = await _merge(sessions, session_id, dict(changed))
    if updated is not None and (updated.expires_at <= now or expired(updated, now)):
        updated = None  # dead to every reader: the write landed nowhere anyone can see
    if updated is None:
        return await save(sessions, session_id, None, changed, dict(changed),
                          ip=ip, user_agent=user_agent)
    if updated.anonymous and not any(k not in RESERVED for k in updated.data):
        await sessions.revoke(session_id, reason="emptied")
        return Saved(None, None, "clear")
    return Saved(session_id, updated, "keep")


async def _merge(sessions: SessionManager, session_id: str, changed: JSON) -> Session | None:
    """``SessionManager.update`` with the cap's ``InvalidInput`` as ``SessionTooLarge``."""
    try:
        return await sessions.update(session_id, changed)
    except SessionTooLarge:
        raise
    except InvalidInput as error:  # the merge went over the cap
        raise SessionTooLarge(error.message) from error


def expired(session: Session, now: float) -> bool:
    """Whether the framework's own expiry (``EXPIRES``) has passed; authstate's idle and
    absolute timeouts are enforced by the session lookup itself."""
    when = session.data.get(EXPIRES)
    return isinstance(when, (int, float)) and when <= now
