"""The Django session engine (``SESSION_ENGINE = "authstate.django.sessions"``) on every
store: the ``SessionBase`` behaviours Django's own backend tests check for its engines
(django/tests/sessions_tests/tests.py, ``SessionTestsMixin``), then a real Django app
under its test client: read/write/delete, concurrent writes from two threads, the size
cap, no store write for a visitor who writes nothing, login rotating the ID and keeping
the data, and revocation from the account page ending the Django session."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib import messages
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.contrib.sessions.management.commands.clearsessions import (
    Command as ClearSessions,
)
from django.core.management import call_command
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

from authstate import appsessions
from authstate.clock import FrozenClock
from authstate.django import sessions as engine
from authstate.django.sessions import SessionDataTooLarge, SessionStore
from authstate.errors import AuthenticationFailed, InvalidInput
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

EMAIL = "dora@example.com"
TOGETHER = Together()
PROJECT = Path(__file__).resolve().parents[1] / "examples" / "django_project"


# -- the app ---------------------------------------------------------------------------

def read(request: HttpRequest) -> HttpResponse:
    return JsonResponse(dict(request.session.items()))


def write(request: HttpRequest) -> HttpResponse:
    request.session.update(json.loads(request.body))
    if "together" in request.GET:
        TOGETHER.wait()
    return JsonResponse(dict(request.session.items()))


def delete(request: HttpRequest, key: str) -> HttpResponse:
    del request.session[key]
    return JsonResponse(dict(request.session.items()))


def too_big(request: HttpRequest) -> HttpResponse:
    try:
        request.session["blob"] = "x" * appsessions.MAX_BYTES
    except SessionDataTooLarge as error:
        return JsonResponse({"error": error.code}, status=413)
    return JsonResponse({})


def grow(request: HttpRequest) -> HttpResponse:
    request.session["items"].append("y" * 3000)  # in place: found only at the save
    request.session.modified = True
    return JsonResponse({})


def read_then_write(request: HttpRequest) -> HttpResponse:
    """Reads the session, runs the test's ``test.between`` (killing the store), then
    writes: the write meets the outage at the response's save."""
    seen = dict(request.session.items())
    between = request.META.get("test.between")
    if callable(between):
        between()
    request.session.update(json.loads(request.body))
    return JsonResponse(seen)


def flash(request: HttpRequest) -> HttpResponse:
    """A message for the next page: the messages' session storage writes it to the
    session in its middleware's ``process_response``, after the view."""
    messages.info(request, "saved")
    return JsonResponse({})


def login(request: HttpRequest) -> HttpResponse:
    body = json.loads(request.body)
    try:
        result = engine.login(request, body["email"], body["password"])
    except AuthenticationFailed:
        return JsonResponse({"error": "bad"}, status=401)
    return JsonResponse({"user": result.user.id})


def cycle(request: HttpRequest) -> HttpResponse:
    request.session.cycle_key()  # what django.contrib.auth.login does
    return JsonResponse({})


def logout(request: HttpRequest) -> HttpResponse:
    engine.logout(request)
    return JsonResponse({})


urlpatterns = [
    path("read", read), path("write", write), path("delete/<str:key>", delete),
    path("too-big", too_big), path("grow", grow), path("login", login), path("cycle", cycle),
    path("logout", logout), path("read-then-write", read_then_write), path("flash", flash),
]


# -- fixtures ------------------------------------------------------------------------------

