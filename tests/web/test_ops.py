"""``GET /admin/audit`` (admin only, filtered, paginated) and ``GET /metrics`` (scraped)."""

from __future__ import annotations

import time
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from authstate.clock import FrozenClock
from tests.stores.test_outage import RedisServer, free_port
from tests.web.api import Api, running

ADMIN = "root@example.test"
ALICE = "alice@example.test"


async def audit(api: Api, client: httpx.AsyncClient | None = None, **params: Any) -> dict[str, Any]:
    response = await (client or api.client).get("/admin/audit", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_audit_is_for_admins_only() -> None:
    async with running() as api:
        await api.add_user(ADMIN, admin=True)
        await api.add_user(ALICE)
        anonymous = await api.client.get("/admin/audit")
        assert anonymous.status_code == 401
        alice = api.new_client()
        await api.login(ALICE, client=alice)
        forbidden = await alice.get("/admin/audit")
        assert forbidden.status_code == 403
        assert forbidden.headers["content-type"].startswith("application/problem+json")
        await api.login(ADMIN)
        assert (await api.client.get("/admin/audit")).status_code == 200


async def test_audit_by_bearer_token() -> None:
    async with running() as api:
        await api.add_user(ADMIN, admin=True)
        grant = await api.client.post(
            "/oauth/token",
            data={"grant_type": "password", "username": ADMIN, "password": "correct horse battery staple"},
        )
        assert grant.status_code == 200, grant.text
        token = grant.json()["access_token"]
        fresh = api.new_client()
        response = await fresh.get("/admin/audit", headers={"Authorization": f"Bearer {token}"},
                                   params={"type": "login_succeeded"})
        assert response.status_code == 200, response.text
        assert [e["type"] for e in response.json()["events"]] == ["login_succeeded"]


async def test_audit_filters_and_pages() -> None:
    async with running() as api:
        admin = await api.add_user(ADMIN, admin=True)
        alice = await api.add_user(ALICE)
        browser = api.new_client()
        for _ in range(3):
            await api.login(ALICE, client=browser)
        wrong = await browser.post("/auth/login", json={"email": ALICE, "password": "not it at all"})
        assert wrong.status_code == 401
        await api.login(ADMIN)

        mine = await audit(api, user=alice.id)
        types = [e["type"] for e in mine["events"]]
        assert types.count("login_succeeded") == 3 and types.count("session_created") == 3
        assert {e["user_id"] for e in mine["events"]} == {alice.id}
        assert all(len(e["session"]) == 16 for e in mine["events"] if e["type"] != "login_failed")
        rotated = await audit(api, user=alice.id, type="session_rotated")
        assert len(rotated["events"]) == 2, "logging in again replaces the previous session"

        failed = await audit(api, type="login_failed")
        assert len(failed["events"]) == 1
        assert failed["events"][0]["ip"] and "password" not in str(failed["events"][0])

        recent = await audit(api, since="1h", user=admin.id)
        assert {e["type"] for e in recent["events"]} >= {"login_succeeded", "session_created"}

        everything = await api.state.store.query_events(limit=1000)
        seen: list[str] = []
        url: str | None = "/admin/audit?limit=4"
        pages = 0
        while url is not None:
            response = await api.client.get(url)
            assert response.status_code == 200, response.text
            body = response.json()
            assert len(body["events"]) <= 4
            seen += [e["id"] for e in body["events"]]
            url = body["next"]
            if url is not None:
                assert response.headers["link"] == f'<{url}>; rel="next"'
                assert f"before={body['next_before']}" in url
            pages += 1
        assert seen == [row.id for row in everything], "every event once, newest first"
        assert pages == -(-len(seen) // 4) or pages == len(seen) // 4 + 1


async def test_audit_rejects_bad_queries() -> None:
    async with running() as api:
        await api.add_user(ADMIN, admin=True)
        await api.login(ADMIN)
        for params in (
            {"type": "no_such_type"}, {"since": "last tuesday"}, {"limit": "0"},
            {"limit": "100000"}, {"before": "'; drop table audit"}, {"user": "a\x00b"},
            {"user": "x" * 300},
        ):
            response = await api.client.get("/admin/audit", params=params)
            assert response.status_code == 422, (params, response.status_code, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")


async def test_metrics_scrape_shows_counters_move() -> None:
    clock = FrozenClock(time.time())
    async with running(clock=clock) as api:
        assert api.state.metrics is not None
        api.state.metrics.gauge_ttl = 0
        await api.add_user(ALICE)
        first = await api.client.get("/metrics")
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("text/plain")
        before = scrape(first.text)

        await api.login(ALICE)
        await api.login(ALICE, client=api.new_client())
        bad = await api.new_client().post("/auth/login", json={"email": ALICE, "password": "wrong wrong wrong"})
        assert bad.status_code == 401
        grant = await api.client.post(
            "/oauth/token",
            data={"grant_type": "password", "username": ALICE, "password": "correct horse battery staple"},
        )
        assert grant.status_code == 200, grant.text
        refresh = grant.json()["refresh_token"]
        rotated = await api.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh})
        assert rotated.status_code == 200, rotated.text
        clock.advance(api.state.settings.refresh.grace + 1)
        reused = await api.client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh})
        assert reused.status_code == 400
        me = await api.client.get("/auth/me")
        assert me.status_code == 200

        after = scrape((await api.client.get("/metrics")).text)

        def moved(name: str, **labels: str) -> float:
            key = (name, tuple(sorted(labels.items())))
            return after.get(key, 0.0) - before.get(key, 0.0)

        assert moved("authstate_logins_total", outcome="succeeded") >= 3
        assert moved("authstate_logins_total", outcome="failed") == 1
        assert moved("authstate_tokens_issued_total", kind="access") >= 2
        assert moved("authstate_refresh_rotations_total") == 1
        assert moved("authstate_refresh_reuse_detections_total") == 1
        assert moved("authstate_revocations_total", kind="family") >= 1
        assert moved("authstate_sessions_created_total") >= 2
        assert after[("authstate_sessions_active", ())] >= 2
        assert before[("authstate_sessions_active", ())] == 0


async def test_metrics_can_be_off() -> None:
    async with running(metrics=False) as api:
        response = await api.client.get("/metrics")
        assert response.status_code == 404


async def test_metrics_count_store_errors_and_still_scrape() -> None:
    server = RedisServer(free_port())
    server.start()
    try:
        async with running(store=server.url, namespace="ops", push_revocation=False) as api:
            await api.add_user(ALICE)
            await api.login(ALICE)
            server.stop()
            assert (await api.client.get("/auth/me")).status_code == 503, "fails closed, no logout"
            down = await api.client.post("/auth/login", json={"email": ALICE, "password": "whatever it is"})
            assert down.status_code == 503
            scraped = await api.client.get("/metrics")
            assert scraped.status_code == 200, "metrics answer while the store is down"
            samples = scrape(scraped.text)
            assert samples[("authstate_store_errors_total", (("operation", "session"),))] >= 1
            assert samples[("authstate_store_errors_total", (("operation", "request"),))] >= 1
    finally:
        server.stop()
