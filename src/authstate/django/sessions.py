"""A Django session engine on authstate's store::

    SESSION_ENGINE = "authstate.django.sessions"
    MIDDLEWARE = [..., "authstate.django.sessions.SessionMiddleware", ...]  # in place of
    # django.contrib.sessions.middleware.SessionMiddleware: an outage answers 503, not 500

Django's ``SessionBase`` contract (``exists``, ``create``, ``save(must_create)``,
``delete``, ``load``, ``cycle_key``, ``flush``, ``clear_expired``) over authstate's
sessions, on any store (memory, SQLite, Redis, PostgreSQL). Each session is one of
authstate's: the cookie holds a random ID and the store only its SHA-256 digest; once
the visitor logs in through ``login`` below it is listed in the user's devices
(``/auth/sessions``, ``authstate sessions list``) and revoking it there ends the Django
session on its next request, in every process.

- Configuration: ``settings.AUTHSTATE = {"SETTINGS": {"store": "redis://...", ...}}``
  (``authstate.Settings`` keywords), the same setting the Django middleware reads; the
  engine uses the middleware's ``SyncAuthState``, whose store is reached through the
  process's sync portal (``authstate.sync``), one background event loop shared by every
  request thread.
- Writes follow ``authstate.appsessions``: only the keys a request changed are merged,
  atomically, so two concurrent requests of one session changing different keys both
  land (Django's own engines write the whole dict, last writer wins). Values are JSON
  (as Django's default ``JSONSerializer``); a key set to None is removed; the data is
  capped at ``appsessions.MAX_BYTES`` (``SessionDataTooLarge`` from the assignment, or
  from the response's save when concurrent writers together go past it: a
  ``SuspiciousOperation``, so Django answers 400, not 500).
- Outages fail closed with 503: a store that cannot be read or written raises
  ``StoreUnavailable`` (never an empty session passed off as real, never a lost write
  passed off as saved), and ``SessionMiddleware`` below, listed in ``MIDDLEWARE`` in
  place of Django's, answers it with 503, ``Retry-After`` and a problem detail (as
  ``AuthstateMiddleware`` answers an authentication outage), without a ``Set-Cookie``,
  whether the session was read in the view, written at the response or used by a
  middleware listed after it. Django's own ``SessionMiddleware`` answers them with a
  500: it gives an engine no other way out.
- Expiry: authstate's idle and absolute timeouts bound every session; ``set_expiry``
  can shorten it (the expiry Django computes at each save is kept with the data and
  checked at load), not lengthen it past them.
- ``cycle_key`` (Django's ``login``) moves the session to a new ID in one store
  operation, data and all; ``flush`` (Django's ``logout``) ends it through
  ``AuthState.logout`` (audited). ``login(request, email, password)`` logs an authstate
  user in: a new ID, the visitor's data carried over, a fresh CSRF token.
- ``clear_expired`` (``manage.py clearsessions``) runs ``AuthState.cleanup``.
- A session saved after it was ended elsewhere raises ``UpdateError`` (Django answers
  400, "session interrupted") instead of coming back.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from authstate.extras import require

require("django")

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse

from authstate import appsessions
from authstate.django.auth import authenticator, response_for
from authstate.errors import ConfigurationError, InvalidInput, SessionTooLarge, StoreUnavailable
from authstate.sessions import ID_BYTES, Session, valid_id
from authstate.state import AuthState, LoginResult
from authstate.sync import SyncAuthState
from authstate.web.statuses import RETRY_AFTER
from authstate.wsgi import UNAVAILABLE_DETAIL, Refusal

__all__ = [
    "SessionDataTooLarge", "SessionMiddleware", "SessionStore", "login", "logout", "sync_state",
]

T = TypeVar("T")


def sync_state() -> SyncAuthState:
    """The ``SyncAuthState`` of ``settings.AUTHSTATE["SETTINGS"]``: the very one the
    Django middleware (``authstate.django.auth.authenticator``) runs on, so the engine
    and the middleware share one store connection set and one portal. (A
    ``SyncAuthState`` given as ``settings.AUTHSTATE`` itself is used as it is.)"""
    config = getattr(settings, "AUTHSTATE", None)
    if isinstance(config, SyncAuthState):
        return config
    if isinstance(config, Mapping) and "SETTINGS" in config:
        sync = authenticator().sync
        if sync is not None:
            return sync
    raise ConfigurationError(
        'the authstate session engine needs settings.AUTHSTATE = {"SETTINGS": '
        '{"store": ...}} (the store its sessions live in)'
    )


class SessionDataTooLarge(SessionTooLarge, SuspiciousOperation):  # type: ignore[misc]
    """``SessionTooLarge`` that Django answers with 400 (a ``SuspiciousOperation``), not
    500, when the response's session save goes over the cap."""


