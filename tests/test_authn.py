"""One authentication path: the service's own API and an app behind ``AuthMiddleware``
give the same verdict on the same request, because both run ``authstate.authn``.

Each case is sent, as raw header lines (repeated headers included), to ``GET /auth/me``
or ``POST /auth/sessions/revoke-others`` of the service and to ``GET /me`` or
``POST /change`` of a FastAPI app whose middleware holds the same authenticators over
the same ``AuthState`` with the service's rule (``bearer_decides=True``). The verdict
compared is the status, the ``WWW-Authenticate`` challenge and, on success, who and how.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from authstate import authn, csrf
from authstate.clock import FrozenClock
from authstate.config import Settings
from authstate.state import AuthState
from authstate.web.app import create_app
from authstate.web.dependencies import CurrentIdentity
from authstate.web.middleware import AuthMiddleware, BearerJWT, BearerOpaque, SessionCookie

HOST = "http://testserver"
COOKIE = "authstate_session"
NO_ERROR = 'Bearer realm="authstate"'
INVALID = 'Bearer realm="authstate", error="invalid_token"'

Headers = list[tuple[str, str]]


@dataclass
class World:
    """One user logged in: a session cookie with its CSRF token, a session-bound JWT and
    an opaque token; and the same AuthState behind the service and the app."""

    state: AuthState
    clock: FrozenClock
    user_id: str
    session_id: str
    csrf: str
    jwt: str
    opaque: str
    service: httpx.AsyncClient
    app: httpx.AsyncClient

    def cookie(self, session_id: str | None = None) -> tuple[str, str]:
        return ("Cookie", f"theme=dark; {COOKIE}={session_id or self.session_id}")


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "store": "memory://", "dev": True, "issuer": HOST, "password_time_cost": 1,
        "password_memory_kib": 1024, "password_parallelism": 1, **overrides,
    }
    return Settings.from_flat(**values)


def app_for(state: AuthState, *, bearer_decides: bool = True) -> FastAPI:
    app = FastAPI()

    @app.get("/me")
    async def me(identity: CurrentIdentity) -> dict[str, str]:
        return {"user": identity.user_id, "method": identity.method}

    @app.post("/change")
    async def change(identity: CurrentIdentity) -> dict[str, str]:
        return {"user": identity.user_id, "method": identity.method}

    app.add_middleware(
        AuthMiddleware,
        authenticators=[BearerJWT(state), BearerOpaque(state), SessionCookie(state)],
        bearer_decides=bearer_decides,
    )
    return app


@pytest.fixture
async def world(clock: FrozenClock) -> AsyncIterator[World]:
    state = await AuthState.open(settings(), clock=clock)
    user = await state.users.create("alice@example.com", "correct horse battery staple")
    token = csrf.new_token()
    session_id, session = await state.sessions.create(user.id, data={csrf.DATA_KEY: token})
    jwt, _ = await state.issue_for_session(session)
    opaque, _ = await state.opaque.issue(user.id)
    service = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(state)),
                                base_url=HOST)
    app = httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for(state)), base_url=HOST)
    try:
        yield World(state, clock, user.id, session_id, token, jwt, opaque, service, app)
    finally:
        await service.aclose()
        await app.aclose()
        await state.close()


Verdict = tuple[int, str | None, str | None, str | None]


async def service_verdict(world: World, method: str, headers: Headers) -> Verdict:
    path = "/auth/me" if method == "GET" else "/auth/sessions/revoke-others"
    answer = await world.service.request(method, path, headers=headers)
    who = how = None
    if answer.status_code == 200:
        if method == "GET":
            who, how = answer.json()["user"]["id"], answer.json()["auth"]["method"]
        else:
            who = world.user_id  # revoke-others answers for the caller only
    return answer.status_code, answer.headers.get("www-authenticate"), who, how


async def app_verdict(world: World, method: str, headers: Headers) -> Verdict:
    answer = await world.app.request(method, "/me" if method == "GET" else "/change",
                                     headers=headers)
    who = how = None
    if answer.status_code == 200:
        who = answer.json()["user"]
        how = answer.json()["method"] if method == "GET" else None
    return answer.status_code, answer.headers.get("www-authenticate"), who, how


def ok(how: str | None) -> Callable[[World, str], Verdict]:
    return lambda w, method: (200, None, w.user_id, how if method == "GET" else None)


def refused(status: int, challenge: str | None) -> Callable[[World, str], Verdict]:
    return lambda w, method: (status, challenge, None, None)


Case = tuple[str, str, Callable[[World], Headers], Callable[[World, str], Verdict]]

CASES: list[Case] = [
    ("no credential", "GET", lambda w: [], refused(401, NO_ERROR)),
    ("no credential, unsafe", "POST", lambda w: [], refused(401, NO_ERROR)),
    ("good cookie", "GET", lambda w: [w.cookie()], ok("session")),
    ("good cookie, unsafe, no CSRF token", "POST", lambda w: [w.cookie()],
     refused(403, None)),
    ("good cookie, unsafe, wrong CSRF token", "POST",
     lambda w: [w.cookie(), ("X-CSRF-Token", w.csrf[:-1] + ("A" if w.csrf[-1] != "A" else "B"))],
     refused(403, None)),
    ("good cookie, unsafe, two CSRF headers", "POST",
     lambda w: [w.cookie(), ("X-CSRF-Token", w.csrf), ("X-CSRF-Token", w.csrf)],
     refused(403, None)),
    ("good cookie, unsafe, CSRF token", "POST",
     lambda w: [w.cookie(), ("X-CSRF-Token", w.csrf)], ok(None)),
    ("good cookie, unsafe, CSRF token, same origin", "POST",
     lambda w: [w.cookie(), ("X-CSRF-Token", w.csrf), ("Origin", HOST),
                ("Sec-Fetch-Site", "same-origin")], ok(None)),
    ("good cookie, unsafe, CSRF token, bad Origin", "POST",
     lambda w: [w.cookie(), ("X-CSRF-Token", w.csrf), ("Origin", "https://evil.example")],
     refused(403, None)),
    ("good cookie, unsafe, CSRF token, Origin null", "POST",
     lambda w: [w.cookie(), ("X-CSRF-Token", w.csrf), ("Origin", "null")], refused(403, None)),
    ("good cookie, unsafe, CSRF token, cross-site fetch", "POST",
     lambda w: [w.cookie(), ("X-CSRF-Token", w.csrf), ("Sec-Fetch-Site", "cross-site")],
     refused(403, None)),
    ("good cookie, unsafe, CSRF token, two Origins", "POST",
     lambda w: [w.cookie(), ("X-CSRF-Token", w.csrf), ("Origin", HOST),
                ("Origin", "https://evil.example")], refused(403, None)),
    ("bad Origin on a safe method", "GET",
     lambda w: [w.cookie(), ("Origin", "https://evil.example")], ok("session")),
    ("unknown cookie", "GET", lambda w: [w.cookie("x" * 43)], refused(401, NO_ERROR)),
    ("first cookie of the name wins", "GET",
     lambda w: [("Cookie", f"{COOKIE}={w.session_id}; {COOKIE}=stale")], ok("session")),
    ("good JWT", "GET", lambda w: [("Authorization", f"Bearer {w.jwt}")], ok("jwt")),
    ("good JWT, unsafe, no CSRF needed, cross-origin", "POST",
     lambda w: [("Authorization", f"Bearer {w.jwt}"), ("Origin", "https://elsewhere.example")],
     ok(None)),
    ("good opaque token", "GET", lambda w: [("Authorization", f"Bearer {w.opaque}")],
     ok("opaque")),
    ("lowercase scheme (RFC 9110 §11.1: case-insensitive)", "GET",
     lambda w: [("Authorization", f"bearer {w.jwt}")], ok("jwt")),
    ("upper-case scheme", "GET", lambda w: [("Authorization", f"BEARER {w.opaque}")],
     ok("opaque")),
    ("Bearer alone", "GET", lambda w: [("Authorization", "Bearer")], refused(401, INVALID)),
    ("Bearer and spaces only", "GET", lambda w: [("Authorization", "Bearer   ")],
     refused(401, INVALID)),
    ("token68 with a space inside", "GET",
     lambda w: [("Authorization", f"Bearer {w.jwt[:10]} {w.jwt[10:]}")], refused(401, INVALID)),
    ("token then an extra parameter", "GET",
     lambda w: [("Authorization", f"Bearer {w.jwt}, realm=x")], refused(401, INVALID)),
    ("token then a second word", "GET",
     lambda w: [("Authorization", f"Bearer {w.opaque} extra")], refused(401, INVALID)),
    ("bad characters", "GET", lambda w: [("Authorization", "Bearer a,b")],
     refused(401, INVALID)),
    ("padding in the middle", "GET", lambda w: [("Authorization", "Bearer ab=cd")],
     refused(401, INVALID)),
    ("a quoted token", "GET", lambda w: [("Authorization", f'Bearer "{w.opaque}"')],
     refused(401, INVALID)),
    ("oversized header", "GET", lambda w: [("Authorization", "Bearer " + "a" * 9000)],
     refused(401, INVALID)),
    ("repeated Authorization: the same good token twice", "GET",
     lambda w: [("Authorization", f"Bearer {w.jwt}"), ("Authorization", f"Bearer {w.jwt}")],
     refused(401, INVALID)),
    ("repeated Authorization: a good token and Basic", "GET",
     lambda w: [("Authorization", "Basic dXNlcjpwYXNz"), ("Authorization", f"Bearer {w.jwt}")],
     refused(401, INVALID)),
    ("repeated Authorization beside a good cookie", "GET",
     lambda w: [w.cookie(), ("Authorization", f"Bearer {w.jwt}"),
                ("Authorization", f"Bearer {w.opaque}")], refused(401, INVALID)),
    ("another scheme is not ours: the cookie decides", "GET",
     lambda w: [w.cookie(), ("Authorization", "Basic dXNlcjpwYXNz")], ok("session")),
    ("another scheme and nothing else", "GET",
     lambda w: [("Authorization", "Basic dXNlcjpwYXNz")], refused(401, NO_ERROR)),
    ("good bearer beside a stale cookie", "GET",
     lambda w: [w.cookie("x" * 43), ("Authorization", f"Bearer {w.jwt}")], ok("jwt")),
    ("bad bearer beside a good cookie: the bearer decides", "GET",
     lambda w: [w.cookie(), ("Authorization", "Bearer not.a.jwt")], refused(401, INVALID)),
    ("malformed bearer beside a good cookie", "POST",
     lambda w: [w.cookie(), ("X-CSRF-Token", w.csrf), ("Authorization", "Bearer")],
     refused(401, INVALID)),
    ("a JWT tampered with", "GET",
     lambda w: [("Authorization", f"Bearer {w.jwt[:-4]}{'AAAA' if w.jwt[-4:] != 'AAAA' else 'BBBB'}")],
     refused(401, INVALID)),
    ("an unknown opaque token", "GET",
     lambda w: [("Authorization", f"Bearer {w.opaque[:-4]}{'AAAA' if w.opaque[-4:] != 'AAAA' else 'BBBB'}")],
     refused(401, INVALID)),
]


@pytest.mark.parametrize(("name", "method", "headers", "expected"), CASES,
                         ids=[case[0] for case in CASES])
async def test_same_verdict_through_the_service_and_the_middleware(
    world: World, name: str, method: str, headers: Callable[[World], Headers],
    expected: Callable[[World, str], Verdict],
) -> None:
    sent = headers(world)
    by_service = await service_verdict(world, method, sent)
    by_app = await app_verdict(world, method, sent)
    assert by_service == by_app == expected(world, method), name


async def test_expired_and_revoked_credentials_the_same_through_both(world: World) -> None:
    revoked_jwt, revoked_opaque = world.jwt, world.opaque
    await world.state.revoke_token(revoked_jwt)
    await world.state.opaque.revoke(revoked_opaque)
    for token in (revoked_jwt, revoked_opaque):
        sent = [("Authorization", f"Bearer {token}")]
        assert await service_verdict(world, "GET", sent) == await app_verdict(world, "GET", sent) \
            == (401, INVALID, None, None)
    fresh, _ = await world.state.opaque.issue(world.user_id)
    world.clock.advance(world.state.settings.sessions.absolute_timeout + 1)
    for sent in ([world.cookie()], [("Authorization", f"Bearer {fresh}")]):
        expected = (401, INVALID if sent[0][0] == "Authorization" else NO_ERROR, None, None)
        assert await service_verdict(world, "GET", sent) == expected, sent
        assert await app_verdict(world, "GET", sent) == expected, sent


async def test_the_middleware_default_tries_each_credential_in_order(world: World) -> None:
    """The one place the two rules differ, by the parameter that names it: without
    ``bearer_decides`` a bad bearer token beside a good cookie falls through to the
    cookie (an app may accept either); the service refuses it."""
    sent = [world.cookie(), ("Authorization", "Bearer not.a.jwt")]
    lenient = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app_for(world.state, bearer_decides=False)),
        base_url=HOST,
    )
    async with lenient:
        answer = await lenient.get("/me", headers=sent)
    assert answer.json() == {"user": world.user_id, "method": "session"}
    assert (await service_verdict(world, "GET", sent))[0] == 401


async def test_host_prefixed_cookie_outside_dev_mode_through_both(clock: FrozenClock) -> None:
    state = await AuthState.open(settings(dev=False, issuer="https://auth.example"), clock=clock)
    try:
        user = await state.users.create("bob@example.com", "correct horse battery staple")
        session_id, _ = await state.sessions.create(user.id, data={csrf.DATA_KEY: "t"})
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(state)),
                              base_url="https://auth.example"),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for(state)),
                              base_url="https://auth.example"),
        ]
        for http, path in zip(clients, ("/auth/me", "/me"), strict=True):
            async with http:
                plain = await http.get(path, headers={"Cookie": f"{COOKIE}={session_id}"})
                assert plain.status_code == 401
                prefixed = await http.get(
                    path, headers={"Cookie": f"__Host-{COOKIE}={session_id}"})
                assert prefixed.status_code == 200, prefixed.text
    finally:
        await state.close()


# --- the parsing, by itself ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "parsed"),
    [
        ([], (None, False)),
        ([b"Bearer abc.DEF-_~+/=="], ("abc.DEF-_~+/==", False)),
        ([b"bearer abc"], ("abc", False)),
        ([b"Bearer  abc"], ("abc", False)),  # 1*SP, RFC 9110 §11.4
        ([b"Basic dXNlcjpwYXNz"], (None, False)),
        ([b"Bearer"], (None, True)),
        ([b"Bearer "], (None, True)),
        ([b"Bearer a b"], (None, True)),
        ([b"Bearer a=b"], (None, True)),
        ([b"Bearer a\tb"], (None, True)),
        ([b"Bearer \xc3\xa9"], (None, True)),
        ([b"Bearer a, error=x"], (None, True)),
        ([b"Bearer " + b"a" * (authn.BEARER_MAX + 1)], (None, True)),
        ([b"Bearer " + b"a" * authn.BEARER_MAX], ("a" * authn.BEARER_MAX, False)),
        ([b"Bearer abc", b"Bearer abc"], (None, True)),
        ([b"Basic x", b"Basic y"], (None, True)),
    ],
)
def test_parse_authorization(values: list[bytes], parsed: tuple[str | None, bool]) -> None:
    assert authn.parse_authorization(values) == parsed


def test_cookie_and_provenance_parsing() -> None:
    credentials = authn.Credentials({"method": "POST", "headers": [
        (b"cookie", b"a=1; s=first"), (b"cookie", b's="second"'), (b"host", b"svc"),
        (b"origin", b"http://svc"), (b"x-csrf-token", b"tok"),
    ]})
    assert (credentials.cookie("s"), credentials.cookie("a"), credentials.cookie("b")) == (
        "first", "1", None)
    assert credentials.from_here() is True
    assert credentials.csrf_token == "tok"
    assert authn.Credentials({"headers": []}, csrf_token="form").csrf_token == "form"
    twice = authn.Credentials({"method": "POST", "headers": [
        (b"host", b"svc"), (b"sec-fetch-site", b"same-origin"), (b"sec-fetch-site", b"none"),
    ]})
    assert twice.from_here() is False


def test_session_cookie_name_follows_dev_mode() -> None:
    assert authn.session_cookie_name(settings()) == COOKIE
    assert authn.session_cookie_name(settings(dev=False)) == "__Host-" + COOKIE
