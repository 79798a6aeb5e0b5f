"""The sync face (``authstate.sync``): one loop thread per process driving the same core.

Every flow called from plain threads returns what the async one returns and raises the
same errors; many threads share one loop thread; nothing is left running after
``close``; a forked child gets its own loop; and many sequential calls across a JWKS
refetch keep working (the ``asyncio.run`` per request regression: "Event loop is closed").
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from authstate.clock import FrozenClock
from authstate.config import Settings
from authstate.errors import AuthenticationFailed, InvalidToken
from authstate.jwt import AccessTokens
from authstate.keys import KeySet, SigningKey
from authstate.state import AuthState
from authstate.sync import Portal, SyncAuthState
from authstate.verifier import Verifier

PASSWORD = "correct horse battery staple"


def settings(tmp_path: Path) -> Settings:
    return Settings(store=f"sqlite:///{tmp_path / 'sync.db'}", issuer="http://127.0.0.1:9",
                    dev=True, password_time_cost=1, password_memory_kib=1024)


@pytest.fixture
def portal() -> Iterator[Portal]:
    with Portal(name="authstate-test-portal") as p:
        yield p


def portal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("authstate-test-portal")]


def test_flows_from_sync_code_same_results_and_errors(tmp_path: Path, portal: Portal) -> None:
    sync = SyncAuthState(settings(tmp_path), portal=portal)
    user = sync.add_user("ann@example.com", PASSWORD, via="test")
    with pytest.raises(AuthenticationFailed):  # raised in the calling thread, same class
        sync.login("ann@example.com", "wrong password entirely", ip=None, user_agent=None)
    login = sync.login("ann@example.com", PASSWORD, ip="198.51.100.1", user_agent="t")
    identity = sync.authenticate_session(login.session_id)
    assert identity is not None and identity.user_id == user.id
    token, _ = sync.issue_for_session(login.session, scope=("read",))
    bearer = sync.authenticate_bearer(token)
    assert bearer.user_id == user.id and bearer.scope == ("read",)
    revoked = sync.revoke_user(user.id)
    assert revoked.sessions == 1
    with pytest.raises(InvalidToken):
        sync.authenticate_bearer(token)
    assert sync.authenticate_session(login.session_id) is None
    page = sync.run(lambda s: s.audit.query(limit=50))  # the same audit trail
    assert {"login_failed", "login_succeeded", "session_revoked"} <= {e.type for e in page.events}
    sync.close()


def test_threads_share_one_loop_and_nothing_is_left_after_close(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    portal = Portal(name="authstate-test-portal")
    sync = SyncAuthState(settings(tmp_path), portal=portal)
    user = sync.add_user("bob@example.com", PASSWORD, via="test")
    login = sync.login("bob@example.com", PASSWORD, ip=None, user_agent=None)
    token, _ = sync.issue_for_session(login.session)
    loops: set[int] = set()

    def one(_: int) -> str:
        loops.add(id(sync.run(_running_loop)))
        return sync.authenticate_bearer(token).user_id

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(400)))
    assert results == [user.id] * 400
    assert len(loops) == 1 and len(portal_threads()) == 1
    portal.close()
    assert portal_threads() == []
    assert set(threading.enumerate()) <= before


async def _running_loop(state: AuthState) -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_a_call_from_the_portal_itself_is_refused_not_deadlocked(portal: Portal) -> None:
    async def inner() -> None:
        portal.call(asyncio.sleep, 0)

    with pytest.raises(RuntimeError, match="deadlock"):
        portal.call(inner)


def _child(url: str, queue: Any) -> None:
    from authstate.sync import default_portal

    sync = SyncAuthState(Settings(store=url, issuer="http://127.0.0.1:9", dev=True,
                                  password_time_cost=1, password_memory_kib=1024))
    user = sync.call(AuthState.add_user, "child@example.com", PASSWORD, via="child")
    queue.put((user.email, default_portal().running))


def test_a_forked_child_starts_its_own_loop(tmp_path: Path) -> None:
    from authstate.sync import default_portal

    url = f"sqlite:///{tmp_path / 'fork.db'}"
    parent = SyncAuthState(Settings(store=url, issuer="http://127.0.0.1:9", dev=True,
                                    password_time_cost=1, password_memory_kib=1024))
    parent.add_user("parent@example.com", PASSWORD, via="test")  # the parent's loop runs
    assert default_portal().running
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child, args=(url, queue))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == ("child@example.com", True)
    assert parent.authenticate_session("not a session") is None  # the parent still works
    parent.close()


class JWKSServer:
    """A real HTTP server on 127.0.0.1 publishing a JWK Set the test can replace."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real JWKS host
            def do_GET(self) -> None:
                owner.hits += 1
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client dropping its keep-alive connection is no news

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, keys: KeySet) -> None:
        self.document = keys.public_jwks()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def jwks_server() -> Iterator[JWKSServer]:
    server = JWKSServer()
    yield server
    server.close()


