"""Accounts whose changes take effect at once, through the front door, on every store:
suspension ends every credential and refuses login (as a wrong password), enabling
resurrects nothing, a removed scope is refused at the next request (on another instance
too, over the bus), deletion leaves nothing but the audit trail's ID and fingerprints,
and the last enabled admin cannot be taken away.

On memory the revocation copy is pushed (a memory bus); on SQLite, and on Redis and
PostgreSQL as the ``state`` fixture builds them, every check reads the store; the
cross-instance tests put two ``AuthState`` on one Redis or PostgreSQL with a real bus.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from authstate import revocation as revocation_module
from authstate import sessions as sessions_module
from authstate import throttle as throttle_module
from authstate import users as users_module
from authstate.bus import open_bus
from authstate.clock import FrozenClock
from authstate.errors import (
    AuthenticationFailed,
    InvalidGrant,
    InvalidInput,
    InvalidScope,
    InvalidToken,
    NotFound,
    Refused,
)
from authstate.identity import Identity
from authstate.state import AuthState
from authstate.stores import Store, open_store
from authstate.tokens import opaque as opaque_module
from authstate.tokens import refresh as refresh_module
from authstate.users import User
from authstate.web.dependencies import require_scopes
from authstate.web.middleware import AuthMiddleware, BearerJWT, BearerOpaque, SessionCookie
from tests.conftest import fresh_namespace, require_service
from tests.web.api import PASSWORD, api_settings

IP, AGENT = "198.51.100.9", "accounts-test/1.0"
EMAIL = "gina@example.com"


@pytest.fixture
async def state(store: Store, clock: FrozenClock) -> AsyncIterator[AuthState]:
    clock.set(15 * 60 * 2_000_000)  # the start of a throttle window
    s = AuthState(api_settings(), store, clock=clock)
    await s.start()
    yield s
    await s.revocation.close()  # the store fixture closes the store


async def trail(state: AuthState, type: str) -> list[Any]:
    return list(reversed((await state.audit.query(type=type, limit=1000)).events))


async def credentials(state: AuthState, user: User) -> dict[str, str]:
    """Every kind of credential a user can hold: a session cookie, a JWT issued for the
    session, a password-grant pair (JWT + refresh) and an opaque token."""
    login = await state.login(user.email, PASSWORD, ip=IP, user_agent=AGENT)
    jwt, _ = await state.issue_for_session(login.session)
    pair = await state.password_grant(user.email, PASSWORD, ip=IP, user_agent=AGENT)
    opaque, _ = await state.opaque.issue(user.id, sid=login.session.sid, scope=user.scopes)
    return {"cookie": login.session_id, "jwt": jwt, "grant_jwt": pair.access_token,
            "refresh": pair.refresh_token, "opaque": opaque}


async def assert_all_refused(state: AuthState, creds: dict[str, str]) -> None:
    assert await state.authenticate_session(creds["cookie"]) is None
    for name in ("jwt", "grant_jwt", "opaque"):
        with pytest.raises(InvalidToken):
            await state.authenticate_bearer(creds[name])
    with pytest.raises(InvalidGrant):
        await state.refresh_tokens(creds["refresh"])


async def test_disable_ends_every_credential_and_refuses_login(state: AuthState) -> None:
    user = await state.add_user(EMAIL, PASSWORD, via="test")
    creds = await credentials(state, user)
    assert (await state.authenticate_session(creds["cookie"])) is not None
    await state.authenticate_bearer(creds["jwt"])

    done = await state.disable_user(user.id, reason="chargeback fraud", actor="cli")

    assert done.user.disabled and done.user.disabled_reason == "chargeback fraud"
    assert done.revoked.sessions == 2 and done.revoked.families == 1
    await assert_all_refused(state, creds)
    with pytest.raises(AuthenticationFailed) as refused:
        await state.login(EMAIL, PASSWORD, ip=IP, user_agent=AGENT)
    with pytest.raises(AuthenticationFailed) as wrong:
        await state.login(EMAIL, "not the password at all", ip=IP, user_agent=AGENT)
    assert type(refused.value) is type(wrong.value) is AuthenticationFailed
    assert (refused.value.code, refused.value.message) == (wrong.value.code, wrong.value.message)
    with pytest.raises(AuthenticationFailed):
        await state.password_grant(EMAIL, PASSWORD, ip=IP, user_agent=AGENT)

    failed = await trail(state, "login_failed")
    assert [e.detail["reason"] for e in failed[-3:]] == [
        "account_disabled", "bad_credentials", "account_disabled"]
    assert failed[-1].detail["via"] == "password_grant" and failed[-1].user_id == user.id
    assert failed[-1].detail["disabled_reason"] == "chargeback fraud"
    disabled = await trail(state, "user_disabled")
    assert disabled[-1].detail["reason"] == "chargeback fraud" and disabled[-1].actor == "cli"
    assert PASSWORD not in json.dumps([repr(e) for e in failed])


async def test_enable_lets_a_new_login_in_and_keeps_old_credentials_dead(
    state: AuthState,
) -> None:
    user = await state.add_user(EMAIL, PASSWORD, via="test")
    creds = await credentials(state, user)
    await state.disable_user(user.id)

    enabled = await state.enable_user(user.id)

    assert not enabled.disabled and enabled.disabled_reason is None
    await assert_all_refused(state, creds)
    fresh = await credentials(state, enabled)
    assert (await state.authenticate_session(fresh["cookie"])) is not None
    for name in ("jwt", "grant_jwt", "opaque"):
        assert (await state.authenticate_bearer(fresh[name])).user_id == user.id
    assert (await state.refresh_tokens(fresh["refresh"])).access_token
    assert [e.type for e in await trail(state, "user_enabled")] == ["user_enabled"]


async def test_disabled_login_does_the_same_password_work(state: AuthState) -> None:
    """No timing oracle: a disabled account's login verifies the password as any other
    (one argon2 verification each, whether the answer is disabled, wrong or unknown)."""
    user = await state.add_user(EMAIL, PASSWORD, via="test")
    await state.disable_user(user.id)
    calls: list[str] = []
    verify = state.passwords.verify_async

    async def counting(password_hash: str, password: str) -> bool:
        calls.append("verify")
        return await verify(password_hash, password)

    state.passwords.verify_async = counting  # type: ignore[method-assign]
    for email, password in ((EMAIL, PASSWORD), (EMAIL, "wrong password"),
                            ("nobody@example.com", PASSWORD)):
        with pytest.raises(AuthenticationFailed):
            await state.login(email, password, ip=IP, user_agent=AGENT)
    assert calls == ["verify"] * 3


async def test_login_racing_a_disable_undoes_itself(state: AuthState) -> None:
    """A disable landing between a login's password check and its session write cannot
    leave a live session behind: the login re-reads the account and ends its session."""
    user = await state.add_user(EMAIL, PASSWORD, via="test")
    create = state.sessions.create

    async def create_then_disable(*args: Any, **kw: Any) -> Any:
        made = await create(*args, **kw)
        await state.disable_user(user.id, reason="raced")
        return made

    state.sessions.create = create_then_disable  # type: ignore[method-assign]
    with pytest.raises(AuthenticationFailed):
        await state.login(EMAIL, PASSWORD, ip=IP, user_agent=AGENT)
    state.sessions.create = create  # type: ignore[method-assign]
    assert await state.sessions.for_user(user.id) == []


@pytest.mark.parametrize("head_start", range(6))
async def test_concurrent_disable_and_refresh_the_refresh_loses(
    state: AuthState, head_start: int
) -> None:
    """Disable and refresh run as concurrent tasks, the refresh given 0..5 event-loop
    turns of head start: whatever the interleaving, nothing the refresh returns works
    once the disable has returned."""
    user = await state.add_user(EMAIL, PASSWORD, via="test")
    pair = await state.password_grant(EMAIL, PASSWORD, ip=IP, user_agent=AGENT)

    async def refresh() -> Any:
        try:
            return await state.refresh_tokens(pair.refresh_token)
        except InvalidGrant as error:
            return error

    async def disable() -> None:
        for _ in range(head_start):
            await asyncio.sleep(0)
        await state.disable_user(user.id)

    refreshed, _ = await asyncio.gather(refresh(), disable())

    if not isinstance(refreshed, InvalidGrant):
        with pytest.raises(InvalidToken):
            await state.authenticate_bearer(refreshed.access_token)
        with pytest.raises(InvalidGrant):
            await state.refresh_tokens(refreshed.refresh_token)
    with pytest.raises(InvalidGrant):
        await state.refresh_tokens(pair.refresh_token)
    with pytest.raises(InvalidToken):
        await state.authenticate_bearer(pair.access_token)


def scoped_app(state: AuthState) -> FastAPI:
    """An application protecting ``/orders`` with ``require_scopes("orders:read")``."""
    app = FastAPI()

    @app.get("/orders")
    async def orders(identity: Identity = Depends(require_scopes("orders:read"))) -> dict[
            str, str]:
        return {"user": identity.user_id}

    app.add_middleware(AuthMiddleware, authenticators=[
        SessionCookie(state, csrf=False), BearerJWT(state), BearerOpaque(state)])
    return app


async def orders_status(app: FastAPI, *, token: str | None = None,
                        cookie: str | None = None) -> int:
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    cookies = {"authstate_session": cookie} if cookie else {}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 cookies=cookies) as client:
        return (await client.get("/orders", headers=headers)).status_code


async def test_scope_removal_is_refused_at_the_next_request(state: AuthState) -> None:
    user = await state.add_user(EMAIL, PASSWORD, via="test")
    user = await state.set_scopes(user.id, ["orders:read", "orders:list"])
    login = await state.login(EMAIL, PASSWORD, ip=IP, user_agent=AGENT)
    jwt, _ = await state.issue_for_session(login.session, scope=("orders:read",))
    pair = await state.login_tokens(user.id, login.session, scope=("orders:read", "orders:list"))
    opaque, _ = await state.opaque.issue(user.id, scope=("orders:read",))
    app = scoped_app(state)
    for credential in ({"token": jwt}, {"token": pair.access_token}, {"token": opaque},
                       {"cookie": login.session_id}):
        assert await orders_status(app, **credential) == 200, credential

    after = await state.set_scopes(user.id, ["orders:list"])

    assert after.scopes == ("orders:list",)
    for credential in ({"token": jwt}, {"token": pair.access_token}, {"token": opaque}):
        assert await orders_status(app, **credential) == 401, credential
    assert await orders_status(app, cookie=login.session_id) == 403, "the session: no scope"
    assert (await state.authenticate_session(login.session_id)) is not None, "still logged in"
    narrowed = await state.refresh_tokens(pair.refresh_token)
    assert narrowed.scope == ("orders:list",)
    assert (await state.authenticate_bearer(narrowed.access_token)).scope == ("orders:list",)
    assert await orders_status(app, token=narrowed.access_token) == 403
    changed = await trail(state, "user_scopes_changed")
    assert changed[-1].detail == {"added": [], "removed": ["orders:read"]}

    # openid, profile and email are everyone's (oauth/scopes.py BASE); orders:list is not
    await state.set_scopes(user.id, [])
    with pytest.raises(InvalidScope):
        await state.refresh_tokens(narrowed.refresh_token)


async def test_added_scopes_reach_sessions_at_once_and_end_nothing(state: AuthState) -> None:
    user = await state.add_user(EMAIL, PASSWORD, via="test")
    login = await state.login(EMAIL, PASSWORD, ip=IP, user_agent=AGENT)
    jwt, _ = await state.issue_for_session(login.session)
    app = scoped_app(state)
    assert await orders_status(app, cookie=login.session_id) == 403
    await state.set_scopes(user.id, ["orders:read"])
    assert await orders_status(app, cookie=login.session_id) == 200
    assert (await state.authenticate_bearer(jwt)).user_id == user.id


@pytest.mark.parametrize("backend", ["redis", "postgres"])
async def test_another_instance_refuses_at_once_over_the_bus(
    backend: str, clock: FrozenClock
) -> None:
    """Two instances on one Redis (or PostgreSQL) sharing its bus: a scope removed and an
    account disabled through one are refused by the other, whose check is local."""
    url = require_service(backend)
    namespace = fresh_namespace()
    store = await open_store(url, clock=clock, namespace=namespace)
    settings = api_settings(store=url, namespace=namespace)
    a = AuthState(settings, store, clock=clock, bus=open_bus(url, namespace=namespace))
    b = AuthState(settings, store, clock=clock, bus=open_bus(url, namespace=namespace))
    try:
        await a.start()
        await b.start()
        await until(lambda: a.revocation.local and b.revocation.local)
        # what reached b, by type: a change also publishes a "user" event (usercache)
        # before its token-version bump, so wait for the bump itself
        kinds: list[str] = []
        b.revocation.on_event.append(lambda event: kinds.append(event["t"]))
        user = await a.add_user(EMAIL, PASSWORD, via="test")
        await a.set_scopes(user.id, ["orders:read"])
        login = await a.login(EMAIL, PASSWORD, ip=IP, user_agent=AGENT)
        jwt, _ = await a.issue_for_session(login.session, scope=("orders:read",))
        app_b = scoped_app(b)
        assert await orders_status(app_b, token=jwt) == 200

        await a.set_scopes(user.id, [])
        await until(lambda: "ver" in kinds)
        assert b.revocation.local, "b refuses from its pushed copy, not a store read"
        assert await orders_status(app_b, token=jwt) == 401

        await a.set_scopes(user.id, ["orders:read"])
        jwt, _ = await a.issue_for_session(login.session, scope=("orders:read",))
        assert await orders_status(app_b, token=jwt) == 200
        kinds.clear()
        await a.disable_user(user.id)
        await until(lambda: "ver" in kinds)  # the last event of the disable
        assert await orders_status(app_b, token=jwt) == 401
        assert await orders_status(app_b, cookie=login.session_id) == 401
    finally:
        await b.revocation.close()
        await a.revocation.close()
        await store.drop_namespace()  # type: ignore[attr-defined]
        await store.close()


async def until(condition: Any, *, rounds: int = 500) -> None:
    """Wait for a bus delivery (event-driven, bounded: 500 turns of 10 ms)."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


