"""Flask's ``session`` kept in authstate's store: a ``SessionInterface`` like Flask-Session's.

    app.session_interface = ServerSideSessions(SyncAuthState(settings))
    # or, beside the Authstate extension on the service's store (SETTINGS):
    ServerSideSessions(auth.sync).init_app(app)

``flask.session`` is then a ``ServerSideSession``: a dict of JSON values with Flask's
``permanent`` and ``modified``, whose data lives in one of authstate's sessions (the
cookie holds a random ID; the store only its SHA-256 digest). What changes against
Flask's signed cookie: the data is on the server and revocable, and once the visitor
logs in through ``ServerSideSessions.login`` the session has a new ID (no fixation),
keeps its data, is listed in the user's devices (``/auth/sessions``, ``authstate
sessions list``) and ends everywhere at once when revoked there.

- Reads: a request with the cookie costs one store read when the session opens (through
  the process's sync portal); without one, none.
- Writes, at the end of the request, only of the keys that changed (set, deleted or
  mutated in place, with or without ``session.modified``), with the per-key merge of
  ``authstate.appsessions``: concurrent requests changing different keys both land. A
  visitor's session is created by the first write, never by a read.
- The cookie is authstate's (``authn.session_cookie``: HttpOnly, SameSite=Lax, Path=/,
  ``Secure`` and ``__Host-`` outside development mode), for the browser session unless
  ``session.permanent`` (then ``app.permanent_session_lifetime``); authstate's idle and
  absolute timeouts bound the session on the server either way.
- Limits: ``SessionTooLarge`` from the assignment past ``appsessions.MAX_BYTES``;
  ``InvalidInput`` for a value that is not JSON or a reserved key. If concurrent writers
  together go past the cap, the response becomes a 422 problem and nothing is written.
- Outages fail closed with 503, ``Retry-After`` and a problem detail, and no
  ``Set-Cookie``: a store that cannot be read makes every use of ``session`` raise
  ``StoreUnavailable`` (``init_app``'s handler answers it; without ``init_app``, Flask's
  500 for it becomes the 503 when the session is saved); one that cannot be written
  turns the response into that 503.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from authstate.extras import require

require("flask")

from flask import Flask, Request, Response
from flask import request as current_request
from flask import session as current_session
from flask.sessions import SessionInterface, SessionMixin

from authstate import appsessions
from authstate.authn import session_cookie, session_cookie_name
from authstate.errors import InvalidInput, SessionTooLarge, StoreUnavailable
from authstate.sessions import Session, valid_id
from authstate.state import LoginResult
from authstate.sync import SyncAuthState
from authstate.web.statuses import PROBLEM_JSON, RETRY_AFTER, problem_document, status_for
from authstate.wsgi import UNAVAILABLE_DETAIL

__all__ = ["ServerSideSession", "ServerSideSessions"]


class ServerSideSession(dict[str, Any], SessionMixin):
    """``flask.session``: the app's data in this visitor's authstate session."""

    def __init__(
        self, session_id: str | None = None, loaded: Session | None = None
    ) -> None:
        values, self.snapshot = appsessions.load(loaded.data if loaded is not None else {})
        super().__init__(values)
        self.session_id = session_id
        self.loaded = loaded
        self.cookie: appsessions.CookieAction = "keep"
        self.modified = False
        self.accessed = False

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.accessed = True
        return super().get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        appsessions.check_item(key, value)
        had, old = key in self, super().get(key)
        super().__setitem__(key, value)
        try:
            appsessions.check_size(self)
        except SessionTooLarge:
            if had:
                super().__setitem__(key, old)
            else:
                super().__delitem__(key)
            raise
        self.modified = self.accessed = True

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.modified = self.accessed = True

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key: str, *default: Any) -> Any:
        self.modified = self.modified or key in self
        self.accessed = True
        return super().pop(key, *default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self) -> None:
        super().clear()
        self.modified = self.accessed = True

    @property
    def user_id(self) -> str | None:
        """The logged-in user's ID, or None for a visitor."""
        loaded = self.loaded
        return loaded.user_id if loaded is not None and not loaded.anonymous else None

    def adopt(self, session_id: str | None, session: Session | None,
              cookie: appsessions.CookieAction) -> None:
        """Become the session ``session_id`` (after a login, logout or first write)."""
        values, self.snapshot = appsessions.load(session.data if session is not None else {})
        super().clear()
        super().update(values)
        self.session_id, self.loaded, self.cookie = session_id, session, cookie
        self.modified = cookie != "keep" or self.modified


