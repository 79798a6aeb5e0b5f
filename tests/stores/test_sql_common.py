"""Behaviour both SQL stores share through stores/sql.py, run on each of them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from authstate.clock import FrozenClock
from authstate.errors import InvalidInput
from authstate.stores import Store
from authstate.stores.sql import Statements, audit_id, audit_id_number, prefix_end
from tests.conftest import backend_store


@pytest.fixture(params=["sqlite", "postgres"])
async def sql_store(
    request: pytest.FixtureRequest, clock: FrozenClock, tmp_path: Path
) -> AsyncIterator[Store]:
    async with backend_store(request.param, clock, tmp_path) as store:
        yield store


def test_prefix_end_is_the_next_string_by_code_point() -> None:
    assert prefix_end("abc") == "abd"
    assert prefix_end("a%") == "a&" and prefix_end("a_") == "a`"
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\ud7ff") == "\ue000"
    assert prefix_end("") is None and prefix_end("\U0010ffff") is None


def test_statements_render_per_engine() -> None:
    sqlite = Statements.render(records="records", audit="audit", placeholder="?")
    pg = Statements.render(records='"ns".records', audit='"ns".audit', placeholder="%s")
    assert pg.get == sqlite.get.replace("?", "%s").replace("records", '"ns".records')
    assert "?" not in pg.create and pg.create.count("%s") == 6
    query, params = pg.query_events(user_id="u", type="login", since=1.0, before_id=audit_id(9), limit=5)
    assert query == (
        'SELECT id, event FROM "ns".audit WHERE user_id = %s AND type = %s AND ts >= %s '
        "AND id < %s ORDER BY id DESC LIMIT %s"
    )
    assert params == ["u", "login", 1.0, 9, 5]


@pytest.mark.parametrize("cursor", ["", "abc", "-1", "1e3", "١٢", "9" * 21])
def test_a_foreign_audit_cursor_is_invalid_input(cursor: str) -> None:
    with pytest.raises(InvalidInput):
        audit_id_number(cursor)


async def test_audit_ids_sort_as_strings(sql_store: Store, clock: FrozenClock) -> None:
    ids = [await sql_store.append_event({"ts": clock.now(), "type": "t"}) for _ in range(12)]
    assert ids == sorted(ids) and len(set(ids)) == 12
    assert all(len(i) == 20 for i in ids)
    with pytest.raises(InvalidInput):
        await sql_store.query_events(before_id="not-a-cursor")


async def test_audit_event_roundtrip_and_odd_user_ids(sql_store: Store, clock: FrozenClock) -> None:
    event = {"ts": clock.now(), "type": "login", "user_id": 42, "detail": {"ip": "203.0.113.9"}}
    await sql_store.append_event(event)
    rows = await sql_store.query_events(user_id="42")
    assert [r.event for r in rows] == [event]


async def test_top_level_merge_everywhere(sql_store: Store, clock: FrozenClock) -> None:
    """patch, rename and spend all merge top-level fields: a nested object is replaced,
    not merged, and a field set to None is kept as null."""
    start = {"nested": {"keep": 1, "b": 2}, "gone": 1, "text": "é ☃"}
    fields = {"nested": {"b": 3}, "gone": None}
    merged = {"nested": {"b": 3}, "gone": None, "text": "é ☃"}
    await sql_store.put("session", "p", start)
    patched = await sql_store.patch("session", "p", fields)
    assert patched is not None and patched.value == merged
    await sql_store.put("session", "r", start)
    renamed = await sql_store.rename("session", "r", "r2", fields=fields)
    assert renamed is not None and renamed.value == merged
    await sql_store.put("refresh", "s", start)
    before, ok = await sql_store.spend(
        "refresh", "s", fields={**fields, "spent_at": 1.0}, new_key="s2", new_value={},
        new_expires_at=None,
    )
    spent = await sql_store.get("refresh", "s")
    assert ok and before is not None and before.value == start
    assert spent is not None and spent.value == {**merged, "spent_at": 1.0}


async def test_rename_onto_itself_is_a_patch(sql_store: Store, clock: FrozenClock) -> None:
    await sql_store.put("session", "same", {"a": 1}, expires_at=clock.now() + 10, user_id="u")
    moved = await sql_store.rename("session", "same", "same", fields={"b": 2})
    assert moved is not None and moved.value == {"a": 1, "b": 2}
    assert [r.key for r in await sql_store.list_by_user("session", "u")] == ["same"]


async def test_spend_of_an_expired_record_is_not_live(sql_store: Store, clock: FrozenClock) -> None:
    await sql_store.put("refresh", "old", {"f": 1}, expires_at=clock.now() + 5)
    clock.advance(6)
    result = await sql_store.spend(
        "refresh", "old", fields={"spent_at": 1.0}, new_key="n", new_value={}, new_expires_at=None
    )
    assert result == (None, False)
    assert await sql_store.get("refresh", "n") is None


async def test_delete_by_user_reports_only_live_records(
    sql_store: Store, clock: FrozenClock
) -> None:
    await sql_store.put("session", "live", {}, user_id="u", expires_at=clock.now() + 100)
    await sql_store.put("session", "dead", {}, user_id="u", expires_at=clock.now() + 1)
    clock.advance(2)
    assert [r.key for r in await sql_store.delete_by_user("session", "u")] == ["live"]
    assert await sql_store.sweep() == 0, "the expired one went with them"


async def test_scan_limit_and_order(sql_store: Store) -> None:
    for i in (3, 1, 2, 0):
        await sql_store.put("session", f"k{i}", {"i": i})
    assert [r.key for r in await sql_store.scan("session", prefix="k", limit=3)] == [
        "k0", "k1", "k2"
    ]
