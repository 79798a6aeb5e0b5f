"""Requests/s of an app's session: authstate's against each framework's own choice.

    .venv/bin/python benchmarks/app_sessions.py [--requests 2000] [--rounds 3] [--json]
        [--redis redis://127.0.0.1:6379/0] [--postgres postgresql://postgres@127.0.0.1:5432/test]

Two views per app, both touching the session of a visitor who already has one:
``/read`` returns ``session.get("n")``, ``/write`` sets ``session["n"] += 1`` (a store
write every request). The apps are driven in-process, one request after another, by the
same driver for both sides of each comparison (an ASGI call for Starlette, a WSGI call
for Django and Flask: the whole framework stack, no network to the app), so the numbers
are the session machinery plus the framework, not a load generator.

- **Starlette**: its signed-cookie ``SessionMiddleware`` (no store: the floor) against
  ``authstate.web.session_middleware.SessionMiddleware`` on Redis and on PostgreSQL.
- **Django**: the ``cache`` engine on Redis (``RedisCache``), the ``db`` engine and the
  ``cached_db`` engine on PostgreSQL (its cache on the same Redis), against
  ``SESSION_ENGINE = "authstate.django.sessions"`` on Redis and on PostgreSQL, behind
  authstate's ``SessionMiddleware`` (as the README sets it up: Django's, plus the 503 of
  an outage). authstate reaches its store through the sync portal (one thread hop per
  store call).
- **Flask**: Flask-Session on Redis against ``authstate.flask.ServerSideSessions`` on
  Redis and on PostgreSQL.

Each round runs every variant (the order rotating each round); the table gives the
median requests/s over rounds and, for authstate, the ratio to the framework's own
server-side engine on the same store (the issue's goal for reads: within 1.2x).
Everything authstate does by default is on: hashed IDs, the device entry, the idle
expiry slide (at most one write a minute), the per-key merge of writes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

REDIS = "redis://127.0.0.1:6379/0"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"

Driver = Callable[[str, str], tuple[int, str | None]]  # (path, cookie) -> (status, set-cookie)


def first_cookie(header: str | None) -> str | None:
    return header.split(";", 1)[0] if header else None


def measure(drive: Driver, requests: int) -> dict[str, float]:
    """Create the session with one write, then time ``requests`` reads and writes."""
    status, set_cookie = drive("/write", "")
    cookie = first_cookie(set_cookie)
    assert status == 200 and cookie, (status, set_cookie)
    out = {}
    for path in ("/read", "/write"):
        for _ in range(50):  # warm up
            drive(path, cookie)
        start = time.perf_counter()
        for _ in range(requests):
            status, fresh = drive(path, cookie)
            if fresh and path == "/write" and "=" in fresh:  # the signed cookie changes
                cookie = first_cookie(fresh) or cookie
        out[path.strip("/")] = requests / (time.perf_counter() - start)
        assert status == 200, status
    return out


# -- ASGI ------------------------------------------------------------------------------


class AsgiDriver:
    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.app, self.loop = app, loop

    async def _call(self, path: str, cookie: str) -> tuple[int, str | None]:
        headers = [(b"host", b"bench")]
        if cookie:
            headers.append((b"cookie", cookie.encode()))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST" if path == "/write" else "GET", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": headers, "client": ("127.0.0.1", 50000), "server": ("bench", 80),
        }
        result: dict[str, Any] = {}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                result["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name == b"set-cookie":
                        result["cookie"] = value.decode("latin-1")

        await self.app(scope, receive, send)
        return result["status"], result.get("cookie")

    def __call__(self, path: str, cookie: str) -> tuple[int, str | None]:
        return self.loop.run_until_complete(self._call(path, cookie))


def starlette_app(middleware: Any, **options: Any) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def read(request: Request) -> JSONResponse:
        return JSONResponse({"n": request.session.get("n")})

    async def write(request: Request) -> JSONResponse:
        request.session["n"] = request.session.get("n", 0) + 1
        return JSONResponse({"n": request.session["n"]})

    app = Starlette(routes=[Route("/read", read), Route("/write", write, methods=["POST"])])
    app.add_middleware(middleware, **options)
    return app


def asgi_variants(args: argparse.Namespace, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    from starlette.middleware.sessions import SessionMiddleware as CookieSessions

    from authstate.config import Settings
    from authstate.state import AuthState
    from authstate.web.session_middleware import SessionMiddleware

    variants: dict[str, Any] = {
        "starlette signed cookie": AsgiDriver(
            starlette_app(CookieSessions, secret_key="bench-secret-" + "x" * 32), loop),
    }
    states = []
    for name, url in (("redis", args.redis), ("postgres", args.postgres)):
        settings = Settings.from_flat(store=url, namespace="b" + uuid.uuid4().hex[:12], dev=True)
        state = loop.run_until_complete(AuthState.open(settings))
        states.append(state)
        variants[f"authstate {name}"] = AsgiDriver(
            starlette_app(SessionMiddleware, state=state), loop)

    async def close() -> None:
        from authstate.stores import open_store

        for state in states:
            with contextlib.suppress(TimeoutError):  # the process ends anyway
                await asyncio.wait_for(state.close(), 5)
            store = await open_store(state.settings.store.url, namespace=state.settings.store.namespace)
            await store.drop_namespace()  # type: ignore[attr-defined]
            await store.close()

    variants["_close"] = lambda: loop.run_until_complete(close())
    return variants


# -- WSGI (Django, Flask) -------------------------------------------------------------------


class WsgiDriver:
    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, path: str, cookie: str) -> tuple[int, str | None]:
        environ = {
            "REQUEST_METHOD": "POST" if path == "/write" else "GET", "PATH_INFO": path,
            "QUERY_STRING": "", "SERVER_NAME": "bench", "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "bench", "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_LENGTH": "0", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
            "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": True,
            "wsgi.multiprocess": False, "wsgi.run_once": False,
        }
        if cookie:
            environ["HTTP_COOKIE"] = cookie
        seen: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
            seen["status"] = int(status.split()[0])
            for name, value in headers:
                if name.lower() == "set-cookie":
                    seen["cookie"] = value
            return lambda data: None

        body = self.app(environ, start_response)
        try:
            for _ in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return seen["status"], seen.get("cookie")


def django_variants(args: argparse.Namespace) -> dict[str, Any]:
    import django
    import psycopg
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command
    from django.test import override_settings

    from authstate.config import Settings
    from authstate.sync import SyncAuthState

    schema = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    pg = psycopg.conninfo.conninfo_to_dict(args.postgres)
    settings.configure(
        SECRET_KEY="bench", ALLOWED_HOSTS=["*"], USE_TZ=True, ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.sessions"],
        DATABASES={"default": {
            "ENGINE": "django.db.backends.postgresql", "NAME": pg.get("dbname"),
            "USER": pg.get("user"), "HOST": pg.get("host"), "PORT": pg.get("port", 5432),
            "OPTIONS": {"options": f"-c search_path={schema}"}, "CONN_MAX_AGE": None,
        }},
        CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                            "LOCATION": args.redis, "KEY_PREFIX": schema}},
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
    )
    django.setup()
    global urlpatterns
    urlpatterns = _urls()
    call_command("migrate", "sessions", verbosity=0)
    syncs = {url: SyncAuthState(Settings.from_flat(store=url, namespace="b" + uuid.uuid4().hex[:12],
                                         dev=True))
             for url in (args.redis, args.postgres)}
    engines = {
        "django cache (redis)": ("django.contrib.sessions.backends.cache", None),
        "django db (postgres)": ("django.contrib.sessions.backends.db", None),
        "django cached_db (postgres+redis)": ("django.contrib.sessions.backends.cached_db", None),
        "authstate redis": ("authstate.django.sessions", syncs[args.redis]),
        "authstate postgres": ("authstate.django.sessions", syncs[args.postgres]),
    }
    variants: dict[str, Any] = {}
    for name, (engine, sync) in engines.items():
        extra: dict[str, Any] = {} if sync is None else {
            "AUTHSTATE": sync, "MIDDLEWARE": ["authstate.django.sessions.SessionMiddleware"]}
        overrides = override_settings(SESSION_ENGINE=engine, **extra)
        overrides.enable()
        variants[name] = WsgiDriver(WSGIHandler())
        overrides.disable()
        variants[name].overrides = override_settings(SESSION_ENGINE=engine, **extra)

    def close() -> None:
        from django.db import connections

        for sync in syncs.values():
            drop = getattr(sync.state.store, "drop_namespace", None)
            if drop is not None:
                sync.portal.call(drop)
            sync.close()
        connections.close_all()
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')

    variants["_close"] = close
    return variants


def django_read(request: Any) -> Any:
    from django.http import JsonResponse

    return JsonResponse({"n": request.session.get("n")})


def django_write(request: Any) -> Any:
    from django.http import JsonResponse

    request.session["n"] = request.session.get("n", 0) + 1
    return JsonResponse({"n": request.session["n"]})


def _urls() -> list[Any]:
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    return [path("read", django_read), path("write", csrf_exempt(django_write))]


def flask_app(configure: Callable[[Any], None]) -> Any:
    from flask import Flask, jsonify, session

    app = Flask(__name__)
    app.secret_key = "bench-secret"

    @app.get("/read")
    def read() -> Any:
        return jsonify({"n": session.get("n")})

    @app.post("/write")
    def write() -> Any:
        session["n"] = session.get("n", 0) + 1
        return jsonify({"n": session["n"]})

    configure(app)
    return app


def flask_variants(args: argparse.Namespace) -> dict[str, Any]:
    import redis
    from flask_session import Session

    from authstate.config import Settings
    from authstate.flask import ServerSideSessions
    from authstate.sync import SyncAuthState

    prefix = "bench:" + uuid.uuid4().hex[:10] + ":"
    client = redis.Redis.from_url(args.redis)

    def flask_session(app: Any) -> None:
        app.config.update(SESSION_TYPE="redis", SESSION_REDIS=client, SESSION_KEY_PREFIX=prefix)
        Session(app)

    syncs = {name: SyncAuthState(Settings.from_flat(store=url, namespace="b" + uuid.uuid4().hex[:12],
                                          dev=True))
             for name, url in (("redis", args.redis), ("postgres", args.postgres))}
    variants: dict[str, Any] = {"flask-session (redis)": WsgiDriver(flask_app(flask_session))}
    for name, sync in syncs.items():
        interface = ServerSideSessions(sync)
        variants[f"authstate {name}"] = WsgiDriver(
            flask_app(lambda app, i=interface: i.init_app(app)))

    def close() -> None:
        for key in client.scan_iter(prefix + "*"):
            client.delete(key)
        for sync in syncs.values():
            drop = getattr(sync.state.store, "drop_namespace", None)
            if drop is not None:
                sync.portal.call(drop)
            sync.close()

    variants["_close"] = close
    return variants


PEERS = {  # authstate variant -> the framework's server-side engine on the same store
    ("django", "authstate redis"): "django cache (redis)",
    ("django", "authstate postgres"): "django db (postgres)",
    ("flask", "authstate redis"): "flask-session (redis)",
}


def run(args: argparse.Namespace) -> dict[str, dict[str, list[dict[str, float]]]]:
    loop = asyncio.new_event_loop()
    frameworks = {
        "starlette": asgi_variants(args, loop),
        "django": django_variants(args),
        "flask": flask_variants(args),
    }
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    try:
        for framework, variants in frameworks.items():
            names = [n for n in variants if n != "_close"]
            results[framework] = {n: [] for n in names}
            for round_ in range(args.rounds):
                order = names[round_ % len(names):] + names[:round_ % len(names)]
                for name in order:
                    drive = variants[name]
                    overrides = getattr(drive, "overrides", None)
                    if overrides is not None:
                        overrides.enable()
                    try:
                        results[framework][name].append(measure(drive, args.requests))
                    finally:
                        if overrides is not None:
                            overrides.disable()
    except BaseException:
        import traceback

        traceback.print_exc()
        raise
    finally:
        for variants in frameworks.values():
            variants["_close"]()
        loop.close()
    return results


def report(results: dict[str, dict[str, list[dict[str, float]]]], as_json: bool) -> None:
    table = {
        framework: {
            name: {view: statistics.median(r[view] for r in runs) for view in ("read", "write")}
            for name, runs in variants.items()
        }
        for framework, variants in results.items()
    }
    if as_json:
        print(json.dumps(table, indent=2))
        return
    print(f"{'framework':10} {'variant':36} {'read req/s':>11} {'write req/s':>12}  "
          f"{'read vs peer':>12} {'write vs peer':>13}")
    for framework, variants in table.items():
        for name, rates in variants.items():
            peer = PEERS.get((framework, name))
            ratios = ("", "")
            if peer is not None:
                ratios = tuple(  # type: ignore[assignment]
                    f"{variants[peer][v] / rates[v]:.2f}x slower" if rates[v] < variants[peer][v]
                    else f"{rates[v] / variants[peer][v]:.2f}x faster"
                    for v in ("read", "write"))
            print(f"{framework:10} {name:36} {rates['read']:11.0f} {rates['write']:12.0f}  "
                  f"{ratios[0]:>12} {ratios[1]:>13}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis", default=REDIS)
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report(run(args), args.json)


urlpatterns: list[Any] = []  # ROOT_URLCONF: filled in once Django is set up

if __name__ == "__main__":
    main()
