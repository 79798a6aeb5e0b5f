"""What lazy loading saves: requests/s of ``SessionMiddleware`` with ``autoload=True`` (the
drop-in, one store read per request carrying the cookie) against ``autoload=False``.

    .venv/bin/python benchmarks/app_sessions_lazy.py [--requests 2000] [--rounds 3]
        [--redis redis://127.0.0.1:6379/0] [--postgres postgresql://postgres@127.0.0.1:5432/test]

Every request carries the cookie of an existing visitor session. Two views: ``/nothing``
never touches the session (a health check, an API route), ``/read`` returns
``session.get("n")`` (after ``await request.session.load()`` in the lazy app). The floor
is the same Starlette app with no session middleware at all. Same in-process ASGI driver
as ``app_sessions.py``; each round runs every variant, the order rotating; medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_sessions import POSTGRES, REDIS, AsgiDriver, first_cookie


def app(state: Any, autoload: bool | None) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from authstate.web.session_middleware import SessionMiddleware

    async def nothing(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def read(request: Request) -> JSONResponse:
        if autoload is False:
            await request.session.load()
        return JSONResponse({"n": request.session.get("n")})

    async def write(request: Request) -> JSONResponse:
        request.session["n"] = 1
        return JSONResponse({"n": 1})

    routes = [Route("/nothing", nothing), Route("/read", read),
              Route("/write", write, methods=["POST"])]
    application = Starlette(routes=routes)
    if autoload is not None:
        application.add_middleware(SessionMiddleware, state=state, autoload=autoload)
    return application


def rate(drive: AsgiDriver, path: str, cookie: str, requests: int) -> float:
    for _ in range(50):  # warm up
        drive(path, cookie)
    start = time.perf_counter()
    for _ in range(requests):
        status, _ = drive(path, cookie)
    assert status == 200, status
    return requests / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis", default=REDIS)
    parser.add_argument("--postgres", default=POSTGRES)
    args = parser.parse_args()

    from authstate.config import Settings
    from authstate.state import AuthState
    from authstate.stores import open_store

    loop = asyncio.new_event_loop()
    variants: dict[str, tuple[AsgiDriver, str, tuple[str, ...]]] = {}
    states = []
    for name, url in (("redis", args.redis), ("postgres", args.postgres)):
        settings = Settings.from_flat(store=url, namespace="b" + uuid.uuid4().hex[:12], dev=True)
        state = loop.run_until_complete(AuthState.open(settings))
        states.append(state)
        eager = AsgiDriver(app(state, True), loop)
        status, set_cookie = eager("/write", "")
        cookie = first_cookie(set_cookie)
        assert status == 200 and cookie, (status, set_cookie)
        variants[f"{name} autoload=True"] = (eager, cookie, ("nothing", "read"))
        variants[f"{name} autoload=False"] = (
            AsgiDriver(app(state, False), loop), cookie, ("nothing", "read"))
    variants["no session middleware"] = (AsgiDriver(app(None, None), loop), "", ("nothing",))

    runs: dict[str, dict[str, list[float]]] = {n: {} for n in variants}
    try:
        names = list(variants)
        for round_ in range(args.rounds):
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                drive, cookie, paths = variants[name]
                for path in paths:
                    runs[name].setdefault(path, []).append(
                        rate(drive, "/" + path, cookie, args.requests))
    finally:
        async def close() -> None:
            for state in states:
                await state.close()
                store = await open_store(state.settings.store.url,
                                         namespace=state.settings.store.namespace)
                await store.drop_namespace()  # type: ignore[attr-defined]
                await store.close()
        loop.run_until_complete(close())
        loop.close()

    median = {n: {p: statistics.median(r) for p, r in paths.items()} for n, paths in runs.items()}
    print(f"{'variant':24} {'/nothing req/s':>15} {'/read req/s':>12}  {'/nothing lazy vs eager':>23}")
    for name, rates in median.items():
        ratio = ""
        if name.endswith("autoload=False"):
            eager_rate = median[name.replace("False", "True")]["nothing"]
            ratio = f"{rates['nothing'] / eager_rate:.2f}x"
        read = f"{rates['read']:12.0f}" if "read" in rates else f"{'':12}"
        print(f"{name:24} {rates['nothing']:15.0f} {read}  {ratio:>23}")


if __name__ == "__main__":
    main()
