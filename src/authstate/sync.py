"""The synchronous face of authstate: the same async core, driven from sync code.

Flask, Django, gunicorn's sync workers and scripts call authstate from threads with no
event loop. Calling the async core with ``asyncio.run`` per request works until an
object bound to the first loop (a Redis pool, the JWKS client's HTTP connections, the
bus listener) is used from the next one: "Event loop is closed". Here there is instead
one ``Portal`` per process: a daemon thread running one event loop for as long as the
process lives, shared by every request thread. A sync call hands a coroutine to that
loop (``asyncio.run_coroutine_threadsafe``) and waits for its result, so the store
connections, the JWKS client, the push-revocation listener and the verified-token cache
live on one loop and serve every thread, and no loop is created per request.

Why a hand-written thread and not ``anyio.from_thread.start_blocking_portal`` (anyio
is installed with the core, through httpx): measured, and it is the cheaper hop. An
empty coroutine costs 45 µs of CPU per call through ``Portal.call`` against 78 µs
through anyio's ``BlockingPortal.call`` (``benchmarks/sync_portal.py``, one run on the
shared 2-core machine), and the part we need is a few lines over ``asyncio``.

The hop is not free: two thread switches, 70-100 µs of CPU per verification in that run
(the same cached verification awaited on the loop: 4 µs; ``asyncio.run`` per call: 120
µs, and broken). So the common request, a
JWT already verified, skips it: ``SyncAuthState.authenticate_bearer`` and the WSGI
adapters first ask ``AuthState.authenticate_cached`` (a hash and dictionary reads in the
calling thread, the revocation copy re-checked; 14-18 µs through a thread pool in the
same run) and hop only on a miss, for an opaque token, a session, or outside push revocation.

Lifecycle: the portal starts on first use, stops on ``close()`` and at interpreter exit
(``atexit``), and after ``fork`` (gunicorn's ``--preload``) the child starts a fresh
one on first use: threads do not survive a fork, and what the parent opened on its loop
(connections, sockets) belongs to the parent, so the child drops it without closing it
and opens its own. Things that hold connections are therefore opened lazily, in each
process, through ``Portal.resource``: ``SyncAuthState`` is one.

``SyncAuthState`` wraps ``AuthState`` with a sync method for each flow (``login``,
``logout``, ``change_password``, ``revoke_user``, ``issue_for_session``,
``authenticate_session``, ``authenticate_bearer`` ...), delegating to the async one: same
semantics, same errors (raised in the calling thread), same audit events. The flows are
not written twice; each sync method is the async method run on the portal.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    TypeVar,
    cast,
    overload,
)

from authstate.state import AuthState

if TYPE_CHECKING:
    from authstate.clock import Clock
    from authstate.config import Settings
    from authstate.identity import Identity
    from authstate.sessions import Session

__all__ = ["Portal", "Resource", "SyncAuthState", "default_portal"]

P = ParamSpec("P")
T = TypeVar("T")

CLOSE_TIMEOUT = 10.0  # seconds a closing resource may take before the loop is stopped anyway

_portals: weakref.WeakSet[Portal] = weakref.WeakSet()


class Portal:
    """One background thread with its own event loop, shared by every calling thread.

    ``call(fn, *args)`` runs ``await fn(*args)`` on the loop and returns its result (or
    raises its exception) in the calling thread. Thread-safe; started lazily; closed by
    ``close()``, at interpreter exit, and replaced after a fork (see the module
    docstring)."""

    def __init__(self, name: str = "authstate-portal") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._resources: list[Resource[Any]] = []
        self._closed = False
        _portals.add(self)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError("the portal is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=run, name=self.name, daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coroutine`` on the loop; its future, for a caller that waits later."""
        loop = self._loop or self._start()
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a portal call from the portal's own loop would deadlock")
        return asyncio.run_coroutine_threadsafe(coroutine, loop)

    def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)`` on the portal's loop, from any other thread."""

        async def run() -> T:
            return await fn(*args, **kwargs)

        return self.submit(run()).result()

    def resource(
        self,
        open: Callable[[], Awaitable[T]],
        close: Callable[[T], Awaitable[None]] | None = None,
    ) -> Resource[T]:
        """A value opened on this loop on first use, once per process (see ``Resource``),
        and closed (``close(value)``, on the loop) when the portal closes."""
        return self._register(Resource(self, open, close))

    def resource_built(
        self,
        build: Callable[[], T],
        close: Callable[[T], Awaitable[None]] | None = None,
    ) -> Resource[T]:
        """As ``resource``, but built by a plain function in the first calling thread
        (which may itself call the portal, e.g. ``sync.state``)."""
        return self._register(Resource(self, None, close, build=build))

    def _register(self, resource: Resource[T]) -> Resource[T]:
        with self._lock:
            self._resources.append(resource)
        return resource

    def close(self) -> None:
        """Close the resources (last opened first), stop the loop and join the thread.
        Idempotent; the portal cannot be used afterwards."""
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            resources = list(reversed(self._resources))
        if loop is None or thread is None:
            return
        if thread is not threading.current_thread():
            for resource in resources:
                resource._close_on(loop)
            with contextlib.suppress(Exception):  # best effort, as asyncio.run's own ending
                asyncio.run_coroutine_threadsafe(_wind_down(), loop).result(CLOSE_TIMEOUT)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CLOSE_TIMEOUT)
        if not thread.is_alive():
            loop.close()

    def _after_fork(self) -> None:
        """In a forked child: the parent's thread is gone and its loop's sockets are the
        parent's. Forget both (closing them would close the parent's connections) and
        start afresh on first use."""
        self._lock = threading.Lock()
        self._loop = self._thread = None
        for resource in self._resources:
            resource._forget()

    def __enter__(self) -> Portal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def _wind_down() -> None:
    """What ``asyncio.run`` does before closing its loop: cancel what is left, finish
    async generators, and join the default executor's threads (SQLite's, argon2's)."""
    loop = asyncio.get_running_loop()
    tasks = [t for t in asyncio.all_tasks(loop) if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()


class Resource(Generic[T]):
    """Something opened on a portal's loop once per process: the ``AuthState`` (its
    store and bus connections), the authenticators of a WSGI middleware (a JWKS client's
    HTTP pool). ``get()`` opens it on first use, from any thread, exactly once."""

    def __init__(
        self,
        portal: Portal,
        open: Callable[[], Awaitable[T]] | None,
        close: Callable[[T], Awaitable[None]] | None,
        *,
        build: Callable[[], T] | None = None,
    ) -> None:
        self.portal = portal
        self._open = open
        self._build = build
        self._close = close
        self._value: T | None = None
        self._opened = False
        self._lock = threading.Lock()

    def get(self) -> T:
        if self._opened:
            return cast(T, self._value)  # not "if value is None": T itself may be None
        with self._lock:
            if not self._opened:
                if self._open is not None:
                    value = self.portal.call(self._open)
                else:
                    assert self._build is not None
                    value = self._build()
                self._value, self._opened = value, True
                return value
            return cast(T, self._value)

    @property
    def opened(self) -> bool:
        return self._opened

    def close(self) -> None:
        """Close the value now (it is opened again on next use)."""
        loop = self.portal._loop
        if loop is not None and self.portal.running:
            self._close_on(loop)
        else:
            self._forget()

    def _close_on(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            opened, value = self._opened, self._value
            self._opened, self._value = False, None
        close = self._close
        if not opened or close is None:
            return

        async def closing() -> None:
            await close(cast(T, value))

        future = asyncio.run_coroutine_threadsafe(closing(), loop)
        with contextlib.suppress(Exception):  # closing is best effort: the process ends
            future.result(CLOSE_TIMEOUT)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._opened, self._value = False, None


_default: Portal | None = None
_default_lock = threading.Lock()


def default_portal() -> Portal:
    """The process's shared portal (created on first use, replaced once closed): what
    ``SyncAuthState`` and the WSGI middleware use unless given another."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = Portal()
        return _default


def _close_all() -> None:
    for portal in list(_portals):
        portal.close()


def _reset_after_fork() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for portal in list(_portals):
        portal._after_fork()


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class _Delegate(Generic[P, T]):
    """A sync method that runs the ``AuthState`` method of the same name on the portal:
    the signature, docstring and errors are the async method's own."""

    def __init__(self, method: Callable[Concatenate[AuthState, P], Awaitable[T]]) -> None:
        self.method = method
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> _Delegate[P, T]: ...
    @overload
    def __get__(self, obj: SyncAuthState, owner: type[Any]) -> Callable[P, T]: ...

    def __get__(
        self, obj: SyncAuthState | None, owner: type[Any]
    ) -> _Delegate[P, T] | Callable[P, T]:
        if obj is None:
            return self
        method = self.method

        @functools.wraps(method)
        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            return obj.call(method, *args, **kwargs)

        return call


class SyncAuthState:
    """``AuthState`` for sync code: each flow as a blocking method, run on a portal.

    ``SyncAuthState(settings)`` opens ``AuthState.open(settings)`` on first use, in each
    process (after a fork, the child opens its own), and closes it with ``close()`` or at
    exit. ``SyncAuthState.wrapping(state, portal)`` takes an ``AuthState`` already open on
    that portal's loop (it then belongs to the caller, and a forked child cannot use it).
    ``state`` is the ``AuthState`` itself, for code that runs on the portal."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        portal: Portal | None = None,
    ) -> None:
        self.settings = settings
        self.portal = portal or default_portal()

        async def open() -> AuthState:
            return await AuthState.open(settings, clock=clock)

        self._state = self.portal.resource(open, AuthState.close)

    @classmethod
    def wrapping(cls, state: AuthState, portal: Portal) -> SyncAuthState:
        """Drive an ``AuthState`` that was opened on ``portal``'s loop (for instance with
        ``portal.call(AuthState.open, settings)``); closing it stays the caller's job."""
        self = cls.__new__(cls)
        self.settings = state.settings
        self.portal = portal

        async def opened() -> AuthState:
            return state

        self._state = portal.resource(opened)
        return self

    @property
    def state(self) -> AuthState:
        """The ``AuthState`` (opened on first use). Call its async methods through
        ``call``; its sync parts (``settings``, ``clock``, ``tokens.issue``) directly."""
        return self._state.get()

    def call(
        self,
        fn: Callable[Concatenate[AuthState, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``await fn(state, *args, **kwargs)`` on the portal, e.g.
        ``sync.call(AuthState.end_session, user_id, handle)``: any flow, typed."""
        state = self.state
        return self.portal.call(fn, state, *args, **kwargs)

    def run(self, fn: Callable[[AuthState], Awaitable[T]], /) -> T:
        """``await fn(state)`` on the portal: several awaits in one hop."""
        state = self.state
        return self.portal.call(fn, state)

    def authenticate_bearer(self, token: object) -> Identity:
        """``AuthState.authenticate_bearer``: in this thread for a JWT it has already
        verified (``authenticate_cached``: no hop to the loop), else on the portal."""
        if isinstance(token, str):
            identity = self.state.authenticate_cached(token)
            if identity is not None:
                return identity
        return self.call(AuthState.authenticate_bearer, token)

    def lookup_session(self, session_id: str) -> Session | None:
        """``SessionManager.lookup``: in this thread for a session in this process's copy
        (``lookup_cached``: no hop to the loop), else on the portal. For the framework
        session engines, which read the session as each request opens it."""
        session = self.state.sessions.lookup_cached(session_id)
        if session is not None:
            return session
        return self.run(lambda state: state.sessions.lookup(session_id))

    # who is calling
    authenticate_session = _Delegate(AuthState.authenticate_session)
    introspect = _Delegate(AuthState.introspect)
    # logging in and out
    login = _Delegate(AuthState.login)
    logout = _Delegate(AuthState.logout)
    password_grant = _Delegate(AuthState.password_grant)
    change_password = _Delegate(AuthState.change_password)
    # tokens
    issue_for_session = _Delegate(AuthState.issue_for_session)
    login_tokens = _Delegate(AuthState.login_tokens)
    refresh_tokens = _Delegate(AuthState.refresh_tokens)
    revoke_token = _Delegate(AuthState.revoke_token)
    # users, sessions, clients, keys
    revoke_user = _Delegate(AuthState.revoke_user)
    end_session = _Delegate(AuthState.end_session)
    end_sessions = _Delegate(AuthState.end_sessions)
    add_user = _Delegate(AuthState.add_user)
    add_client = _Delegate(AuthState.add_client)
    rotate_keys = _Delegate(AuthState.rotate_keys)
    revoke_key = _Delegate(AuthState.revoke_key)
    ping = _Delegate(AuthState.ping)

    def close(self) -> None:
        """Close the ``AuthState`` (not the portal, which other users may share)."""
        self._state.close()

    def __enter__(self) -> SyncAuthState:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
