"""The Flask and Django examples under a real gunicorn (sync workers, and threads),
started by the test on a free 127.0.0.1 port, against a real ``authstate serve``.

Valid, missing, forged and revoked tokens over TCP; a bounded concurrent run with zero
errors; a JWKS rotation during traffic; a revocation pushed from the service's store
reaching the workers (the measured time is printed: ``-s`` shows it); and a clean,
graceful shutdown (every worker exits on SIGTERM, nothing left hanging).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from authstate.config import Settings
from authstate.sync import Portal, SyncAuthState
from tests.conftest import REDIS_URL, fresh_namespace, require_service
from tests.sync.gunicorn_server import GRACEFUL, Gunicorn, gunicorn
from tests.sync.test_flask import tampered
from tests.web.live_service import PASSWORD, LiveService, live_service
from tests.web.test_middleware_examples import EMAIL, cli, token_pair

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DJANGO = EXAMPLES / "django_project"
PUSH_BUDGET = 2.0  # seconds allowed in the assertion; the issue's goal is 100 ms (printed)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    # a fast key poll, so that a rotation made through the CLI is signed with at once
    with live_service(tmp_path_factory.mktemp("serve"), AUTHSTATE_KEY_POLL_INTERVAL="0.2") as running:
        cli(running, "users", "add", EMAIL, "--password-stdin", "--json", stdin=PASSWORD + "\n")
        client = json.loads(cli(running, "clients", "add", "orders-api", "--json"))
        running.env["TEST_CLIENT_ID"] = client["client_id"]
        running.env["TEST_CLIENT_SECRET"] = client["client_secret"]
        yield running


def trusting_env(service: LiveService, **extra: str) -> dict[str, str]:
    return {"AUTHSTATE_URL": service.url, "AUTHSTATE_CLIENT_ID": service.env["TEST_CLIENT_ID"],
            "AUTHSTATE_CLIENT_SECRET": service.env["TEST_CLIENT_SECRET"], **extra}


def assert_clean_stop(server: Gunicorn) -> None:
    assert server.exit_code == 0, server.log_text()
    assert server.stopped_in is not None and server.stopped_in < GRACEFUL, server.log_text()
    log = server.log_text()
    assert "Traceback" not in log and "WORKER TIMEOUT" not in log, log


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def concurrent_run(url: str, path: str, token: str, *, threads: int = 8, each: int = 40) -> Counter[str]:
    """``threads`` clients, each sending ``each`` requests cycling valid / missing /
    forged; how many answers differed from the expected status (by kind)."""
    forged = tampered(token)
    cases = [(bearer(token), 200), ({}, 401), (bearer(forged), 401)]
    errors: Counter[str] = Counter()

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            for i in range(each):
                headers, expected = cases[(n + i) % len(cases)]
                try:
                    status = http.get(path, headers=headers).status_code
                except httpx.HTTPError as error:
                    errors[type(error).__name__] += 1
                    continue
                if status != expected:
                    errors[f"{expected}->{status}"] += 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(client, range(threads)))
    return errors


@pytest.mark.parametrize("workers", ["sync", "gthread"])
def test_flask_under_gunicorn(service: LiveService, tmp_path: Path, workers: str) -> None:
    pair = token_pair(service)
    token = pair["access_token"]
    with gunicorn("flask_app:app", chdir=EXAMPLES, env=trusting_env(service),
                  log=tmp_path / "gunicorn.log", workers=workers) as server:
        http = httpx.Client(base_url=server.url, timeout=10)
        assert http.get("/me", headers=bearer(token)).json()["method"] == "jwt"
        missing = http.get("/me")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="authstate"'
        assert http.get("/me", headers=bearer(tampered(token))).status_code == 401
        assert http.get("/me", headers=bearer(pair["refresh_token"])).status_code == 401
        assert concurrent_run(server.url, "/me", token) == Counter()
        http.close()
    assert_clean_stop(server)


@pytest.mark.parametrize("workers", ["sync", "gthread"])
def test_django_and_drf_under_gunicorn(service: LiveService, tmp_path: Path, workers: str) -> None:
    token = token_pair(service)["access_token"]
    with gunicorn("orders_site.wsgi", chdir=DJANGO, env=trusting_env(service),
                  log=tmp_path / "gunicorn.log", workers=workers) as server:
        http = httpx.Client(base_url=server.url, timeout=10)
        assert http.get("/api/me", headers=bearer(token)).json()["method"] == "jwt"
        assert http.get("/", headers=bearer(token)).json()["hello"].startswith("u_")
        assert http.get("/api/me").status_code == 401
        assert http.get("/orders").status_code == 401
        assert http.get("/api/me", headers=bearer(tampered(token))).status_code == 401
        assert http.get("/orders", headers=bearer(token)).status_code == 403  # no scope
        assert concurrent_run(server.url, "/api/me", token) == Counter()
        http.close()
    assert_clean_stop(server)


def test_jwks_rotation_during_traffic(service: LiveService, tmp_path: Path) -> None:
    """Keys rotate at the service (``keys rotate --now``) while clients keep calling:
    tokens of the old key stay good (it verifies until they expire), and the first token
    of the new key makes each worker refetch the JWKS (unknown kid) and accept it."""
    old = token_pair(service)["access_token"]
    env = trusting_env(service, AUTHSTATE_JWKS_MIN_REFRESH_INTERVAL="0.5")
    with gunicorn("flask_app:app", chdir=EXAMPLES, env=env, log=tmp_path / "gunicorn.log",
                  workers="gthread") as server:
        stop = threading.Event()
        answers: Counter[int] = Counter()

        def traffic() -> None:
            with httpx.Client(base_url=server.url, timeout=10) as http:
                while not stop.is_set():
                    answers[http.get("/me", headers=bearer(old)).status_code] += 1

        runner = threading.Thread(target=traffic)
        runner.start()
        try:
            kid_before = _kid(old)
            cli(service, "keys", "rotate", "--now", "--json")
            deadline = time.monotonic() + 10
            new = old
            while _kid(new) == kid_before and time.monotonic() < deadline:
                time.sleep(0.1)
                new = token_pair(service)["access_token"]
            assert _kid(new) != kid_before, "the service never signed with the new key"
            accepted = 0
            with httpx.Client(base_url=server.url, timeout=10) as http:
                while accepted < 10 and time.monotonic() < deadline:
                    status = http.get("/me", headers=bearer(new)).status_code
                    accepted = accepted + 1 if status == 200 else 0
                    if status != 200:
                        time.sleep(0.1)  # the refetch is rate-limited (0.5 s here)
            assert accepted == 10, "the workers never accepted the new key's tokens"
        finally:
            stop.set()
            runner.join(10)
        assert set(answers) == {200} and answers[200] > 0, answers
    assert_clean_stop(server)


def _kid(token: str) -> str:
    import base64

    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


@pytest.fixture
def redis_settings() -> dict[str, Any]:
    require_service("redis")
    return {"store": REDIS_URL, "namespace": fresh_namespace(), "issuer": "http://127.0.0.1:9",
            "dev": True, "password_time_cost": 1, "password_memory_kib": 1024}


@pytest.mark.parametrize("workers", ["sync", "gthread"])
def test_revocation_pushed_to_gunicorn_workers(
    redis_settings: dict[str, Any], tmp_path: Path, workers: str
) -> None:
    """The sessions app on the service's Redis store: revoking the user at the service
    (``AuthState.revoke_user``, published on the Redis bus) reaches every worker's local
    revocation copy; the next request is refused. Measured from the revoke call's return
    to the first refused request; asserted within ``PUSH_BUDGET``.

    The workers run with ``bus_fallback=reject``: a worker whose bus were not connected
    would answer 503 instead of reading the store, so each 200 before the revocation
    proves it checks revocation from its pushed local copy."""
    env = {f"AUTHSTATE_{k.upper()}": str(v) for k, v in redis_settings.items()}
    env["AUTHSTATE_BUS_FALLBACK"] = "reject"
    with Portal(name="authstate-test-service") as portal, gunicorn(
        "flask_app:create_session_app()", chdir=EXAMPLES, env=env,
        log=tmp_path / "gunicorn.log", workers=workers,
    ) as server:
        sync = SyncAuthState(Settings(**redis_settings), portal=portal)
        user = sync.add_user("pia@example.com", PASSWORD, via="test")
        login = sync.login("pia@example.com", PASSWORD, ip=None, user_agent=None)
        token, _ = sync.issue_for_session(login.session)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for _ in range(40):  # every worker (and thread) has opened its AuthState
                assert http.get("/me", headers=bearer(token)).status_code == 200
            sync.revoke_user(user.id)
            revoked_at = time.monotonic()
            deadline = revoked_at + PUSH_BUDGET
            status = 200
            while status == 200 and time.monotonic() < deadline:
                status = http.get("/me", headers=bearer(token)).status_code
            elapsed = time.monotonic() - revoked_at
            assert status == 401, f"still accepted {PUSH_BUDGET} s after the revocation"
            print(f"\n[{workers}] revocation seen by a gunicorn worker after {elapsed * 1000:.1f} ms")
            refused = 0  # and every other worker and thread too, within the budget
            while refused < 40 and time.monotonic() < deadline:
                refused = refused + 1 if http.get("/me", headers=bearer(token)).status_code == 401 else 0
            assert refused == 40
        sync.close()
    assert_clean_stop(server)


def test_preload_forks_a_live_portal_and_each_worker_starts_its_own(
    redis_settings: dict[str, Any], tmp_path: Path
) -> None:
    """``--preload``: the app used authstate in the master (its portal thread running, its
    AuthState open on Redis) before gunicorn forked. Each worker starts a fresh portal and
    opens its own AuthState; tokens verify, revocation still reaches them."""
    env = {f"AUTHSTATE_{k.upper()}": str(v) for k, v in redis_settings.items()}
    env["AUTHSTATE_BUS_FALLBACK"] = "reject"
    with Portal(name="authstate-test-service") as portal, gunicorn(
        "tests.sync.preload_app:application", chdir=Path(__file__).resolve().parents[2],
        env=env, log=tmp_path / "gunicorn.log", workers="preload",
    ) as server:
        sync = SyncAuthState(Settings(**redis_settings), portal=portal)
        user = sync.add_user("pre@example.com", PASSWORD, via="test")
        login = sync.login("pre@example.com", PASSWORD, ip=None, user_agent=None)
        token, _ = sync.issue_for_session(login.session)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            answers = [http.get("/me", headers=bearer(token)) for _ in range(40)]
            assert {a.status_code for a in answers} == {200}, answers[0].text
            pids = {a.json()["pid"] for a in answers}
            assert answers[0].json()["master"] not in pids and answers[0].json()["store"] == "redis"
            sync.revoke_user(user.id)
            deadline = time.monotonic() + PUSH_BUDGET
            refused = 0
            while refused < 40 and time.monotonic() < deadline:
                refused = refused + 1 if http.get("/me", headers=bearer(token)).status_code == 401 else 0
            assert refused == 40
        sync.close()
    assert_clean_stop(server)
