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

- **Reads** (when the store is read; the design is argued below): a request without
  the cookie costs nothing and sees an empty session, and none at all is read when
  ``AuthMiddleware`` ran first and already read this cookie's session. Otherwise:

  - ``autoload=True`` (the default, the drop-in): the session is read once, before the
    app runs, so that ``request.session["x"]`` works anywhere, as with Starlette.
  - ``autoload=False``: nothing is read until the app awaits ``request.session.load()``
    (or ``load_session(request)``); a request that never loads costs no store read.
    Reading before that (``session["x"]``, ``len``, ``in``, ``handle``, ``user_id``)
    raises ``SessionNotLoaded``, whose message names the fix. Setting keys does not
    need the read (see **Writes**).
  - ``autoload=["/account", re.compile(r"/cart/[0-9]+")]`` or a predicate of the scope:
    the drop-in on the paths it matches (a string matches that path and the paths
    under it; a pattern is matched at the start of the path), lazy everywhere else.
    The shape of starsessions' ``SessionAutoloadMiddleware(paths=...)`` and
    ``load_session``, but with the drop-in as the default.
  - ``prefetch`` (same forms, default off): on the lazy paths it matches, the read
    starts as a task when the request arrives, so it overlaps the app's own awaits
    before its ``await load()``. It changes latency only, never behaviour: reading
    before ``load()`` raises even when the prefetch already finished, so an app cannot
    pass its tests on a fast memory store and fail on Redis. A prefetch the app never
    awaits is cancelled when the request ends (its read may still have been made).

  Why the default still reads first. The mapping's methods are synchronous, as
  Starlette's are (``request.session["x"]`` in a ``def`` or ``async def`` endpoint), and
  a synchronous call cannot wait for the store: on the event loop's thread, blocking
  for a read that needs the same loop would deadlock, and a task started alongside the
  app may or may not have finished when the first access comes, depending on the
  store's latency, so raising then would make the drop-in fail at random. The only
  access that can wait is an awaited one, so laziness is something the app opts into
  where it knows its routes: ``autoload`` by path. Copying the data into the mapping
  still waits for its first use.
