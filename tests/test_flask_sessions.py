"""``authstate.flask.ServerSideSessions`` on every store, under Flask's test client:
read/write/delete, ``permanent`` and ``modified``, concurrent writes from two threads,
the size cap, no store write for a visitor who writes nothing, login rotating the ID and
keeping the data, revocation from the account page ending the Flask session, outages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify, request, session
from flask.typing import ResponseReturnValue
from werkzeug.test import TestResponse

from authstate import appsessions
from authstate.clock import FrozenClock
from authstate.errors import AuthenticationFailed, SessionTooLarge
from authstate.flask import ServerSideSessions
from authstate.sync import SyncAuthState
from tests.conftest import BACKENDS
from tests.support import RedisServer
from tests.sync_sessions import (
    Together,
    count_sessions,
    on_throwaway_redis,
    run_together,
    sync_state_on,
)
from tests.web.api import PASSWORD

COOKIE = "authstate_session"
EMAIL = "flo@example.com"


def make_app(sync: SyncAuthState, together: Together | None = None, *,
             init_app: bool = True) -> Flask:
    """The app; ``init_app=False`` installs the interface alone
    (``app.session_interface = ...``), without ``init_app``'s error handler."""
    app = Flask(__name__)
    sessions = ServerSideSessions(sync)
    if init_app:
        sessions.init_app(app)
    else:
        app.session_interface = sessions

    @app.get("/read")
    def read() -> ResponseReturnValue:
        return jsonify(dict(session))

    @app.post("/write")
    def write() -> ResponseReturnValue:
        body: dict[str, Any] = request.get_json()
        for key, value in body.items():
            session[key] = value
        if together is not None and "together" in request.args:
            together.wait()
        return jsonify(dict(session))

    @app.post("/read-then-write")
    def read_then_write() -> ResponseReturnValue:
        """Reads, runs the test's ``test.between`` (killing the store), then writes: the
        write meets the outage at ``save_session``."""
        seen = dict(session)
        between = request.environ.get("test.between")
        if callable(between):
            between()
        session.update(request.get_json())
        return jsonify(seen)

    @app.post("/delete/<key>")
    def delete(key: str) -> ResponseReturnValue:
        session.pop(key, None)
        return jsonify(dict(session))

    @app.post("/append/<item>")
    def append(item: str) -> ResponseReturnValue:
        session["cart"].append(item)  # in place, and without session.modified
        return jsonify(dict(session))

    @app.post("/permanent")
    def permanent() -> ResponseReturnValue:
        session.permanent = True
        return jsonify({})

    @app.post("/too-big")
    def too_big() -> ResponseReturnValue:
        try:
            session["blob"] = "x" * appsessions.MAX_BYTES
        except SessionTooLarge as error:
            return jsonify({"error": error.code}), 413
        return jsonify({})

    @app.post("/login")
    def login() -> ResponseReturnValue:
        body = request.get_json()
        try:
            result = sessions.login(body["email"], body["password"])
        except AuthenticationFailed:
            return jsonify({"error": "bad"}), 401
        return jsonify({"user": result.user.id})

    @app.post("/logout")
    def logout() -> ResponseReturnValue:
        sessions.logout()
        return jsonify({})

    return app


@pytest.fixture(params=BACKENDS)
def sync(request: pytest.FixtureRequest, clock: FrozenClock, tmp_path: Path) -> Iterator[SyncAuthState]:
    with sync_state_on(request.param, clock, tmp_path) as s:
        yield s


def test_read_write_delete(sync: SyncAuthState) -> None:
    client = make_app(sync).test_client()
    assert client.get("/read").json == {}
    written = client.post("/write", json={"cart": ["apple"], "step": 2})
    cookie = written.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "Max-Age" not in cookie
    assert client.get("/read").json == {"cart": ["apple"], "step": 2}
    assert "Set-Cookie" not in client.post("/append/pear").headers
    assert client.get("/read").json == {"cart": ["apple", "pear"], "step": 2}
    client.post("/delete/step")
    assert client.get("/read").json == {"cart": ["apple", "pear"]}


def test_permanent_session_cookie_lasts(sync: SyncAuthState) -> None:
    app = make_app(sync)
    client = app.test_client()
    client.post("/write", json={"a": 1})
    response = client.post("/permanent")
    lifetime = int(app.permanent_session_lifetime.total_seconds())
    assert f"Max-Age={lifetime}" in response.headers["Set-Cookie"]
    assert client.get("/read").json == {"a": 1, "_permanent": True}


def test_anonymous_without_write_creates_nothing(sync: SyncAuthState) -> None:
    client = make_app(sync).test_client()
    before = count_sessions(sync)
    for _ in range(3):
        assert "Set-Cookie" not in client.get("/read").headers
    assert count_sessions(sync) == before
    client.post("/write", json={"flash": "hi"})
    assert count_sessions(sync) == before + 1


def test_concurrent_writes_of_different_keys_both_land(sync: SyncAuthState) -> None:
    app = make_app(sync, Together())
    client = app.test_client()
    client.post("/write", json={"seed": 0})
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None

    def writer(body: dict[str, Any]) -> Any:
        other = app.test_client()
        other.set_cookie(COOKIE, cookie.value)
        return other.post("/write?together", json=body).json

    first, second = run_together(lambda: writer({"a": 1}), lambda: writer({"b": 2}))
    assert first == {"seed": 0, "a": 1} and second == {"seed": 0, "b": 2}
    assert client.get("/read").json == {"seed": 0, "a": 1, "b": 2}