class SessionStore(SessionBase):  # type: ignore[misc]
    """Django's ``request.session`` kept as an authstate session; see the module docstring."""

    _session_key: str | None  # SessionBase's, typed for this module

    def __init__(self, session_key: str | None = None) -> None:
        self._sync = sync_state()
        self.outage: StoreUnavailable | None = None  # what a store call of this request met
        self._loaded: Session | None = None
        self._snapshot: dict[str, str] = {}
        super().__init__(session_key)

    def __setitem__(self, key: str, value: Any) -> None:
        """Django's assignment, with the size cap checked here, where the app can catch
        it (``SessionDataTooLarge``), rather than only at the response's save."""
        data = self._session
        had, old = key in data, data.get(key)
        super().__setitem__(key, value)
        try:
            appsessions.check_size(data)
        except InvalidInput as error:  # not JSON, or over the cap
            if had:
                data[key] = old
            else:
                del data[key]
            if isinstance(error, SessionTooLarge):
                raise SessionDataTooLarge(error.message) from error
            raise

    # -- keys -------------------------------------------------------------------------

    def _get_new_session_key(self) -> str:
        return secrets.token_urlsafe(ID_BYTES)  # authstate's IDs: 256 bits

    def _validate_session_key(self, key: object) -> bool:
        return isinstance(key, str) and len(key) >= 8 and valid_id(key)

    # -- the contract ------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        key = self._session_key
        session = self._lookup(key) if key else None
        if session is None:
            self._session_key, self._loaded, self._snapshot = None, None, {}
            return {}
        self._loaded = session
        values, self._snapshot = appsessions.load(session.data)
        return values

    def exists(self, session_key: str | None) -> bool:
        return self._lookup(session_key) is not None

    def create(self) -> None:
        """A new anonymous session holding what this object has so far."""
        values = self._get_session(no_load=True)
        data = {k: v for k, v in values.items() if v is not None}
        appsessions.changes({}, data)  # reserved keys are refused here too
        try:
            appsessions.check_size(data)
        except SessionTooLarge as error:
            raise SessionDataTooLarge(error.message) from error
        data[appsessions.EXPIRES] = self._expires_at()
        session_id, session = self._run(
            lambda state: state.sessions.create(None, data=data)
        )
        self._session_key, self._loaded = session_id, session
        self._snapshot = appsessions.load(session.data)[1]
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        if must_create:
            if self.exists(self.session_key):
                raise CreateError
            return self.create()  # authstate picks the ID of a new session itself
        values = self._get_session()
        key = self._session_key
        if key is None or self._loaded is None:
            raise UpdateError  # ended elsewhere (logout, revocation): do not resurrect it
        changed = appsessions.changes(self._snapshot, values)
        changed[appsessions.EXPIRES] = self._expires_at()
        try:
            updated = self._run(lambda state: state.sessions.update(key, changed))
        except InvalidInput as error:  # over the cap once merged (concurrent writers)
            raise SessionDataTooLarge(error.message) from error
        if updated is None:
            raise UpdateError
        self._loaded = updated
        self._snapshot = appsessions.load(updated.data)[1]

    def delete(self, session_key: str | None = None) -> None:
        key = session_key if session_key is not None else self.session_key
        if key is None:
            return
        self._run(lambda state: state.logout(session_id=key))
        if key == self._session_key:
            self._loaded = None

    def cycle_key(self) -> None:
        """A new ID for the same session (Django's ``login``): one atomic store rename,
        so the data, the device entry and the user stay; the old ID is dead."""
        data = self._get_session()
        key = self.session_key
        rotated = (self._run(lambda state: state.sessions.rotate(key))
                   if key is not None and self._loaded is not None else None)
        if rotated is None:
            self._session_cache = data
            self.create()
            return
        self._session_key, self._loaded = rotated
        self.modified = True

    @classmethod
    def clear_expired(cls) -> None:
        sync_state().call(AuthState.cleanup)

    # -- authstate's login and logout ---------------------------------------------------

    def _adopt(self, result: LoginResult) -> None:
        self._session_key, self._loaded = result.session_id, result.session
        self._session_cache, self._snapshot = appsessions.load(result.session.data)
        self.modified = True  # Django's middleware then sets the new cookie

    def _lookup(self, key: str | None) -> Session | None:
        if not key or not valid_id(key):
            return None
        session = self._marked(lambda: self._sync.lookup_session(key))
        if session is None or appsessions.expired(session, self._sync.state.clock.now()):
            return None
        return session

    def _run(self, work: Callable[[AuthState], Awaitable[T]]) -> T:
        """``work`` on the store, an outage noted on the session (``outage``) before it is
        raised, for ``SessionMiddleware`` to find when Django has already turned the
        exception into a 500 (raised in another middleware)."""
        return self._marked(lambda: self._sync.run(work))

    def _marked(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except StoreUnavailable as error:
            self.outage = error
            raise

    def _expires_at(self) -> float:
        """When Django says this session expires (``get_expiry_age``), on authstate's
        clock; authstate's own timeouts may end it sooner."""
        return self._sync.state.clock.now() + float(self.get_expiry_age())


UNAVAILABLE = Refusal(503, StoreUnavailable.code, UNAVAILABLE_DETAIL,
                      (("Retry-After", str(RETRY_AFTER)),))


class SessionMiddleware(DjangoSessionMiddleware):  # type: ignore[misc]
    """Django's ``SessionMiddleware`` that answers a store outage with 503: list
    ``"authstate.django.sessions.SessionMiddleware"`` in ``MIDDLEWARE`` where Django's
    was. The answer is ``UNAVAILABLE`` (a problem detail with ``Retry-After``), never the
    app's response with its session write lost, and it sets no cookie (the visitor's
    session outlives the outage; a new one that could not be created is not named).

    - read in the view (or its template): Django hands the exception to
      ``process_exception``;
    - written at the response: ``save`` raises inside ``process_response``, before the
      cookie is set, and ``__call__`` catches it (as it catches one that Django's own
      conversion to a 500 raised again, e.g. a 500 handler reading the session);
    - read or written by a middleware listed after this one (``CsrfViewMiddleware``
      with ``CSRF_USE_SESSIONS``, the messages' session storage): Django has turned the
      exception into a 500 (and logged it) before it gets here; the session's
      ``outage`` marks that 500 as the store's, and it becomes the 503.

    Sync only (Django adapts it under ASGI): the engine blocks on the portal anyway."""

    sync_capable, async_capable = True, False

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            response: HttpResponse = super().__call__(request)
        except StoreUnavailable:
            return response_for(UNAVAILABLE)
        session = getattr(request, "session", None)
        if response.status_code == 500 and isinstance(session, SessionStore) \
                and session.outage is not None:
            return response_for(UNAVAILABLE)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return response_for(UNAVAILABLE) if isinstance(exception, StoreUnavailable) else None


def login(request: HttpRequest, email: str, password: str) -> LoginResult:
    """Log an authstate user in on this request's session (``AuthState.login``): what
    the session holds carries over to a new ID with a fresh CSRF token, and the session
    is listed in the user's devices. Raises ``AuthenticationFailed``, ``Throttled``."""
    session = request.session
    if not isinstance(session, SessionStore):
        raise InvalidInput('login needs SESSION_ENGINE = "authstate.django.sessions"')
    session._get_session()  # load it: its data is what carries over
    if session.modified:
        session.save()  # what this request wrote so far is part of what carries over
    previous = session.session_key if session._loaded is not None else None
    agent = request.META.get("HTTP_USER_AGENT")
    result = session._sync.login(
        email, password, ip=request.META.get("REMOTE_ADDR"),
        user_agent=agent if isinstance(agent, str) else None, previous_session_id=previous,
    )
    session._adopt(result)
    return result


def logout(request: HttpRequest) -> None:
    """End the session (``AuthState.logout``) and start an empty one, as Django's."""
    request.session.flush()