KINDS = (
    users_module.KIND_USER, users_module.KIND_EMAIL, sessions_module.KIND,
    refresh_module.KIND, refresh_module.FAMILY, opaque_module.KIND, throttle_module.KIND,
    revocation_module.DENY, revocation_module.SID, revocation_module.VERSION,
    revocation_module.BUMP, "client",
)
# What may name a deleted user, and only until the last access token it could judge
# has expired: the token version (so the store-mode check keeps refusing old JWTs) and
# the recent bumps (the pushed copy's resync).
TOMBSTONES = {revocation_module.VERSION, revocation_module.BUMP}


async def test_delete_removes_the_user_from_every_store(
    state: AuthState, store: Store, clock: FrozenClock
) -> None:
    user = await state.add_user(EMAIL, PASSWORD, via="test")
    other = await state.add_user("hugo@example.com", PASSWORD, via="test")
    await state.set_scopes(user.id, ["orders:read"])
    with pytest.raises(AuthenticationFailed):  # a throttle counter and an audit row
        await state.login(EMAIL, "a wrong password", ip=IP, user_agent=AGENT)
    creds = await credentials(state, user)
    await state.login(other.email, PASSWORD, ip=IP, user_agent=AGENT)
    email_digest = hashlib.sha256(EMAIL.encode()).hexdigest()[:32]

    revoked = await state.delete_user(user.id, actor="cli")

    assert revoked.sessions == 2
    await assert_all_refused(state, creds)
    with pytest.raises(NotFound):
        await state.get_user(user.id)
    with pytest.raises(NotFound):
        await state.find_user(EMAIL)
    leftovers = []
    for kind in KINDS:
        for record in await store.scan(kind, limit=10_000):
            text = json.dumps([record.key, record.value, record.user_id])
            if EMAIL in text or email_digest in text or (
                user.id in text and kind not in TOMBSTONES
            ):
                leftovers.append((kind, text))
            if user.id in text and kind in TOMBSTONES:
                assert record.expires_at is not None
                assert record.expires_at <= clock.now() + state.revocation.lifetime
    assert leftovers == []
    assert await state.sessions.for_user(other.id), "other users keep their sessions"
    events = (await state.audit.query(limit=1000)).events
    assert EMAIL not in json.dumps([repr(e) for e in events]), "fingerprints only"
    deleted = [e for e in events if e.type == "user_deleted"]
    assert len(deleted) == 1 and deleted[0].user_id == user.id and deleted[0].actor == "cli"
    assert deleted[0].detail["email_fp"] == sessions_module.fingerprint(EMAIL)
    # the user's past events keep fingerprints of their IP address and agent only
    mine = [e for e in events if e.user_id == user.id and e.type != "user_deleted"]
    assert deleted[0].detail["audit_scrubbed"] == sum(e.ip is not None for e in mine) > 0
    assert "sha256:" + hashlib.sha256(IP.encode()).hexdigest()[:8] in {e.ip for e in mine}
    assert not {IP, AGENT} & {v for e in mine for v in (e.ip, e.user_agent)}
    assert any(e.user_id == other.id and e.ip == IP and e.user_agent == AGENT for e in events)
    with pytest.raises(AuthenticationFailed):
        await state.login(EMAIL, PASSWORD, ip=IP, user_agent=AGENT)
    clock.advance(state.revocation.lifetime + 1)
    for kind in TOMBSTONES:
        for record in await store.scan(kind, limit=10_000):
            assert user.id not in json.dumps([record.key, record.value, record.user_id])
    again = await state.add_user(EMAIL, PASSWORD, via="test")
    assert again.id != user.id and not again.disabled and again.scopes == ()