def test_size_cap(sync: SyncAuthState) -> None:
    client = make_app(sync).test_client()
    client.post("/write", json={"keep": "me"})
    response = client.post("/too-big")
    assert response.status_code == 413 and response.json == {"error": "session_too_large"}
    assert client.get("/read").json == {"keep": "me"}
    client.post("/write", json={"cart": ["y" * 3000]})
    grown = client.post("/append/" + "z" * 1500)  # in place, past the cap: found at the save
    assert grown.status_code == 422 and grown.json is not None
    assert grown.json["code"] == "session_too_large"
    assert client.get("/read").json == {"keep": "me", "cart": ["y" * 3000]}


def test_login_rotates_keeps_data_and_revocation_ends_it(sync: SyncAuthState) -> None:
    user = sync.call(lambda state: state.users.create(EMAIL, PASSWORD))
    client = make_app(sync).test_client()
    client.post("/write", json={"cart": ["book"]})
    visitor = client.get_cookie(COOKIE)
    assert visitor is not None
    assert client.post("/login", json={"email": EMAIL, "password": PASSWORD}).json == {
        "user": user.id}
    logged_in = client.get_cookie(COOKIE)
    assert logged_in is not None and logged_in.value != visitor.value
    assert sync.call(lambda state: state.sessions.lookup(visitor.value)) is None
    assert client.get("/read").json == {"cart": ["book"]}
    [device] = sync.call(lambda state: state.sessions.for_user(user.id))
    assert sync.end_session(user.id, device.handle) is not None  # the account page's revoke
    assert client.get("/read").json == {}
    client.post("/write", json={"cart": ["again"]})  # a new visitor session, not the user's
    assert sync.call(lambda state: state.sessions.for_user(user.id)) == []


def test_failed_login_and_logout(sync: SyncAuthState) -> None:
    sync.call(lambda state: state.users.create(EMAIL, PASSWORD))
    client = make_app(sync).test_client()
    client.post("/write", json={"cart": ["book"]})
    assert client.post("/login", json={"email": EMAIL, "password": "bad"}).status_code == 401
    assert client.get("/read").json == {"cart": ["book"]}
    client.post("/login", json={"email": EMAIL, "password": PASSWORD})
    response = client.post("/logout")
    assert f'{COOKIE}=""' in response.headers["Set-Cookie"]
    assert client.get("/read").json == {} and count_sessions(sync) == 0


def assert_unavailable(response: TestResponse, server: RedisServer) -> None:
    """The outage answer: 503, Retry-After, the problem detail, no cookie set or
    cleared, and nothing of the store's address."""
    assert response.status_code == 503, response.data
    assert response.headers["Retry-After"].isdigit()
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json is not None and response.json["code"] == "store_unavailable"
    assert "Set-Cookie" not in response.headers
    assert str(server.port) not in response.get_data(as_text=True)


@pytest.mark.parametrize("init_app", [True, False], ids=["init_app", "session_interface"])
def test_store_outage_reading_is_503_and_the_cookie_works_after(
    init_app: bool, clock: FrozenClock, tmp_path: Path,
) -> None:
    """A real Redis of the test's own, SIGKILLed: the session cannot be read, and the
    request that uses it is a 503 problem with Retry-After, not a 500 or an empty one
    (without ``init_app``, Flask's 500 for it becomes the 503 at ``save_session``).
    Started again on the same port, the same cookie works, without a new app."""
    with on_throwaway_redis(clock, tmp_path) as (server, sync):
        client = make_app(sync, init_app=init_app).test_client()
        client.post("/write", json={"cart": ["book"]})
        cookie = client.get_cookie(COOKIE)
        assert cookie is not None
        server.stop()
        assert_unavailable(client.get("/read"), server)
        assert_unavailable(client.post("/write", json={"step": 2}), server)
        server.start()
        assert client.get_cookie(COOKIE) == cookie
        assert client.get("/read").json == {"cart": ["book"]}


def test_store_outage_saving_is_503_without_a_cookie(clock: FrozenClock, tmp_path: Path) -> None:
    """Read while the store is up, written after it is gone (``save_session``): the 503,
    not the app's answer with the write lost; a visitor's first write creates nothing
    and sets no cookie."""
    with on_throwaway_redis(clock, tmp_path) as (server, sync):
        client = make_app(sync).test_client()
        client.post("/write", json={"cart": ["book"]})
        response = client.post("/read-then-write", json={"step": 2},
                               environ_overrides={"test.between": server.stop})
        assert_unavailable(response, server)
        visitor = make_app(sync).test_client()
        assert_unavailable(visitor.post("/write", json={"flash": "hi"}), server)
        assert visitor.get_cookie(COOKIE) is None
        server.start()
        assert client.get("/read").json == {"cart": ["book"]}  # the lost write was not "saved"
        assert client.post("/write", json={"step": 2}).json == {"cart": ["book"], "step": 2}
        assert visitor.post("/write", json={"flash": "hi"}).status_code == 200
        assert count_sessions(sync) == 2
