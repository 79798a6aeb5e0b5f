"""The bench's HTTP server process: ``python -m authstate.bench.server``.

It reads one JSON line on stdin (the model list, the namespace, settings overrides),
opens the same stores the bench process opened, mints its own credentials for the bench
user, binds a free port on 127.0.0.1, prints one JSON line (port, credentials, paths,
skipped models) and serves until terminated. Each model answers on its own path with
200 when the request's credential authenticates and 401 when it does not.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Literal

from authstate.bench.models import (
    BENCH_CLIENT,
    Model,
    ModelSpec,
    ServiceInfo,
    Unavailable,
    Workshop,
)
from authstate.config import load_settings
from authstate.web.middleware import AuthMiddleware

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def protected(scope: Scope, receive: Receive, send: Send) -> None:
    """The endpoint behind the middleware: 200 for a signed-in caller, 401 otherwise."""
    user = scope.get("user")
    if user is not None and user.is_authenticated:
        await _answer(send, 200, b"ok")
    else:
        await _answer(send, 401, b"no")


class BenchApp:
    """A pure ASGI app: ``GET /m/<n>`` is the protected endpoint behind
    ``AuthMiddleware`` with model ``n``'s authenticator; ``POST /revoke/<n>`` revokes the
    credential in the body (for stores only this process sees); ``GET /arrivals/<n>``
    says when pushed revocations reached this process."""

    def __init__(self, models: list[Model]) -> None:
        self.models = models
        self.guarded = [
            AuthMiddleware(protected, authenticators=[m.authenticator()]) for m in models
        ]
        self.arrivals: list[dict[str, float]] = [{} for _ in models]
        for model, arrivals in zip(models, self.arrivals, strict=True):
            if model.revocation_kind == "push":
                model.state.revocation.on_event.append(_recorder(arrivals))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        kind, _, index = scope["path"].strip("/").partition("/")
        if not index.isdigit() or int(index) >= len(self.models):
            await _answer(send, 404, b"unknown model")
        elif kind == "arrivals":
            await _answer(send, 200, json.dumps(self.arrivals[int(index)]).encode())
        elif kind == "revoke" and scope["method"] == "POST":
            body = await _body(receive)
            await self.models[int(index)].revoke(body.decode("ascii"))
            await _answer(send, 200, b"revoked")
        else:
            await self.guarded[int(index)](scope, receive, send)


def _recorder(arrivals: dict[str, float]) -> Callable[[Mapping[str, Any]], None]:
    """Note when each pushed revocation reached this process, on the system-wide
    monotonic clock that the bench process reads too."""

    def record(event: Mapping[str, Any]) -> None:
        if event.get("t") == "jti":
            arrivals[str(event.get("jti"))] = time.monotonic()

    return record


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _listener() -> socket.socket:
    # proto given explicitly: asyncio sets TCP_NODELAY only on IPPROTO_TCP sockets, and
    # without it keep-alive answers wait 40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    return sock


def _server(app: Any, *, lifespan: Literal["on", "off"]) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan=lifespan)
    return uvicorn.Server(config)


async def serve(request: dict[str, Any]) -> None:
    settings = load_settings(env=os.environ, **request["overrides"])
    workshop = Workshop(
        settings, namespace=request["namespace"], algorithm=request["algorithm"]
    )
    specs = [ModelSpec(**raw) for raw in request["specs"]]
    servers: list[tuple[Any, socket.socket]] = []
    service: dict[str, str] | None = None
    wanted = next((s for s in specs if s.family == "opaque+introspection"), None)
    if wanted is not None:
        from authstate.web.app import create_app

        state = await workshop.state(wanted.store, wanted.family)
        client, secret = await state.clients.create(BENCH_CLIENT)
        assert secret is not None  # a confidential client
        sock = _listener()
        servers.append((_server(create_app(state), lifespan="on"), sock))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/oauth/introspect"
        workshop.service = ServiceInfo(url, client.id, secret)
        service = {"url": url, "client_id": client.id, "client_secret": secret}
    models: list[Model] = []
    credentials: dict[str, list[str]] = {}
    paths: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for spec in specs:
        try:
            model = await workshop.build(spec)
        except Unavailable as reason:
            skipped[spec.name] = str(reason)
            continue
        paths[spec.name] = f"/m/{len(models)}"
        models.append(model)
        credentials[spec.name] = [await model.issue() for _ in range(1 + request["spares"])]
    sock = _listener()
    servers.insert(0, (_server(BenchApp(models), lifespan="off"), sock))
    hello = {
        "port": sock.getsockname()[1],
        "credentials": credentials,
        "paths": paths,
        "skipped": skipped,
        "service": service,
    }
    sys.stdout.write(json.dumps(hello) + "\n")
    sys.stdout.flush()
    try:
        await asyncio.gather(*(server.serve(sockets=[s]) for server, s in servers))
    finally:
        await workshop.close()


def main() -> None:
    asyncio.run(serve(json.loads(sys.stdin.readline())))


if __name__ == "__main__":
    main()
