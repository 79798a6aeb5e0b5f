"""The core under every framework's app sessions, on every store: anonymous sessions,
login carrying a visitor's data over, and the per-key merge rule of ``appsessions``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from authstate import appsessions, csrf
from authstate.clock import FrozenClock
from authstate.errors import SessionNotFound, SessionTooLarge
from authstate.sessions import KIND
from authstate.state import AuthState
from authstate.stores import Store
from tests.web.api import PASSWORD, api_settings

IP, AGENT = "198.51.100.9", "appsessions-test/1.0"


@pytest.fixture
async def state(store: Store, clock: FrozenClock) -> AsyncIterator[AuthState]:
    s = AuthState(api_settings(), store, clock=clock)
    await s.start()
    yield s
    await s.revocation.close()


async def test_anonymous_session_is_no_login_and_in_no_user_index(state: AuthState) -> None:
    session_id, session = await state.sessions.create(None, data={"cart": [1]})
    assert session.anonymous and session.user_id == ""
    assert await state.authenticate_session(session_id) is None
    looked = await state.sessions.lookup(session_id)
    assert looked is not None and looked.data == {"cart": [1]}
    assert await state.sessions.for_user("") == []
    with pytest.raises(SessionNotFound):
        await state.issue_for_session(looked)
    assert await state.sessions.revoke(session_id) is not None
    assert [e.type for e in (await state.audit.query(limit=100)).events
            if e.type == "session_revoked"] == []  # a visitor's session: nothing to audit


async def test_login_carries_a_visitors_data_over_with_a_fresh_csrf(state: AuthState) -> None:
    user = await state.users.create("ann@example.com", PASSWORD)
    visitor_id, _ = await state.sessions.create(None, data={"cart": ["book"], "step": 3})
    result = await state.login("ann@example.com", PASSWORD, ip=IP, user_agent=AGENT,
                                previous_session_id=visitor_id)
    assert result.session_id != visitor_id
    assert await state.sessions.lookup(visitor_id) is None
    assert dict(result.session.data) == {"cart": ["book"], "step": 3,
                                         csrf.DATA_KEY: result.csrf_token}
    assert result.session.user_id == user.id


async def test_login_never_carries_another_users_data(state: AuthState) -> None:
    await state.users.create("ann@example.com", PASSWORD)
    await state.users.create("bob@example.com", PASSWORD)
    ann = await state.login("ann@example.com", PASSWORD, ip=IP, user_agent=AGENT)
    await state.sessions.update(ann.session_id, {"secret": "ann's"})
    bob = await state.login("bob@example.com", PASSWORD, ip=IP, user_agent=AGENT,
                            previous_session_id=ann.session_id)
    assert "secret" not in bob.session.data
    again = await state.login("bob@example.com", PASSWORD, ip=IP, user_agent=AGENT,
                              previous_session_id=bob.session_id)
    assert again.session.data[csrf.DATA_KEY] != bob.csrf_token  # always a fresh token


def test_changes_find_set_mutated_and_deleted_keys() -> None:
    values, snapshot = appsessions.load({"a": [1], "b": 2, "c": 3, csrf.DATA_KEY: "t"})
    assert csrf.DATA_KEY not in values  # reserved keys are not the app's
    values["a"].append(2)  # mutated in place
    values["d"] = 4
    del values["b"]
    values["c"] = 3  # unchanged
    assert appsessions.changes(snapshot, values) == {"a": [1, 2], "d": 4, "b": None}
    assert appsessions.changes(snapshot, appsessions.load({"a": [1], "b": 2, "c": 3})[0]) == {}


async def test_save_merges_only_what_changed(state: AuthState) -> None:
    session_id, session = await state.sessions.create(None, data={"a": 1, "b": 1})
    mine, snapshot = appsessions.load(session.data)
    await state.sessions.update(session_id, {"b": 2, "c": 3})  # another request, meanwhile
    mine["a"] = 10
    saved = await appsessions.save(state.sessions, session_id, session, mine,
                                   appsessions.changes(snapshot, mine))
    assert saved.cookie == "keep" and saved.session is not None
    assert dict(saved.session.data) == {"a": 10, "b": 2, "c": 3}


async def test_save_creates_a_visitor_session_only_with_data(state: AuthState) -> None:
    saved = await appsessions.save(state.sessions, None, None, {}, {})
    assert saved == appsessions.Saved(None, None, "keep")
    assert await state.store.scan(KIND) == []
    saved = await appsessions.save(state.sessions, None, None, {"x": 1}, {"x": 1}, ip=IP)
    assert saved.cookie == "set" and saved.session_id is not None
    assert saved.session is not None and saved.session.anonymous and saved.session.ip == IP


async def test_size_cap(state: AuthState) -> None:
    with pytest.raises(SessionTooLarge):
        appsessions.check_size({"x": "y" * appsessions.MAX_BYTES})
    session_id, session = await state.sessions.create(None, data={"a": "y" * 3000})
    with pytest.raises(SessionTooLarge):
        await appsessions.save(state.sessions, session_id, session, {}, {"b": "z" * 3000})
    looked = await state.sessions.lookup(session_id)
    assert looked is not None and set(looked.data) == {"a"}
