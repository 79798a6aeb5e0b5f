"""A full scripted use of the HTTP API (not a test module): register, log in, refresh many
times, reuse a spent refresh token, revoke, admin revoke, change a password, introspect,
trip the throttle, read the audit trail.

Every response is kept, and every secret the scenario sees is noted with the response that
issued it (a ``Set-Cookie`` session ID, an ``access_token`` or ``refresh_token`` field) or
with none (passwords and the client secret come from the test itself). The secrets
scanner searches everything else for them; the audit-path tests read back the events the
scenario caused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from authstate.clock import FrozenClock
from authstate.users import User
from tests.web.api import Api

ADMIN_EMAIL = "root@example.test"
ALICE_EMAIL = "alice@example.test"
ADMIN_PASSWORD = "admin pass phrase 42 long enough"
ALICE_PASSWORD = "alice first pass phrase 1"
ALICE_NEW_PASSWORD = "alice second pass phrase 2"
REFRESHES = 6


@dataclass
class Exchange:
    label: str
    method: str
    path: str
    status: int
    headers: str
    body: str


@dataclass
class Secret:
    kind: str
    value: str
    issued_by: int | None  # index into ``exchanges``; None when no response issued it


@dataclass
class Run:
    api: Api
    clock: FrozenClock
    cookie_name: str
    admin: User | None = None
    alice: User | None = None
    admin_client: httpx.AsyncClient | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    secrets: list[Secret] = field(default_factory=list)

    def note(self, kind: str, value: str, issued_by: int | None = None) -> None:
        if value and all(s.value != value for s in self.secrets):
            self.secrets.append(Secret(kind, value, issued_by))

    async def call(
        self, client: httpx.AsyncClient, label: str, method: str, path: str, *,
        expect: int | tuple[int, ...], **kwargs: Any,
    ) -> httpx.Response:
        response = await client.request(method, path, **kwargs)
        index = len(self.exchanges)
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items())
        self.exchanges.append(
            Exchange(label, method, path, response.status_code, headers, response.text)
        )
        expected = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in expected, (label, response.status_code, response.text)
        for value in response.headers.get_list("set-cookie"):
            name, _, rest = value.partition("=")
            cookie = rest.split(";", 1)[0].strip('"')
            if name.strip() == self.cookie_name and cookie:
                self.note("session_id", cookie, index)
        if response.headers.get("content-type", "").startswith("application/json"):
            body = response.json()
            if isinstance(body, dict):
                for kind in ("access_token", "refresh_token"):
                    if isinstance(body.get(kind), str):
                        self.note(kind, body[kind], index)
        return response

    async def login(self, client: httpx.AsyncClient, label: str, email: str, password: str) -> str:
        response = await self.call(client, label, "POST", "/auth/login", expect=200,
                                   json={"email": email, "password": password})
        csrf: str = response.json()["csrf_token"]
        return csrf

    async def password_grant(self, email: str, password: str, label: str) -> dict[str, Any]:
        response = await self.call(
            self.api.new_client(), label, "POST", "/oauth/token", expect=200,
            data={"grant_type": "password", "username": email, "password": password},
        )
        body: dict[str, Any] = response.json()
        return body

    async def refresh(self, token: str, label: str, *, expect: int = 200) -> httpx.Response:
        return await self.call(
            self.api.new_client(), label, "POST", "/oauth/token", expect=expect,
            data={"grant_type": "refresh_token", "refresh_token": token},
        )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def run_scenario(api: Api, clock: FrozenClock) -> Run:
    run = Run(api, clock, api.state.settings.sessions.cookie_name)
    state = api.state
    grace = state.settings.refresh.grace

    # Register (what `authstate users add` and `authstate clients add` do).
    run.admin = await state.users.create(ADMIN_EMAIL, ADMIN_PASSWORD, admin=True)
    run.alice = await state.users.create(ALICE_EMAIL, ALICE_PASSWORD)
    client, client_secret = await state.clients.create("resource-server")
    for kind, value in (("password", ADMIN_PASSWORD), ("password", ALICE_PASSWORD),
                        ("password", ALICE_NEW_PASSWORD), ("client_secret", client_secret)):
        run.note(kind, value)
    basic = httpx.BasicAuth(client.id, client_secret)
    alice_id = run.alice.id

    # Browser A: a failed login, a login, a second login (session ID rotates), a look around.
    a = api.new_client()
    await run.call(a, "login wrong password", "POST", "/auth/login", expect=401,
                   json={"email": ALICE_EMAIL, "password": "not the password at all"})
    await run.login(a, "login A", ALICE_EMAIL, ALICE_PASSWORD)
    csrf_a = await run.login(a, "login A again", ALICE_EMAIL, ALICE_PASSWORD)
    await run.call(a, "me A", "GET", "/auth/me", expect=200)
    await run.call(a, "sessions A", "GET", "/auth/sessions", expect=200)
    hybrid = await run.call(a, "hybrid token", "POST", "/auth/token", expect=200,
                            headers={"X-CSRF-Token": csrf_a})
    await run.call(api.new_client(), "me by hybrid token", "GET", "/auth/me", expect=200,
                   headers=bearer(hybrid.json()["access_token"]))

    # OAuth: a password grant, refreshed many times, then a spent token replayed.
    pair = await run.password_grant(ALICE_EMAIL, ALICE_PASSWORD, "password grant 1")
    refresh_tokens = [pair["refresh_token"]]
    for i in range(REFRESHES):
        clock.advance(1)
        rotated = await run.refresh(refresh_tokens[-1], f"refresh {i + 1}")
        refresh_tokens.append(rotated.json()["refresh_token"])
        await run.call(api.new_client(), f"me after refresh {i + 1}", "GET", "/auth/me",
                       expect=200, headers=bearer(rotated.json()["access_token"]))
    clock.advance(grace + 1)
    await run.refresh(refresh_tokens[2], "replay a spent refresh token", expect=400)
    await run.refresh(refresh_tokens[-1], "family is dead after reuse", expect=400)

    # Introspection and revocation by a registered client.
    pair = await run.password_grant(ALICE_EMAIL, ALICE_PASSWORD, "password grant 2")
    access, refresh = pair["access_token"], pair["refresh_token"]
    await run.call(api.new_client(), "me by bearer", "GET", "/auth/me", expect=200,
                   headers=bearer(access))
    for label, token in (("introspect access", access), ("introspect refresh", refresh),
                         ("introspect garbage", "not-a-token")):
        await run.call(api.new_client(), label, "POST", "/oauth/introspect", expect=200,
                       data={"token": token}, auth=basic)
    await run.call(api.new_client(), "introspect without client", "POST", "/oauth/introspect",
                   expect=401, data={"token": access})
    await run.call(api.new_client(), "revoke access token", "POST", "/oauth/revoke",
                   expect=200, data={"token": access, "token_type_hint": "access_token"},
                   auth=basic)
    await run.call(api.new_client(), "revoked access token refused", "GET", "/auth/me",
                   expect=401, headers=bearer(access))
    await run.call(api.new_client(), "introspect revoked", "POST", "/oauth/introspect",
                   expect=200, data={"token": access}, auth=basic)
    await run.call(api.new_client(), "revoke refresh token", "POST", "/oauth/revoke",
                   expect=200, data={"token": refresh}, auth=basic)
    await run.refresh(refresh, "revoked refresh token refused", expect=400)

    # Devices: B is revoked from A, C by "log out everywhere else".
    b = api.new_client()
    await run.login(b, "login B", ALICE_EMAIL, ALICE_PASSWORD)
    sessions = (await run.call(a, "sessions with B", "GET", "/auth/sessions", expect=200)).json()
    other = next(s["id"] for s in sessions["sessions"] if not s["current"])
    await run.call(a, "revoke B from A", "DELETE", f"/auth/sessions/{other}", expect=204,
                   headers={"X-CSRF-Token": csrf_a})
    await run.call(b, "B is logged out", "GET", "/auth/me", expect=401)
    c = api.new_client()
    await run.login(c, "login C", ALICE_EMAIL, ALICE_PASSWORD)
    await run.call(a, "revoke others", "POST", "/auth/sessions/revoke-others", expect=200,
                   headers={"X-CSRF-Token": csrf_a})
    await run.call(c, "C is logged out", "GET", "/auth/me", expect=401)

    # An admin logs alice out everywhere.
    admin = api.new_client()
    csrf_admin = await run.login(admin, "login admin", ADMIN_EMAIL, ADMIN_PASSWORD)
    run.admin_client = admin
    pair = await run.password_grant(ALICE_EMAIL, ALICE_PASSWORD, "password grant 3")
    await run.call(admin, "admin revokes alice", "POST", f"/admin/users/{alice_id}/revoke",
                   expect=200, headers={"X-CSRF-Token": csrf_admin})
    await run.call(a, "A is logged out by admin", "GET", "/auth/me", expect=401)
    await run.call(api.new_client(), "token dead after admin revoke", "GET", "/auth/me",
                   expect=401, headers=bearer(pair["access_token"]))
    await run.refresh(pair["refresh_token"], "refresh dead after admin revoke", expect=400)

    # Alice changes her password: every other session and token ends.
    csrf_a = await run.login(a, "login A after admin", ALICE_EMAIL, ALICE_PASSWORD)
    d = api.new_client()
    await run.login(d, "login D", ALICE_EMAIL, ALICE_PASSWORD)
    pair = await run.password_grant(ALICE_EMAIL, ALICE_PASSWORD, "password grant 4")
    await run.call(a, "change password", "POST", "/auth/password", expect=204,
                   headers={"X-CSRF-Token": csrf_a},
                   json={"current_password": ALICE_PASSWORD, "new_password": ALICE_NEW_PASSWORD})
    await run.call(a, "A still in after password change", "GET", "/auth/me", expect=200)
    await run.call(d, "D out after password change", "GET", "/auth/me", expect=401)
    await run.call(api.new_client(), "token dead after password change", "GET", "/auth/me",
                   expect=401, headers=bearer(pair["access_token"]))
    await run.refresh(pair["refresh_token"], "refresh dead after password change", expect=400)
    me = await run.call(a, "me A after change", "GET", "/auth/me", expect=200)
    await run.call(a, "logout A", "POST", "/auth/logout", expect=204,
                   headers={"X-CSRF-Token": me.json()["csrf_token"]})
    await run.call(a, "A logged out", "GET", "/auth/me", expect=401)
    await run.call(api.new_client(), "old password refused", "POST", "/auth/login",
                   expect=401, json={"email": ALICE_EMAIL, "password": ALICE_PASSWORD})
    e = api.new_client()
    await run.login(e, "login with new password", ALICE_EMAIL, ALICE_NEW_PASSWORD)

    # Someone guesses at alice's password until the throttle trips.
    guesser = api.new_client()
    limit = state.settings.throttle.account_limit
    for i in range(limit + 1):
        await run.call(guesser, f"guess {i}", "POST", "/auth/login", expect=(401, 429),
                       json={"email": ALICE_EMAIL, "password": f"guess number {i}"})
    assert run.exchanges[-1].status == 429, "the throttle tripped"

    # Operators look: the audit trail (every page), metrics, keys, health.
    url: str | None = "/admin/audit?limit=50"
    while url is not None:
        page = await run.call(admin, "audit page", "GET", url, expect=200)
        url = page.json()["next"]
    await run.call(admin, "metrics", "GET", "/metrics", expect=200)
    await run.call(api.new_client(), "jwks", "GET", "/.well-known/jwks.json", expect=200)
    await run.call(api.new_client(), "health", "GET", "/healthz", expect=200)
    return run


def issued(run: Run, kind: str) -> list[Secret]:
    return [s for s in run.secrets if s.kind == kind]


def dump(value: Any) -> str:
    return json.dumps(value, default=str)