async def test_the_last_enabled_admin_cannot_be_taken_away(state: AuthState) -> None:
    root = await state.add_user("root@example.com", PASSWORD, admin=True, via="test")
    for change in (lambda: state.disable_user(root.id), lambda: state.delete_user(root.id),
                   lambda: state.set_admin(root.id, False)):
        with pytest.raises(Refused, match="last enabled admin"):
            await change()
    still = await state.get_user(root.id)
    assert still.is_admin and not still.disabled
    login = await state.login(root.email, PASSWORD, ip=IP, user_agent=AGENT)
    assert await state.authenticate_session(login.session_id) is not None, "nothing ended"

    ops = await state.add_user("ops@example.com", PASSWORD, admin=True, via="test")
    await state.disable_user(root.id)  # another enabled admin remains
    with pytest.raises(Refused):
        await state.disable_user(ops.id)
    await state.enable_user(root.id)
    await state.delete_user(ops.id)
    with pytest.raises(Refused):
        await state.delete_user(root.id)


async def test_two_admins_disabling_each_other_at_once_leave_one(state: AuthState) -> None:
    a = await state.add_user("a@example.com", PASSWORD, admin=True, via="test")
    b = await state.add_user("b@example.com", PASSWORD, admin=True, via="test")
    results = await asyncio.gather(state.disable_user(a.id), state.disable_user(b.id),
                                   return_exceptions=True)
    assert any(isinstance(r, Refused) for r in results)
    admins = [u for u in await state.list_users() if u.is_admin and not u.disabled]
    assert len(admins) >= 1


