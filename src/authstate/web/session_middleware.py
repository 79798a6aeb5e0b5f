"""``request.session`` for any ASGI app, kept in authstate's store: a pure ASGI middleware.

A drop-in for Starlette's ``SessionMiddleware`` in the common cases::

    app.add_middleware(SessionMiddleware, state=state)   # was: secret_key="..."

``scope["session"]`` (what Starlette's, FastAPI's and Litestar's ``request.session``
return) is an ``AppSession``: a mutable mapping of JSON values. What changes against the
signed cookie: the data stays on the server (the cookie holds only a random ID, whose
SHA-256 digest is the store key); it is one of authstate's sessions, so it is revocable,
and once the visitor logs in (``await request.session.login(...)``) it is listed in the
user's devices and ends everywhere at once when revoked; the cookie is authstate's
(HttpOnly, SameSite=Lax, Path=/, ``Secure`` and ``__Host-`` outside development mode,
``authstate.authn.session_cookie``), the very cookie ``AuthMiddleware``'s
``SessionCookie`` authenticates.

- **Reads**: a request without the cookie costs nothing and sees an empty session. With
  the cookie, the session is read from the store once, before the app runs (the
  mapping's methods are synchronous, as Starlette's are, so they cannot wait for the
  store themselves), and not at all when ``AuthMiddleware`` ran first and already read it
  for the same cookie. Copying the data into the mapping waits for its first use.
- **Writes** happen when the response starts, only for what changed, with the merge rule
  of ``authstate.appsessions`` (per key; concurrent requests changing different keys
  both land; a key set to None is deleted). An anonymous visitor's session is created by
  the first write, never by a read.
- **Limits**: ``SessionTooLarge`` from the assignment that takes the data past
  ``appsessions.MAX_BYTES``, and ``InvalidInput`` for a value that is not JSON or a
  reserved key (``csrf``: the CSRF token, readable as ``session.csrf_token``). If
  concurrent writers together go over the cap, the response becomes a 422 problem
  (``session_too_large``) and nothing is written.
- **Outages** fail closed: a store that cannot be read or written answers 503 with
  ``Retry-After`` (never an empty session, never a lost write passed off as saved).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from authstate import appsessions
from authstate.authn import AuthInfo, Credentials, session_cookie, session_cookie_name
from authstate.errors import SessionTooLarge, StoreUnavailable
from authstate.sessions import HANDLE_LEN, Session, digest, valid_id
from authstate.state import AuthState, LoginResult
from authstate.web.middleware import ASGIApp, Message, Receive, Scope, Send, unavailable
from authstate.web.statuses import PROBLEM_JSON, problem_body, status_for

__all__ = ["AppSession", "SessionMiddleware"]


class AppSession(MutableMapping[str, Any]):
    """``request.session``: the app's data in this visitor's authstate session.

    Besides the mapping: ``login`` and ``logout`` (the front door's flows, rotating the
    ID and carrying the data over, or ending the session), ``handle`` (the public handle
    of the session, as device lists show it) and ``csrf_token`` (for forms that
    ``AuthMiddleware``'s CSRF check will read)."""

    def __init__(
        self, state: AuthState, scope: Scope, session_id: str | None, loaded: Session | None
    ) -> None:
        self._state = state
        self._scope = scope
        self._id = session_id
        self._loaded = loaded
        self._values: dict[str, Any] | None = None  # copied from _loaded on first use
        self._snapshot: dict[str, str] = {}
        self._cookie: appsessions.CookieAction = "keep"

    # -- the mapping ----------------------------------------------------------------

    @property
    def _data(self) -> dict[str, Any]:
        if self._values is None:
            data = self._loaded.data if self._loaded is not None else {}
            self._values, self._snapshot = appsessions.load(data)
        return self._values

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if value is None:  # the merge rule: None deletes
            self._data.pop(key, None)
            return
        appsessions.check_item(key, value)
        data = self._data
        had, old = key in data, data.get(key)
        data[key] = value
        try:
            appsessions.check_size(data)
        except SessionTooLarge:
            if had:
                data[key] = old
            else:
                del data[key]
            raise

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"AppSession({self.handle or 'none'}, keys={sorted(self._data)})"

    # -- beyond the mapping ---------------------------------------------------------

    @property
    def handle(self) -> str | None:
        """The session's public handle (device lists, logs), or None before it exists."""
        return self._loaded.handle if self._loaded is not None else None

    @property
    def csrf_token(self) -> str | None:
        """The CSRF token of a logged-in session (for forms), else None."""
        token = self._loaded.data.get("csrf") if self._loaded is not None else None
        return token if isinstance(token, str) else None

    @property
    def user_id(self) -> str | None:
        """The logged-in user's ID, or None for a visitor."""
        loaded = self._loaded
        return loaded.user_id if loaded is not None and not loaded.anonymous else None

    async def login(self, email: str, password: str) -> LoginResult:
        """Log in through ``AuthState.login``: the session gets a new ID (no fixation),
        keeps the data written so far, and gets a fresh CSRF token; the new cookie is
        sent with the response. Raises what ``login`` raises (``AuthenticationFailed``,
        ``Throttled``, ...), leaving the session as it was."""
        await self.save()  # what this request wrote so far is part of what carries over
        ip, user_agent = _client(self._scope)
        result = await self._state.login(
            email, password, ip=ip, user_agent=user_agent,
            previous_session_id=self._id if self._loaded is not None else None,
        )
        self._adopt(result.session_id, result.session, "set")
        return result

    async def logout(self) -> None:
        """End the session (``AuthState.logout``): its data is gone, the cookie cleared."""
        if self._id is not None and self._loaded is not None:
            await self._state.logout(session_id=self._id)
        self._adopt(None, None, "clear")

    async def save(self) -> bytes | None:
        """Write what changed now (the middleware calls this when the response starts);
        the ``Set-Cookie`` value to send, if the cookie changes."""
        if self._values is not None:
            ip, user_agent = _client(self._scope)
            saved = await appsessions.save(
                self._state.sessions, self._id, self._loaded, self._values,
                appsessions.changes(self._snapshot, self._values),
                ip=ip, user_agent=user_agent,
            )
            if saved.cookie == "keep":
                self._loaded = saved.session if saved.session is not None else self._loaded
                self._values = None
            else:
                self._adopt(saved.session_id, saved.session, saved.cookie)
        if self._cookie == "keep":
            return None
        max_age = int(self._state.settings.sessions.absolute_timeout)
        return session_cookie(self._state.settings, self._id if self._cookie == "set" else None,
                              max_age=max_age)

    def _adopt(
        self, session_id: str | None, session: Session | None, cookie: appsessions.CookieAction
    ) -> None:
        self._id, self._loaded, self._values, self._cookie = session_id, session, None, cookie


class SessionMiddleware:
    """Give every HTTP and WebSocket request ``scope["session"]``; see the module
    docstring. A WebSocket's session is read-only (no response to carry a cookie)."""

    def __init__(self, app: ASGIApp, *, state: AuthState) -> None:
        self.app = app
        self.state = state
        self.cookie_name = session_cookie_name(state.settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            session = await self._load(scope)
        except StoreUnavailable as error:
            await unavailable(scope, send, error.code)
            return
        scope["session"] = session
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_session(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start" and not started:
                cookie = await session.save()  # raising here, before anything is sent
                if cookie is not None:
                    message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie)]
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_with_session)
        except (StoreUnavailable, SessionTooLarge) as error:
            if started:
                raise
            await _refuse(scope, send, error)

    async def _load(self, scope: Scope) -> AppSession:
        """The request's session: none without the cookie, else the one ``AuthMiddleware``
        already read for this cookie, else one store read."""
        session_id = Credentials(scope).cookie(self.cookie_name)
        if session_id is None or not valid_id(session_id):
            return AppSession(self.state, scope, None, None)
        auth = scope.get("auth")
        if isinstance(auth, AuthInfo) and auth.identity is not None:
            known = auth.identity.session
            if known is not None and known.handle == digest(session_id)[:HANDLE_LEN]:
                return AppSession(self.state, scope, session_id, known)
        loaded = await self.state.sessions.lookup(session_id)
        if loaded is not None and appsessions.expired(loaded, self.state.clock.now()):
            loaded = None  # a shorter expiry a framework set (Django's set_expiry, Flask's)
        return AppSession(self.state, scope, session_id, loaded)


async def _refuse(scope: Scope, send: Send, error: StoreUnavailable | SessionTooLarge) -> None:
    """The answer when the session could not be written: 503 for an outage, a 422
    problem past the size cap; never the app's own response with the write lost."""
    if isinstance(error, StoreUnavailable):
        await unavailable(scope, send, error.code)
        return
    status = status_for(error)
    body = problem_body(status, error.code, detail=error.message)
    start: Message = {
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode())],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})


def _client(scope: Scope) -> tuple[str | None, str | None]:
    """The client's address and user agent, for the session's device entry."""
    client = scope.get("client")
    agent = Credentials(scope).header(b"user-agent")
    return (client[0] if client else None,
            agent.decode("latin-1") if agent is not None else None)
