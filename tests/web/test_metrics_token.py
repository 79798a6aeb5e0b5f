"""Issue 10 §4: ``/metrics`` was open to anyone; ``AUTHSTATE_METRICS_TOKEN`` protects it."""

from __future__ import annotations

import pytest

from authstate.cli.serve import DEV_WARNING, METRICS_OPEN_WARNING, start_warnings
from authstate.config import Settings
from tests.web.api import api_settings, running

TOKEN = "scrape-" + "k7" * 16


async def test_without_a_token_setting_metrics_stay_open() -> None:
    async with running() as api:
        answer = await api.client.get("/metrics")
        assert answer.status_code == 200 and "authstate_" in answer.text


async def test_with_a_token_setting_only_that_bearer_token_reads_metrics() -> None:
    async with running(metrics_token=TOKEN) as api:
        missing = await api.client.get("/metrics")
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == 'Bearer realm="authstate"'
        assert missing.json()["code"] == "unauthenticated"
        assert "authstate_" not in missing.text
        for header in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer x", f"Basic {TOKEN}",
                       f"Bearer {TOKEN} {TOKEN}"):
            wrong = await api.client.get("/metrics", headers={"Authorization": header})
            assert wrong.status_code == 401, header
            assert TOKEN not in wrong.text
        bad = await api.client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert bad.headers["WWW-Authenticate"] == 'Bearer realm="authstate", error="invalid_token"'
        right = await api.client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200 and "authstate_" in right.text
        assert right.headers["content-type"].startswith("text/plain")


async def test_a_user_session_is_not_a_metrics_token() -> None:
    async with running(metrics_token=TOKEN) as api:
        await api.add_user("ops@example.com", admin=True)
        await api.login("ops@example.com")
        assert (await api.client.get("/metrics")).status_code == 401


async def test_metrics_off_is_still_404_whatever_the_token() -> None:
    async with running(metrics=False, metrics_token=TOKEN) as api:
        answer = await api.client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 404


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"dev": True}, [DEV_WARNING]),
        ({"dev": False}, [METRICS_OPEN_WARNING]),
        ({"dev": False, "metrics_token": TOKEN}, []),
        ({"dev": False, "metrics": False}, []),
        ({"dev": False, "metrics_address": "10.0.0.5:9100"}, []),
        ({"dev": False, "metrics_address": "0.0.0.0:9100"}, [METRICS_OPEN_WARNING]),
    ],
)
def test_serve_warns_when_metrics_are_open_outside_dev_mode(
    overrides: dict[str, object], expected: list[str]
) -> None:
    # keys sealed at rest (the file is not read here), so that only the metrics warning is at stake
    settings: Settings = api_settings(key_encryption_key_file="kek.txt", **overrides)
    assert start_warnings(settings) == expected