def setup_django() -> None:
    """Django set up as tests/sync/test_django.py sets it up (the example project's
    settings), so that either module may run first; each test overrides what it needs."""
    if str(PROJECT) not in sys.path:
        sys.path.insert(0, str(PROJECT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orders_site.settings")
    import django

    django.setup()


@pytest.fixture(scope="module", autouse=True)
def django_configured() -> None:
    setup_django()


@pytest.fixture(params=BACKENDS)
def sync(request: pytest.FixtureRequest, clock: FrozenClock, tmp_path: Path) -> Iterator[SyncAuthState]:
    with sync_state_on(request.param, clock, tmp_path) as s, override_settings(
        AUTHSTATE=s, SESSION_ENGINE="authstate.django.sessions", ROOT_URLCONF=__name__,
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
    ):
        yield s


def post(client: Client, url: str, body: Any = None) -> Any:
    return client.post(url, json.dumps(body or {}), content_type="application/json")


# -- SessionBase, as Django's SessionTestsMixin checks its engines ------------------------

def test_new_session(sync: SyncAuthState) -> None:
    session = SessionStore()
    assert not session.modified and not session.accessed
    assert session.get("cat") is None and session.session_key is None


def test_set_get_pop_setdefault_update_has_key(sync: SyncAuthState) -> None:
    session = SessionStore()
    session["cat"] = "dog"
    assert session.modified and session.pop("cat") == "dog"
    assert session.pop("some key", "does not exist") == "does not exist"
    assert session.setdefault("foo", "bar") == "bar" and session.setdefault("foo", "baz") == "bar"
    session.update({"update key": 1})
    assert session.get("update key") == 1
    session.modified = session.accessed = False
    assert "update key" in session and session.has_key("update key")
    assert session.accessed and not session.modified
    assert sorted(session.keys()) == ["foo", "update key"] and list(session.values()) == ["bar", 1]
    session.clear()
    assert list(session.items()) == [] and session.modified


def test_save_and_load_round_trip(sync: SyncAuthState) -> None:
    session = SessionStore()
    session["a"], session["b"] = "c", {"d": [1, 2]}
    session.save()
    key = session.session_key
    assert key is not None and session.exists(key)
    again = SessionStore(key)
    assert dict(again.items()) == {"a": "c", "b": {"d": [1, 2]}}


def test_save_keeps_data_and_delete_ends(sync: SyncAuthState) -> None:
    session = SessionStore()
    session["a"] = "b"
    session.save()
    assert session["a"] == "b"  # test_save_doesnt_clear_data
    key = session.session_key
    session.delete(key)
    assert not session.exists(key)


def test_flush(sync: SyncAuthState) -> None:
    session = SessionStore()
    session["foo"] = "bar"
    session.save()
    previous = session.session_key
    session.flush()
    assert not session.exists(previous) and session.session_key != previous
    assert session.modified and session.accessed


def test_cycle_key_keeps_the_data(sync: SyncAuthState) -> None:
    session = SessionStore()
    session["a"], session["b"] = "c", "d"
    session.save()
    previous, items = session.session_key, sorted(session.items())
    session.cycle_key()
    assert session.session_key != previous and sorted(session.items()) == items
    assert not session.exists(previous)  # the old ID is dead at once
    assert sorted(SessionStore(session.session_key).items()) == items
    fresh = SessionStore()
    fresh["x"] = 1
    fresh.cycle_key()  # never saved: it is created, with its data
    assert sorted(SessionStore(fresh.session_key).items()) == [("x", 1)]


def test_invalid_key_gets_a_new_one(sync: SyncAuthState) -> None:
    session = SessionStore("1")
    session.save()
    assert session.session_key not in (None, "1") and session.get("cat") is None


def test_session_key_validation(sync: SyncAuthState) -> None:
    assert SessionStore("").session_key is None
    assert SessionStore("1234567").session_key is None
    assert SessionStore("bad key with spaces").session_key is None
    good = "A" * 43
    assert SessionStore(good).session_key == good
    session = SessionStore()
    with pytest.raises(AttributeError):
        session.session_key = "B" * 43  # type: ignore[misc]


def test_unknown_key_loads_empty(sync: SyncAuthState) -> None:
    session = SessionStore("C" * 43)
    assert session.load() == {} and session.session_key is None


def test_must_create_conflict(sync: SyncAuthState) -> None:
    session = SessionStore()
    session.save()
    with pytest.raises(CreateError):
        session.save(must_create=True)


def test_save_does_not_resurrect_a_session_ended_elsewhere(sync: SyncAuthState) -> None:
    session = SessionStore()
    session["x"] = 1
    session.save()
    SessionStore(session.session_key).flush()  # logged out in another request
    session["y"] = 2
    with pytest.raises(UpdateError):
        session.save()
    assert not session.exists(session.session_key)


def test_expiry_via_set_expiry(sync: SyncAuthState, clock: FrozenClock) -> None:
    past = SessionStore()
    past["foo"] = "bar"
    past.set_expiry(-timedelta(seconds=10))
    past.save()
    assert "foo" not in SessionStore(past.session_key)  # expired at once
    short = SessionStore()
    short["foo"] = "bar"
    short.set_expiry(60)
    short.save()
    assert SessionStore(short.session_key)["foo"] == "bar"
    clock.advance(61)
    assert "foo" not in SessionStore(short.session_key)


def test_clear_expired(sync: SyncAuthState, clock: FrozenClock) -> None:
    old = SessionStore()
    old["a"] = 1
    old.save()
    clock.advance(sync.settings.sessions.idle_timeout + 1)
    live = SessionStore()
    live["b"] = 2
    live.save()
    call_command(ClearSessions())
    assert not old.exists(old.session_key) and live.exists(live.session_key)
    assert count_sessions(sync) == 1


def test_size_cap_at_assignment(sync: SyncAuthState) -> None:
    session = SessionStore()
    session["keep"] = "me"
    with pytest.raises(SessionDataTooLarge):
        session["blob"] = "x" * appsessions.MAX_BYTES
    assert dict(session.items()) == {"keep": "me"}


def test_values_must_be_json_and_reserved_keys_are_refused(sync: SyncAuthState) -> None:
    session = SessionStore()
    session["csrf"] = "planted"
    with pytest.raises(InvalidInput, match="reserved"):
        session.save()
    session = SessionStore()
    with pytest.raises(InvalidInput):
        session["when"] = object()
    assert "when" not in session


# -- a Django app ---------------------------------------------------------------------------

def test_read_write_delete(sync: SyncAuthState) -> None:
    client = Client()
    assert client.get("/read").json() == {}
    assert post(client, "/write", {"cart": ["apple"], "step": 2}).status_code == 200
    assert client.get("/read").json() == {"cart": ["apple"], "step": 2}
    post(client, "/delete/step")
    assert client.get("/read").json() == {"cart": ["apple"]}


def test_anonymous_without_write_creates_nothing(sync: SyncAuthState) -> None:
    client = Client()
    before = count_sessions(sync)
    for _ in range(3):
        response = client.get("/read")
        assert "sessionid" not in response.cookies
    assert count_sessions(sync) == before
    post(client, "/write", {"flash": "hi"})
    assert count_sessions(sync) == before + 1


def test_concurrent_writes_of_different_keys_both_land(sync: SyncAuthState) -> None:
    client = Client()
    post(client, "/write", {"seed": 0})
    cookie = client.cookies["sessionid"].value

    def writer(body: dict[str, Any]) -> Any:
        other = Client()
        other.cookies["sessionid"] = cookie
        return post(other, "/write?together", body).json()

    first, second = run_together(lambda: writer({"a": 1}), lambda: writer({"b": 2}))
    assert first == {"seed": 0, "a": 1} and second == {"seed": 0, "b": 2}
    assert client.get("/read").json() == {"seed": 0, "a": 1, "b": 2}


def test_size_cap_through_the_app(sync: SyncAuthState) -> None:
    client = Client(raise_request_exception=False)
    post(client, "/write", {"items": ["z"]})
    response = post(client, "/too-big")
    assert response.status_code == 413 and response.json() == {"error": "session_too_large"}
    post(client, "/grow")
    grown = post(client, "/grow")  # in-place growth past the cap: found by the save
    assert grown.status_code == 400  # Django's answer to a SuspiciousOperation, not a 500
    assert len(client.get("/read").json()["items"]) == 2


def test_login_rotates_the_id_keeps_the_data_and_lists_the_device(sync: SyncAuthState) -> None:
    user = sync.call(lambda state: state.users.create(EMAIL, PASSWORD))
    client = Client()
    post(client, "/write", {"cart": ["book"]})
    visitor = client.cookies["sessionid"].value
    assert post(client, "/login", {"email": EMAIL, "password": PASSWORD}).json() == {"user": user.id}
    logged_in = client.cookies["sessionid"].value
    assert logged_in != visitor and not SessionStore().exists(visitor)
    assert client.get("/read").json() == {"cart": ["book"]}
    devices = sync.call(lambda state: state.sessions.for_user(user.id))
    assert len(devices) == 1
    # revoked from the account page: the Django session ends at once
    assert sync.end_session(user.id, devices[0].handle) is not None
    assert client.get("/read").json() == {}
    assert sync.call(lambda state: state.sessions.for_user(user.id)) == []


def test_failed_login_keeps_the_visitor_session(sync: SyncAuthState) -> None:
    sync.call(lambda state: state.users.create(EMAIL, PASSWORD))
    client = Client()
    post(client, "/write", {"cart": ["book"]})
    assert post(client, "/login", {"email": EMAIL, "password": "wrong"}).status_code == 401
    assert client.get("/read").json() == {"cart": ["book"]}


def test_django_login_cycle_key_and_logout(sync: SyncAuthState) -> None:
    client = Client()
    post(client, "/write", {"cart": ["book"]})
    before = client.cookies["sessionid"].value
    post(client, "/cycle")
    after = client.cookies["sessionid"].value
    assert after != before and client.get("/read").json() == {"cart": ["book"]}
    post(client, "/logout")
    assert client.get("/read").json() == {} and count_sessions(sync) == 0


def test_the_engine_shares_the_middlewares_state() -> None:
    from authstate.django.auth import authenticator
    from authstate.errors import ConfigurationError

    with override_settings(AUTHSTATE={"SETTINGS": {"store": "memory://"}}):
        sync = engine.sync_state()
        assert sync is authenticator().sync and sync is not None
    with override_settings(AUTHSTATE={"AUTH_URL": "https://auth.example"}), \
            pytest.raises(ConfigurationError):
        engine.sync_state()


# -- store outages: 503, never Django's 500 ------------------------------------------------

@pytest.fixture
def throwaway(clock: FrozenClock, tmp_path: Path) -> Iterator[tuple[RedisServer, SyncAuthState]]:
    """The engine on a redis-server of the test's own, behind authstate's
    ``SessionMiddleware`` (in place of Django's, as the README sets it up)."""
    with on_throwaway_redis(clock, tmp_path) as (server, s), override_settings(
        AUTHSTATE=s, SESSION_ENGINE="authstate.django.sessions", ROOT_URLCONF=__name__,
        MIDDLEWARE=["authstate.django.sessions.SessionMiddleware"],
    ):
        yield server, s


def assert_unavailable(response: Any, server: RedisServer) -> None:
    """The outage answer: 503, Retry-After, the problem detail, no cookie set or
    cleared, and nothing of the store's address."""
    assert response.status_code == 503, response.content
    assert response["Retry-After"].isdigit() and response["Cache-Control"] == "no-store"
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "store_unavailable"
    assert not response.cookies and "Set-Cookie" not in response
    assert str(server.port) not in response.content.decode()


def test_outage_reading_the_session_is_503_and_the_cookie_works_after(
    throwaway: tuple[RedisServer, SyncAuthState],
) -> None:
    server, sync = throwaway
    sync.call(lambda state: state.users.create(EMAIL, PASSWORD))
    client = Client()  # raises what Django turns into a 500: there must be none
    post(client, "/write", {"cart": ["book"]})
    cookie = client.cookies["sessionid"].value
    server.stop()  # SIGKILL
    assert_unavailable(client.get("/read"), server)  # loaded lazily in the view
    assert_unavailable(post(client, "/login", {"email": EMAIL, "password": PASSWORD}), server)
    assert client.cookies["sessionid"].value == cookie
    server.start()  # the same port, the same data; the app is not restarted
    assert client.get("/read").json() == {"cart": ["book"]}
    assert post(client, "/login", {"email": EMAIL, "password": PASSWORD}).status_code == 200


def test_outage_saving_the_session_is_503_without_a_cookie(
    throwaway: tuple[RedisServer, SyncAuthState],
) -> None:
    server, sync = throwaway
    client = Client()
    post(client, "/write", {"cart": ["book"]})
    cookie = client.cookies["sessionid"].value
    # read while the store is up, written after it is gone: the save in process_response
    response = client.post("/read-then-write", json.dumps({"step": 2}),
                           content_type="application/json", **{"test.between": server.stop})
    assert_unavailable(response, server)
    visitor = Client()
    assert_unavailable(post(visitor, "/write", {"flash": "hi"}), server)  # create fails
    assert "sessionid" not in visitor.cookies  # no cookie naming a session never made
    server.start()
    assert client.cookies["sessionid"].value == cookie
    assert client.get("/read").json() == {"cart": ["book"]}  # the lost write was not "saved"
    assert post(client, "/write", {"step": 2}).json() == {"cart": ["book"], "step": 2}
    assert post(visitor, "/write", {"flash": "hi"}).status_code == 200
    assert count_sessions(sync) == 2


def test_outage_under_asgi_is_503(throwaway: tuple[RedisServer, SyncAuthState]) -> None:
    """The same under Django's ASGI handler (``AsyncClient``): the middleware is sync
    only, and Django runs it, and the engine's blocking portal calls, in a thread."""
    server, _ = throwaway
    client = AsyncClient()
    body = json.dumps({"cart": ["book"]})
    written = asyncio.run(client.post("/write", body, content_type="application/json"))
    assert written.status_code == 200
    server.stop()
    assert_unavailable(asyncio.run(client.get("/read")), server)
    assert_unavailable(asyncio.run(client.post("/write", body, content_type="application/json")),
                       server)
    server.start()
    assert asyncio.run(client.get("/read")).json() == {"cart": ["book"]}


def test_outage_met_by_a_later_middleware_is_503(
    throwaway: tuple[RedisServer, SyncAuthState],
) -> None:
    """Middlewares listed after the session's that use it, where Django turns an
    exception into a 500 before it reaches ours: ``CsrfViewMiddleware`` with
    ``CSRF_USE_SESSIONS`` reads the session before the view (and again in Django's 500
    handler, so the exception escapes the conversion); the messages' session storage
    writes it at the response (a 500 that the session's ``outage`` mark turns into the
    503)."""
    server, _ = throwaway
    csrf = ["authstate.django.sessions.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware"]
    messaging = ["authstate.django.sessions.SessionMiddleware",
                 "django.contrib.messages.middleware.MessageMiddleware"]
    with override_settings(MIDDLEWARE=csrf, CSRF_USE_SESSIONS=True):
        client = Client(raise_request_exception=False)  # Django has logged its 500
        post(client, "/write", {"cart": ["book"]})
        server.stop()
        assert_unavailable(client.get("/read"), server)
        server.start()
        assert client.get("/read").json() == {"cart": ["book"]}
    storage = "django.contrib.messages.storage.session.SessionStorage"
    with override_settings(MIDDLEWARE=messaging, MESSAGE_STORAGE=storage):
        client = Client(raise_request_exception=False)
        post(client, "/write", {"cart": ["book"]})
        server.stop()
        assert_unavailable(client.get("/flash"), server)
        server.start()
        assert client.get("/flash").status_code == 200
        assert client.get("/read").json()["cart"] == ["book"]