def test_sequential_sync_calls_across_jwks_refetches_keep_working(
    jwks_server: JWKSServer, portal: Portal
) -> None:
    """The regression: ``asyncio.run(verifier.averify(t))`` per request fails with "Event
    loop is closed" once the JWKS client's HTTP connection from an earlier loop is
    reused. Through the portal, every call runs on the same loop."""
    clock = FrozenClock()
    issuer = "http://127.0.0.1:9"
    first, second = SigningKey.generate("ES256"), SigningKey.generate("ES256")
    jwks_server.publish(KeySet([first]))
    verifier = Verifier.from_url(jwks_server.url, issuer=issuer, audience="authstate",
                                 clock=clock)
    signer = AccessTokens(KeySet([first]), issuer=issuer, audience="authstate", clock=clock)
    for round_ in range(6):
        token, _ = signer.issue(f"user-{round_}")
        for _ in range(50):
            assert portal.call(verifier.averify, token)["sub"] == f"user-{round_}"
        if round_ == 2:  # a rotation: the next tokens carry a kid the cached set lacks
            jwks_server.publish(KeySet([first, second]))
            signer = AccessTokens(KeySet([second]), issuer=issuer, audience="authstate",
                                  clock=clock)
        clock.advance(400)  # past the JWKS cache lifetime: the next call refetches
    assert jwks_server.hits >= 6
    portal.call(verifier.aclose)


def test_asyncio_run_per_call_is_the_bug_this_replaces(jwks_server: JWKSServer) -> None:
    """What a new user wrote before the portal existed, failing as the issue reports."""
    clock = FrozenClock()
    key = SigningKey.generate("ES256")
    jwks_server.publish(KeySet([key]))
    verifier = Verifier.from_url(jwks_server.url, issuer="i", audience="a", clock=clock)
    token, _ = AccessTokens(KeySet([key]), issuer="i", audience="a", clock=clock).issue("u")
    asyncio.run(verifier.averify(token))
    clock.advance(400)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        asyncio.run(verifier.averify(token))


class CountingPortal(Portal):
    """A real portal that counts the coroutines handed to its loop."""

    def __init__(self) -> None:
        super().__init__(name="authstate-test-portal")
        self.hops = 0

    def submit(self, coroutine: Any) -> Any:
        self.hops += 1
        return super().submit(coroutine)


def test_a_verified_jwt_is_answered_in_the_calling_thread(tmp_path: Path) -> None:
    """The first verification hops to the loop (and caches); later ones are told in the
    request thread, from the cache and the local revocation copy; a revoked token is
    refused from the moment ``revoke_user`` returns, on every thread."""
    with CountingPortal() as portal:  # memory store and bus: push revocation
        sync = SyncAuthState(settings(tmp_path).model_copy(update={"store": "memory://"}),
                             portal=portal)
        sync.add_user("cy@example.com", PASSWORD, via="test")
        login = sync.login("cy@example.com", PASSWORD, ip=None, user_agent=None)
        token, _ = sync.issue_for_session(login.session)
        assert sync.state.authenticate_cached(token) is None  # not verified yet
        first = sync.authenticate_bearer(token)
        hops = portal.hops
        for _ in range(200):
            assert sync.authenticate_bearer(token) == first
        assert portal.hops == hops  # no hop at all
        forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
        with pytest.raises(InvalidToken):  # a miss goes to the loop, for the precise error
            sync.authenticate_bearer(forged)
        assert portal.hops == hops + 1

        stop = threading.Event()
        revoked = threading.Event()
        late_successes = 0
        attempts = [0, 0, 0, 0]

        def hammer(n: int) -> None:
            nonlocal late_successes
            while not stop.is_set():
                after_revocation = revoked.is_set()
                try:
                    sync.authenticate_bearer(token)
                except InvalidToken:
                    pass
                else:
                    late_successes += after_revocation
                attempts[n] += 1

        threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        _until(lambda: min(attempts) >= 50)  # every thread is on the cached path
        sync.revoke_user(first.user_id)
        revoked.set()
        seen = list(attempts)
        _until(lambda: all(a >= s + 50 for a, s in zip(attempts, seen, strict=True)))
        stop.set()
        for thread in threads:
            thread.join(10)
        assert late_successes == 0
        assert sync.state.authenticate_cached(token) is None
        sync.close()


def _until(condition: Any, bound: float = 10.0) -> None:
    """Wait for other threads' progress (not for time to pass), at most ``bound`` s."""
    import time

    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, "the threads made no progress"
        time.sleep(0.001)


def test_interpreter_exit_closes_the_portal_cleanly(tmp_path: Path) -> None:
    """A script that never calls ``close``: at exit the AuthState (its store) is closed on its loop
    and the loop stopped, with nothing left to complain (no "Task was destroyed", no
    unclosed connection warning) and a zero exit status."""
    import subprocess
    import sys

    script = (
        "import logging, warnings\n"
        "warnings.simplefilter('always')\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "from authstate.config import Settings\n"
        "from authstate.sync import SyncAuthState\n"
        f"auth = SyncAuthState(Settings(store='sqlite:///{tmp_path / 'exit.db'}', "
        "issuer='http://127.0.0.1:9', dev=True, password_time_cost=1, password_memory_kib=1024))\n"
        "auth.add_user('ed@example.com', 'correct horse battery staple', via='test')\n"
        "print(auth.ping())\n"
    )
    done = subprocess.run([sys.executable, "-X", "dev", "-c", script], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "sqlite"
    assert done.stderr == ""
    # SQLite removes its WAL file when the last connection closes: the store was closed
    assert (tmp_path / "exit.db").exists() and not (tmp_path / "exit.db-wal").exists()
