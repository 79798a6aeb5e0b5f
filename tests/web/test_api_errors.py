"""Bad input and faults: always a 4xx/503 problem document, never a 500 with a traceback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.web.api import PASSWORD, Api, running


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running(max_body_bytes=4096) as api:
        yield api


def assert_problem(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["code"] == code
    assert body["type"] == f"urn:authstate:problem:{code}" and body["title"]
    assert "Traceback" not in response.text
    return body


async def test_oversized_body_by_content_length(api: Api) -> None:
    r = await api.client.post("/auth/login", content=b"{" + b" " * 5000 + b"}",
                              headers={"Content-Type": "application/json"})
    assert_problem(r, 413, "body_too_large")


async def test_oversized_body_streamed_without_length(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    r = await api.client.post("/auth/login", content=chunks(), headers={"Content-Type": "application/json"})
    assert_problem(r, 413, "body_too_large")


async def test_oversized_form_on_the_oauth_endpoint(api: Api) -> None:
    r = await api.client.post("/oauth/token", data={"grant_type": "password", "username": "x" * 6000})
    assert r.status_code == 413


async def test_wrong_content_type(api: Api) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        r = await api.client.post("/auth/login", content=b'{"email":"a@b.c","password":"xxxxxxxx"}',
                                  headers={"Content-Type": content_type})
        assert_problem(r, 415, "unsupported_media_type")
    no_type = await api.client.post("/auth/login", content=b'{"email":"a@b.c","password":"xxxxxxxx"}')
    assert_problem(no_type, 415, "unsupported_media_type")


async def test_invalid_json(api: Api) -> None:
    for body in (b"{", b'{"email": }', b"\xff\xfe", b"[1,2"):
        r = await api.client.post("/auth/login", content=body, headers={"Content-Type": "application/json"})
        assert_problem(r, 400, "invalid_json")


async def test_missing_and_wrong_fields_never_echo_the_input(api: Api) -> None:
    secret = "my secret password that must not echo"
    cases = [
        {"email": "a@example.com"},
        {"password": secret},
        {"email": 5, "password": secret},
        {"email": "a@example.com", "password": secret, "extra": True},
        {"email": "a@example.com", "password": ["list", secret]},
        [secret],
        "a string",
    ]
    for payload in cases:
        r = await api.client.post("/auth/login", json=payload)
        body = assert_problem(r, 422, "validation_failed")
        assert body["errors"] and all({"loc", "msg", "type"} == e.keys() for e in body["errors"])
        assert secret not in r.text


async def test_oversized_fields_are_refused_before_hashing(api: Api) -> None:
    r = await api.client.post("/auth/login", json={"email": "a@example.com", "password": "x" * 2000})
    assert r.status_code in (413, 422)


async def test_unknown_path_and_wrong_method(api: Api) -> None:
    assert_problem(await api.client.get("/nope"), 404, "not_found")
    r = await api.client.get("/auth/login")
    assert_problem(r, 405, "method_not_allowed")
    assert "POST" in r.headers["allow"]


async def test_an_unexpected_bug_is_a_bare_500_problem() -> None:
    async with running(raise_app_exceptions=False) as api:
        app = api.transport.app

        async def boom() -> None:
            raise RuntimeError("internal detail with a secret-looking value")

        app.add_api_route("/boom", boom)  # type: ignore[attr-defined]
        r = await api.client.get("/boom")
        body = assert_problem(r, 500, "internal_error")
        assert "secret-looking" not in r.text and "RuntimeError" not in r.text
        assert body["detail"] == "an internal error occurred"


async def test_openapi_document_is_served(api: Api) -> None:
    r = await api.client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in ("/auth/login", "/auth/logout", "/auth/me", "/auth/sessions", "/auth/sessions/{handle}",
                 "/auth/sessions/revoke-others", "/auth/password", "/auth/token", "/oauth/token",
                 "/oauth/introspect", "/oauth/revoke", "/.well-known/jwks.json",
                 "/.well-known/oauth-authorization-server", "/admin/users/{user_id}/revoke", "/healthz"):
        assert path in paths, path


async def test_healthz_ok(api: Api) -> None:
    r = await api.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "store": "memory"}


# -- a real store going away -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_server() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


async def test_store_outage_fails_closed_with_503(redis_server: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, port = redis_server
    async with running(store=f"redis://127.0.0.1:{port}/0") as api:
        await api.add_user("alice@example.com")
        csrf = await api.login("alice@example.com")
        token = (await api.client.post("/auth/token", headers={"X-CSRF-Token": csrf})).json()["access_token"]
        assert (await api.client.get("/healthz")).status_code == 200

        proc.kill()
        proc.wait(5)
        started = time.monotonic()
        health = await api.client.get("/healthz")
        assert_problem(health, 503, "store_unavailable")
        me = await api.client.get("/auth/me")
        assert_problem(me, 503, "store_unavailable")  # an outage is not a logout (was 401)
        assert me.headers["retry-after"] and "set-cookie" not in me.headers
        login = await api.client.post("/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
        assert login.status_code == 503 and "Traceback" not in login.text
        async with api.new_client() as fresh:
            by_token = await fresh.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert by_token.status_code == 503 and by_token.headers["retry-after"]
        assert time.monotonic() - started < 10


def test_the_status_table_covers_every_error_code() -> None:
    import inspect

    from authstate import errors
    from authstate.web.problems import status_for

    expected = {
        "throttled": 429, "conflict": 409, "invalid_input": 422, "authentication_failed": 401,
        "session_not_found": 401, "token_expired": 401, "token_revoked": 401, "bad_signature": 401,
        "invalid_grant": 400, "refresh_reused": 400, "store_unavailable": 503,
        "bus_unavailable": 503, "csrf_failed": 403, "configuration_error": 500,
    }
    seen = {}
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, errors.AuthstateError):
            seen[cls.code] = status_for(cls.__new__(cls))
    assert {code: seen[code] for code in expected} == expected
    client_side = {c for c, s in seen.items() if s < 500}
    assert all(400 <= s < 600 for s in seen.values())
    assert {"token_expired", "malformed_token", "invalid_audience"} <= client_side
