"""``AUTHSTATE_METRICS_ADDRESS``: a real ``authstate serve`` with ``/metrics`` on a second
listener only, over the same state, and both listeners stopping on one SIGINT."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from authstate.config import Settings
from authstate.errors import ConfigurationError
from tests.support import free_port
from tests.test_cli_serve_process import Server, environment

TOKEN = "scrape-" + "q9" * 16


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    metrics_port = free_port()
    env = environment(
        AUTHSTATE_STORE=f"sqlite:///{tmp_path / 'authstate.db'}",
        AUTHSTATE_METRICS_ADDRESS=f"127.0.0.1:{metrics_port}",
        AUTHSTATE_METRICS_TOKEN=TOKEN,
    )
    started = Server([], env, tmp_path)
    try:
        started.wait_ready()
        yield started, f"http://127.0.0.1:{metrics_port}"
    finally:
        started.stop()


def test_metrics_only_on_the_metrics_address(server: tuple[Server, str]) -> None:
    service, metrics_url = server
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(timeout=10) as http:
        assert http.get(service.url + "/metrics", headers=auth).status_code == 404
        scraped = http.get(metrics_url + "/metrics", headers=auth)
        assert scraped.status_code == 200 and "authstate_" in scraped.text
        assert http.get(metrics_url + "/metrics").status_code == 401  # the token still applies
        for path in ("/healthz", "/auth/me", "/openapi.json", "/docs"):
            assert http.get(metrics_url + path).status_code == 404, path
        # one state behind both: a failed login on the service shows on the metrics port
        http.post(service.url + "/auth/login", json={"email": "x@example.com", "password": "nope nope"})
        after = http.get(metrics_url + "/metrics", headers=auth).text
        assert after != scraped.text
    assert service.stop() == 0, service.output()
    assert "Traceback" not in service.output()
    assert "metrics on 127.0.0.1:" in service.output()
    with pytest.raises(httpx.TransportError):
        httpx.get(metrics_url + "/metrics", timeout=2)


@pytest.mark.parametrize("address", ["9100", "host:", "a b:80", "127.0.0.1:70000", ":9100"])
def test_a_bad_metrics_address_is_refused(address: str) -> None:
    with pytest.raises(ConfigurationError, match="AUTHSTATE_METRICS_ADDRESS"):
        Settings.from_flat(metrics_address=address)


def test_metrics_address_parses_hosts() -> None:
    assert Settings.from_flat(metrics_address="10.0.0.5:9100").service.metrics_listen() == ("10.0.0.5", 9100)
    assert Settings.from_flat(metrics_address="[::1]:9100").service.metrics_listen() == ("::1", 9100)
    assert Settings.from_flat().service.metrics_listen() is None