class UnavailableSession(ServerSideSession):
    """The session of a request whose store could not be read: every use raises
    ``StoreUnavailable`` (an outage is not an empty session), nothing is written."""

    def _down(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable()

    __getitem__ = get = __setitem__ = __delitem__ = setdefault = pop = update = _down
    clear = keys = items = values = _down

    def __contains__(self, key: object) -> bool:
        raise StoreUnavailable()

    def __iter__(self) -> Iterator[str]:
        raise StoreUnavailable()


class ServerSideSessions(SessionInterface):
    """The ``SessionInterface``; see the module docstring."""

    def __init__(self, state: SyncAuthState) -> None:
        self.state = state
        self.cookie_name = session_cookie_name(state.settings)

    def init_app(self, app: Flask) -> None:
        """Install the interface, and answer ``StoreUnavailable`` with 503."""
        app.session_interface = self
        app.register_error_handler(StoreUnavailable, _unavailable)

    def open_session(self, app: Flask, request: Request) -> ServerSideSession:
        session_id = request.cookies.get(self.cookie_name)
        if not session_id or not valid_id(session_id):
            return ServerSideSession()
        try:
            loaded = self.state.lookup_session(session_id)
            if loaded is not None and appsessions.expired(loaded, self.state.state.clock.now()):
                loaded = None  # the expiry Flask set (permanent_session_lifetime)
        except StoreUnavailable:
            return UnavailableSession()
        return ServerSideSession(session_id, loaded)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if isinstance(session, UnavailableSession):
            if response.status_code == 500:  # StoreUnavailable with no handler (no init_app)
                _refuse(response, StoreUnavailable())
            return
        if not isinstance(session, ServerSideSession):
            return
        try:
            self._save(session, response)
        except (SessionTooLarge, StoreUnavailable) as error:
            _refuse(response, error)
            return
        if session.cookie == "keep" and session.loaded is not None and session.permanent \
                and app.config["SESSION_REFRESH_EACH_REQUEST"]:
            session.cookie = "set"  # refresh a permanent cookie's lifetime
        if session.cookie == "keep":
            return
        max_age = (int(app.permanent_session_lifetime.total_seconds())
                   if session.permanent else None)
        header = session_cookie(self.state.settings,
                                session.session_id if session.cookie == "set" else None,
                                max_age=max_age)
        response.headers.add("Set-Cookie", header.decode("latin-1"))
        response.vary.add("Cookie")

    def _save(self, session: ServerSideSession, response: Response | None) -> None:
        changed = appsessions.changes(session.snapshot, session)
        if not changed and session.loaded is not None:
            return
        ip, user_agent = _client()
        saved = self.state.run(lambda state: appsessions.save(
            state.sessions, session.session_id, session.loaded, dict(session), changed,
            ip=ip, user_agent=user_agent,
        ))
        cookie = saved.cookie if saved.cookie != "keep" else session.cookie
        session.adopt(saved.session_id, saved.session, cookie)

    def login(self, email: str, password: str) -> LoginResult:
        """Log an authstate user in on the current request's session
        (``AuthState.login``): a new ID, the data kept, a fresh CSRF token, the session
        listed in the user's devices. Raises ``AuthenticationFailed``, ``Throttled``."""
        session = current_session
        if not isinstance(session, ServerSideSession):
            raise InvalidInput("login needs app.session_interface = ServerSideSessions(...)")
        self._save(session, None)  # what this request wrote so far carries over
        ip, user_agent = _client()
        previous = session.session_id if session.loaded is not None else None
        result = self.state.login(email, password, ip=ip, user_agent=user_agent,
                                  previous_session_id=previous)
        session.adopt(result.session_id, result.session, "set")
        return result

    def logout(self) -> None:
        """End the current session (``AuthState.logout``); its data is gone."""
        session = current_session
        if not isinstance(session, ServerSideSession):
            raise InvalidInput("logout needs app.session_interface = ServerSideSessions(...)")
        if session.session_id is not None and session.loaded is not None:
            self.state.logout(session_id=session.session_id)
        session.adopt(None, None, "clear")


def _client() -> tuple[str | None, str | None]:
    agent = current_request.headers.get("User-Agent")
    return current_request.remote_addr, agent


def _problem(error: SessionTooLarge | StoreUnavailable) -> tuple[int, dict[str, str], str]:
    status = status_for(error)
    headers = {"Content-Type": PROBLEM_JSON, "Cache-Control": "no-store"}
    detail = error.message
    if status == 503:
        headers["Retry-After"] = str(RETRY_AFTER)
        detail = UNAVAILABLE_DETAIL  # as every adapter; the store's message names its address
    return status, headers, json.dumps(problem_document(status, error.code, detail))


def _refuse(response: Response, error: SessionTooLarge | StoreUnavailable) -> None:
    """The session could not be written: the app's answer becomes the problem (a lost
    write is never passed off as saved)."""
    status, headers, body = _problem(error)
    response.status_code = status
    response.headers.clear()  # nothing of the app's answer: no Location, no cookie of its own
    response.set_data(body)
    for name, value in headers.items():
        response.headers[name] = value


def _unavailable(error: StoreUnavailable) -> tuple[str, int, dict[str, str]]:
    status, headers, body = _problem(error)
    return body, status, headers
