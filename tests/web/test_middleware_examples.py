"""The examples/ apps against a real ``authstate serve`` subprocess on a free port.

The service is set up as its README says, through the CLI (``users add``, ``clients
add``); tokens come from its token endpoint; the example app runs in-process and reaches
the service over TCP for the JWKS and for introspection, as another service would.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from authstate.state import AuthState
from tests.web.live_service import PASSWORD, LiveService, authstate_command, live_service

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EMAIL = "alice@example.com"
APP_URL = "http://orders.test"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"authstate_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def cli(service: LiveService, *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [*authstate_command(), *args, "--store", service.store], input=stdin, env=service.env,
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    with live_service(tmp_path_factory.mktemp("serve")) as running:
        cli(running, "users", "add", EMAIL, "--password-stdin", "--json", stdin=PASSWORD + "\n")
        client = json.loads(cli(running, "clients", "add", "orders-api", "--json"))
        running.env["TEST_CLIENT_ID"] = client["client_id"]
        running.env["TEST_CLIENT_SECRET"] = client["client_secret"]
        yield running


def token_pair(service: LiveService) -> dict[str, Any]:
    answer = httpx.post(f"{service.url}/oauth/token", data={
        "grant_type": "password", "username": EMAIL, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    pair: dict[str, Any] = answer.json()
    return pair


def app_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=APP_URL)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def example_app(service: LiveService, name: str, **overrides: Any) -> Any:
    module = load_example(name)
    options = {"client_id": service.env["TEST_CLIENT_ID"],
               "client_secret": service.env["TEST_CLIENT_SECRET"], **overrides}
    return module.create_app(service.url, **options)


@pytest.mark.parametrize("example", ["fastapi_app", "litestar_app"])
async def test_jwt_from_the_service_verified_by_jwks(service: LiveService, example: str) -> None:
    if example == "litestar_app":
        pytest.importorskip("litestar")
    pair = token_pair(service)
    async with app_client(example_app(service, example)) as http:
        me = await http.get("/me", headers=bearer(pair["access_token"]))
        assert me.status_code == 200, me.text
        assert me.json()["method"] == "jwt" and me.json()["user"].startswith("u_")
        assert (await http.get("/", headers=bearer(pair["access_token"]))).json() == {
            "hello": me.json()["user"]}
        assert (await http.get("/")).json() == {"hello": "stranger"}

        anonymous = await http.get("/me")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith('Bearer realm="authstate"')
        tampered = pair["access_token"][:-4] + ("AAAA" if not pair["access_token"].endswith("AAAA") else "BBBB")
        refused = await http.get("/me", headers=bearer(tampered))
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        assert (await http.get("/orders", headers=bearer(pair["access_token"]))).status_code == 403

        # a refresh token is "active" at the introspection endpoint, but it is no access token
        assert (await http.get("/me", headers=bearer(pair["refresh_token"]))).status_code == 401


async def test_opaque_token_by_introspection_and_its_revocation(service: LiveService) -> None:
    async def issue(state: AuthState) -> str:
        user = await state.users.by_email(EMAIL)
        assert user is not None
        token, _ = await state.opaque.issue(user.id, scope=("orders:read",))
        return token

    opaque = await service.aseed(issue)
    async with app_client(example_app(service, "fastapi_app")) as http:
        me = await http.get("/me", headers=bearer(opaque))
        assert me.status_code == 200, me.text
        assert (me.json()["method"], me.json()["scope"]) == ("opaque", ["orders:read"])
        assert (await http.get("/orders", headers=bearer(opaque))).status_code == 200

        revoked = httpx.post(f"{service.url}/oauth/revoke", data={"token": opaque},
                             auth=(service.env["TEST_CLIENT_ID"], service.env["TEST_CLIENT_SECRET"]))
        assert revoked.status_code == 200
        assert (await http.get("/me", headers=bearer(opaque))).status_code == 401, \
            "introspection sees the revocation at once"


async def test_introspection_failures_fail_closed(service: LiveService) -> None:
    opaque = "at_" + "A" * 43
    wrong_secret = example_app(service, "fastapi_app", client_secret="not-the-secret")
    async with app_client(wrong_secret) as http:
        answer = await http.get("/me", headers=bearer(opaque))
        assert answer.status_code == 503, "a refused client is an outage, not an anonymous caller"
    module = load_example("fastapi_app")
    with socket_closed() as port:
        down = module.create_app(f"http://127.0.0.1:{port}", client_id="c", client_secret="s")
        async with app_client(down) as http:
            assert (await http.get("/me", headers=bearer(opaque))).status_code == 503
            assert (await http.get("/")).json() == {"hello": "stranger"}


class socket_closed:
    """A 127.0.0.1 port with nothing listening on it."""

    def __enter__(self) -> int:
        from tests.web.live_service import free_port

        return free_port()

    def __exit__(self, *exc: object) -> None:
        return None