- **Writes** happen when the response starts, only for what changed, with the merge rule
  of ``authstate.appsessions`` (per key; concurrent requests changing different keys
  both land; a key set to None is deleted). An anonymous visitor's session is created by
  the first write, never by a read. A lazy session that is written before (or without)
  being loaded keeps the writes and, if it is loaded later, shows them over the stored
  data; never loaded, they are merged into the stored session with no read at all
  (``appsessions.save_unread``): one store write, the same merge rule. A blind write's
  own keys are size-checked at assignment; the whole is checked by the store's merge.
  A blind write to a session that is gone (expired, revoked) starts a new visitor
  session with the keys set, as a write after a read that found the cookie dead does
  (a revoked user's session stays ended: the new one logs no one in). Only reads slide
  the idle expiry, so a request that only writes does not extend the session.
  Deleting needs a known key: ``del session[k]`` and ``pop`` raise ``SessionNotLoaded``
  before a load, ``session[k] = None`` deletes without one.
- **Limits**: ``SessionTooLarge`` from the assignment that takes the data past
  ``appsessions.MAX_BYTES``, and ``InvalidInput`` for a value that is not JSON or a
  reserved key (``csrf``: the CSRF token, readable as ``session.csrf_token``). If
  concurrent writers together go over the cap, the response becomes a 422 problem
  (``session_too_large``) and nothing is written.
- **Outages** fail closed: a store that cannot be read or written answers 503 with
  ``Retry-After`` (never an empty session, never a lost write passed off as saved), and
  closes a WebSocket with 1013. On a lazy path that is only the requests that load or
  write the session; the others are served.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import Any

from authstate import appsessions
from authstate.authn import AuthInfo, Credentials, session_cookie, session_cookie_name
from authstate.errors import (
    ConfigurationError,
    SessionNotLoaded,
    SessionTooLarge,
    StoreUnavailable,
)
from authstate.sessions import HANDLE_LEN, Session, digest, valid_id
from authstate.state import AuthState, LoginResult
from authstate.web.middleware import ASGIApp, Message, Receive, Scope, Send, unavailable
from authstate.web.statuses import PROBLEM_JSON, problem_body, status_for

__all__ = ["AppSession", "Autoload", "SessionMiddleware", "load_session"]

Autoload = bool | Sequence[str | re.Pattern[str]] | Callable[[Scope], bool]
"""Which requests a rule covers: all, none, the paths listed, or a predicate."""

NOT_LOADED = (
    "request.session was read before it was loaded: call `await request.session.load()` "
    "(or `await load_session(request)`) first, or list this path in "
    "SessionMiddleware(autoload=...)"
)


class AppSession(MutableMapping[str, Any]):
    """``request.session``: the app's data in this visitor's authstate session.

    Besides the mapping: ``load`` (read it now, for lazy loading), ``is_loaded``,
    ``login`` and ``logout`` (the front door's flows, rotating the ID and carrying the
    data over, or ending the session), ``handle`` (the public handle of the session, as
    device lists show it) and ``csrf_token`` (for forms that ``AuthMiddleware``'s CSRF
    check will read).

    ``loaded`` is the session as read (None: none, or a dead cookie); with
    ``unread=True`` the session of ``session_id`` has not been read yet."""

    def __init__(
        self, state: AuthState, scope: Scope, session_id: str | None, loaded: Session | None,
        *, unread: bool = False,
    ) -> None:
        self._state = state
        self._scope = scope
        self._id = session_id
        self._loaded = loaded
        self._ready = not unread or session_id is None  # no cookie: nothing to read
        self._reading: asyncio.Future[Session | None] | None = None
        self._pending: dict[str, Any] = {}  # keys set before the read (None: delete)
        self._values: dict[str, Any] | None = None  # copied from _loaded on first use
        self._snapshot: dict[str, str] = {}
        self._cookie: appsessions.CookieAction = "keep"

    # -- the mapping ----------------------------------------------------------------

    @property
    def _data(self) -> dict[str, Any]:
        if self._values is None:
            if not self._ready:
                raise SessionNotLoaded(NOT_LOADED)
            data = self._loaded.data if self._loaded is not None else {}
            self._values, self._snapshot = appsessions.load(data)
        return self._values

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not self._ready:
            self._set_unread(key, value)
            return
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

    def _set_unread(self, key: str, value: Any) -> None:
        """A write before the read: kept aside, checked as far as it can be (its own
        keys against the cap; the store's merge checks the whole at write-back)."""
        appsessions.check_item(key, value)
        pending = {**self._pending, key: value}
        appsessions.check_size({k: v for k, v in pending.items() if v is not None})
        self._pending = pending

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        if not self._ready:
            return f"AppSession(not loaded, set={sorted(self._pending)})"
        return f"AppSession({self.handle or 'none'}, keys={sorted(self._data)})"

    # -- loading --------------------------------------------------------------------

    @property
    def is_loaded(self) -> bool:
        """Whether the session can be read (loaded, or there was nothing to load)."""
        return self._ready

    async def load(self) -> AppSession:
        """Read the session from the store if it was not yet (one read per request, shared
        by concurrent callers and with a prefetch); keys set before show over the stored
        data. Raises ``StoreUnavailable`` in an outage, which the middleware answers with
        a 503 (a later ``load`` tries again). Returns the session, so ``session = await
        request.session.load()``."""
        while not self._ready:
            reading = self._reading
            if reading is None:  # the common case: read inline (a task costs ~20 µs here)
                reading = asyncio.get_running_loop().create_future()
                reading.add_done_callback(_retrieve)
                self._reading = reading
                try:
                    loaded = await self._read()
                except BaseException as error:
                    self._give_up(reading, error)
                    raise
                if not reading.done():
                    reading.set_result(loaded)
            else:  # a prefetch, or another caller's read: wait for it, not on its behalf
                try:
                    loaded = await asyncio.shield(reading)
                except asyncio.CancelledError:
                    if reading.cancelled() and self._reading is not reading:
                        continue  # that reader was cancelled, not this one: read again
                    raise
                except Exception as error:
                    self._give_up(reading, error)
                    raise
            self._apply(loaded)
        return self

    def _give_up(self, reading: asyncio.Future[Session | None], error: BaseException) -> None:
        """A read failed (or its caller was cancelled): tell whoever waits on it, and let
        the next ``load`` read again."""
        if self._reading is reading:
            self._reading = None
        if not reading.done():
            if isinstance(error, Exception):
                reading.set_exception(error)
            else:
                reading.cancel()

    def _apply(self, loaded: Session | None) -> None:
        if self._ready:
            return  # another caller got there first
        self._loaded, self._ready = loaded, True
        pending, self._pending = self._pending, {}
        if pending:
            data = self._data
            for key, value in pending.items():
                if value is None:
                    data.pop(key, None)
                else:
                    data[key] = value

    async def _read(self) -> Session | None:
        loaded = await self._state.sessions.lookup(self._id)
        if loaded is not None and appsessions.expired(loaded, self._state.clock.now()):
            return None  # a shorter expiry a framework set (Django's set_expiry, Flask's)
        return loaded

    def prefetch(self) -> None:
        """Start the read now, as a task, without waiting for it; ``load`` will use it.
        Reading before ``load`` still raises, so that behaviour never depends on timing."""
        if not self._ready and self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
            self._reading.add_done_callback(_retrieve)

    def _end(self) -> None:
        """The request is over: cancel a read nobody awaited."""
        reading = self._reading
        if reading is not None and not reading.done():
            reading.cancel()

    # -- beyond the mapping ---------------------------------------------------------

    @property
    def handle(self) -> str | None:
        """The session's public handle (device lists, logs), or None before it exists."""
        loaded = self._known()
        return loaded.handle if loaded is not None else None

    @property
    def csrf_token(self) -> str | None:
        """The CSRF token of a logged-in session (for forms), else None."""
        loaded = self._known()
        token = loaded.data.get("csrf") if loaded is not None else None
        return token if isinstance(token, str) else None

    @property
    def user_id(self) -> str | None:
        """The logged-in user's ID, or None for a visitor."""
        loaded = self._known()
        return loaded.user_id if loaded is not None and not loaded.anonymous else None

    def _known(self) -> Session | None:
        """The session as read; ``SessionNotLoaded`` before the read, rather than a
        None that would make a logged-in user look like a visitor."""
        if not self._ready:
            raise SessionNotLoaded(NOT_LOADED)
        return self._loaded

    async def login(self, email: str, password: str) -> LoginResult:
        """Log in through ``AuthState.login``: the session gets a new ID (no fixation),
        keeps the data written so far, and gets a fresh CSRF token; the new cookie is
        sent with the response. Raises what ``login`` raises (``AuthenticationFailed``,
        ``Throttled``, ...), leaving the session as it was. Needs no ``load`` first."""
        await self.save()  # what this request wrote so far is part of what carries over
        ip, user_agent = _client(self._scope)
        previous = self._id if self._loaded is not None or not self._ready else None
        result = await self._state.login(
            email, password, ip=ip, user_agent=user_agent, previous_session_id=previous,
        )
        self._adopt(result.session_id, result.session, "set")
        return result

    async def logout(self) -> None:
        """End the session (``AuthState.logout``): its data is gone, the cookie cleared.
        Needs no ``load`` first."""
        if self._id is not None and (self._loaded is not None or not self._ready):
            await self._state.logout(session_id=self._id)
        self._adopt(None, None, "clear")

    async def save(self) -> bytes | None:
        """Write what changed now (the middleware calls this when the response starts);
        the ``Set-Cookie`` value to send, if the cookie changes."""
        if not self._ready:
            if self._pending and self._id is not None:
                ip, user_agent = _client(self._scope)
                saved = await appsessions.save_unread(
                    self._state.sessions, self._id, self._pending,
                    now=self._state.clock.now(), ip=ip, user_agent=user_agent,
                )
                self._adopt(saved.session_id, saved.session, saved.cookie)
        elif self._values is not None:
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
        """Take the session as it now is; ``keep`` leaves a cookie change already due."""
        self._id, self._loaded, self._values = session_id, session, None
        self._ready, self._pending = True, {}
        if cookie != "keep" or self._cookie == "keep":
            self._cookie = cookie


async def load_session(connection: object) -> AppSession:
    """``await load_session(request)``: load the request's session (``AppSession.load``)
    and return it; ``connection`` is a Starlette, FastAPI or Litestar request, a
    WebSocket, or the ASGI scope itself."""
    scope = connection if isinstance(connection, MutableMapping) else getattr(
        connection, "scope", None)
    session = scope.get("session") if isinstance(scope, MutableMapping) else None
    if not isinstance(session, AppSession):
        raise ConfigurationError(
            "no authstate SessionMiddleware in front of this request (scope['session'])")
    return await session.load()


def _retrieve(reading: asyncio.Future[Session | None]) -> None:
    """Mark a failed read's error as seen: an outage in a read nobody awaited (a
    prefetch the app never used) is nobody's error, not a warning at exit."""
    if not reading.cancelled():
        reading.exception()


def _matcher(rule: Autoload, name: str) -> Callable[[Scope], bool]:
    """The predicate of an ``autoload``/``prefetch`` rule; ``ConfigurationError`` for a
    rule that cannot mean what was meant (a bare string, a path without its ``/``)."""
    if isinstance(rule, bool):
        return (lambda scope: True) if rule else (lambda scope: False)
    if callable(rule):
        return rule
    if isinstance(rule, str):
        raise ConfigurationError(f"{name} takes a list of paths, not one string: [{rule!r}]")
    prefixes: list[str] = []
    patterns: list[re.Pattern[str]] = []
    for item in rule:
        if isinstance(item, re.Pattern):
            patterns.append(item)
        elif isinstance(item, str) and item.startswith("/"):
            prefixes.append(item.rstrip("/"))
        else:
            raise ConfigurationError(
                f"{name}: each path is a string starting with '/' or a compiled pattern")

    def matches(scope: Scope) -> bool:
        path: str = scope.get("path", "")
        return (any(path == p or path.startswith(p + "/") for p in prefixes)
                or any(pattern.match(path) for pattern in patterns))
    return matches


class SessionMiddleware:
    """Give every HTTP and WebSocket request ``scope["session"]``; see the module
    docstring for ``autoload`` and ``prefetch``. A WebSocket's session is read-only (no
    response to carry a cookie)."""

    def __init__(
        self, app: ASGIApp, *, state: AuthState, autoload: Autoload = True,
        prefetch: Autoload = False,
    ) -> None:
        self.app = app
        self.state = state
        self.cookie_name = session_cookie_name(state.settings)
        self.autoload = _matcher(autoload, "autoload")
        self.prefetch = _matcher(prefetch, "prefetch")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        session = self._session(scope)
        if not session.is_loaded:
            if self.autoload(scope):
                try:
                    await session.load()
                except StoreUnavailable as error:
                    await unavailable(scope, send, error.code)
                    return
            elif self.prefetch(scope):
                session.prefetch()
        scope["session"] = session
        try:
            await self._run(scope, receive, send, session)
        finally:
            session._end()

    async def _run(self, scope: Scope, receive: Receive, send: Send, session: AppSession) -> None:
        if scope["type"] == "websocket":
            await self._run_websocket(scope, receive, send)
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

    async def _run_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket whose app's ``load`` meets an outage is closed with 1013 (try
        again later), as one refused before the app ran; unless it is closed already."""
        closed = False

        async def watch_close(message: Message) -> None:
            nonlocal closed
            closed = closed or message["type"] == "websocket.close"
            await send(message)

        try:
            await self.app(scope, receive, watch_close)
        except StoreUnavailable as error:
            if closed:
                raise
            await unavailable(scope, send, error.code)

    def _session(self, scope: Scope) -> AppSession:
        """The request's session, not read yet: none without the cookie, else the one
        ``AuthMiddleware`` already read for this cookie, else one to read (``load``)."""
        session_id = Credentials(scope).cookie(self.cookie_name)
        if session_id is None or not valid_id(session_id):
            return AppSession(self.state, scope, None, None)
        auth = scope.get("auth")
        if isinstance(auth, AuthInfo) and auth.identity is not None:
            known = auth.identity.session
            if known is not None and known.handle == digest(session_id)[:HANDLE_LEN]:
                return AppSession(self.state, scope, session_id, known)
        return AppSession(self.state, scope, session_id, None, unread=True)


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
