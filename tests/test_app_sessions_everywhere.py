"""A framework session once its visitor logs in, for all three adapters (ASGI, Django,
Flask): it is the user's session like any other, listed by ``authstate sessions list``
(and, for the ASGI app sharing the service's cookie, by ``GET /auth/sessions``), and
revoking it from the account page ends the app's session at once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from authstate import csrf
from authstate.cli import app as cli
from authstate.clock import FrozenClock
from authstate.state import AuthState
from authstate.web.app import create_app
from authstate.web.session_middleware import SessionMiddleware
from tests.sync_sessions import sync_state_on
from tests.web.api import BASE, PASSWORD, api_settings

EMAIL = "eve@example.com"
runner = CliRunner()


def cli_list(url: str, user_id: str) -> list[dict[str, Any]]:
    listed = runner.invoke(cli, ["sessions", "list", "--user", user_id, "--store", url, "--json"])
    assert listed.exit_code == 0, listed.output
    rows: list[dict[str, Any]] = json.loads(listed.stdout)
    return rows


def asgi_app(state: AuthState) -> Starlette:
    async def login(request: Request) -> Response:
        await request.session.login(EMAIL, PASSWORD)
        return JSONResponse({"csrf": request.session.csrf_token,
                             "handle": request.session.handle})

    async def write(request: Request) -> Response:
        request.session.update(await request.json())
        return JSONResponse(dict(request.session))

    async def read(request: Request) -> Response:
        return JSONResponse({"user": request.session.user_id, "data": dict(request.session)})

    app = Starlette(routes=[Route("/app/login", login, methods=["POST"]),
                           Route("/app/write", write, methods=["POST"]),
                           Route("/app/read", read)])
    app.add_middleware(SessionMiddleware, state=state)
    return app


async def test_asgi_session_in_the_service_and_the_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    state = await AuthState.open(api_settings(store=url, dev=True))
    try:
        user = await state.users.create(EMAIL, PASSWORD)
        app_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi_app(state)),
                                       base_url=BASE)
        service = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(state)),
                                    base_url=BASE)
        async with app_client, service:
            await app_client.post("/app/write", json={"cart": ["book"]})
            logged = (await app_client.post("/app/login")).json()
            service.cookies.update(app_client.cookies)  # the same browser, the same cookie
            listed = (await service.get("/auth/sessions")).json()["sessions"]
            assert [(s["id"], s["current"]) for s in listed] == [(logged["handle"], True)]
            rows = await asyncio.to_thread(cli_list, url, user.id)
            assert [r["handle"] for r in rows] == [logged["handle"]]
            revoked = await service.post(
                f"/account/sessions/{logged['handle']}/revoke",
                data={csrf.FORM_FIELD: logged["csrf"]}, headers={"Origin": BASE},
            )
            assert revoked.status_code in (200, 303), revoked.text
            assert (await app_client.get("/app/read")).json() == {"user": None, "data": {}}
            assert await asyncio.to_thread(cli_list, url, user.id) == []
    finally:
        await state.close()


def test_django_session_listed_and_revoked(clock: FrozenClock, tmp_path: Path) -> None:
    from django.test import Client, override_settings

    from tests import test_django_sessions as django_app

    django_app.setup_django()
    with sync_state_on("sqlite", clock, tmp_path) as sync, override_settings(
        AUTHSTATE=sync, SESSION_ENGINE="authstate.django.sessions",
        ROOT_URLCONF=django_app.__name__,
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
    ):
        user = sync.call(lambda state: state.users.create(EMAIL, PASSWORD))
        client = Client()
        django_app.post(client, "/write", {"cart": ["book"]})
        django_app.post(client, "/login", {"email": EMAIL, "password": PASSWORD})
        [row] = cli_list(f"sqlite:///{tmp_path / 'authstate.db'}", user.id)
        assert sync.end_session(user.id, row["handle"]) is not None  # the account page's call
        assert client.get("/read").json() == {}


def test_flask_session_listed_and_revoked(clock: FrozenClock, tmp_path: Path) -> None:
    from tests.test_flask_sessions import make_app

    with sync_state_on("sqlite", clock, tmp_path) as sync:
        user = sync.call(lambda state: state.users.create(EMAIL, PASSWORD))
        client = make_app(sync).test_client()
        client.post("/write", json={"cart": ["book"]})
        client.post("/login", json={"email": EMAIL, "password": PASSWORD})
        [row] = cli_list(f"sqlite:///{tmp_path / 'authstate.db'}", user.id)
        assert sync.end_session(user.id, row["handle"]) is not None
        assert client.get("/read").json == {}