async def test_admin_password_reset_ends_every_session(state: AuthState) -> None:
    user = await state.add_user(EMAIL, PASSWORD, via="test")
    creds = await credentials(state, user)
    revoked = await state.reset_password(user.id, "a brand new passphrase for gina")
    assert revoked.sessions == 2
    await assert_all_refused(state, creds)
    await state.login(EMAIL, "a brand new passphrase for gina", ip=IP, user_agent=AGENT)
    assert [e.type for e in await trail(state, "password_reset")] == ["password_reset"]


async def test_bad_input_is_refused_precisely_and_changes_nothing(state: AuthState) -> None:
    user = await state.add_user(EMAIL, PASSWORD, via="test")
    await state.set_scopes(user.id, ["orders:read"])
    for bad in (["orders read"], ["x" * 65], [""], ["ok", "no/slash"], ["é"], "orders:read",
                [1]):
        with pytest.raises(InvalidScope):
            await state.set_scopes(user.id, bad)
    assert (await state.get_user(user.id)).scopes == ("orders:read",)
    assert (await state.set_scopes(user.id, ["b", "a:b.c_d-e", "b"])).scopes == ("a:b.c_d-e", "b")
    with pytest.raises(InvalidInput):
        await state.disable_user(user.id, reason="x" * 201)
    assert not (await state.get_user(user.id)).disabled
    for unknown in ("u_AAAAAAAAAAAAAAAA", "nobody", ""):
        for call in (state.get_user, state.enable_user, state.delete_user,
                     lambda uid: state.disable_user(uid),
                     lambda uid: state.set_scopes(uid, ["a"])):
            with pytest.raises(NotFound):
                await call(unknown)
    with pytest.raises(NotFound):
        await state.find_user("nobody@example.com")
    assert await state.list_users(disabled=True) == []
    await state.disable_user(user.id)
    assert [u.id for u in await state.list_users(disabled=True)] == [user.id]
