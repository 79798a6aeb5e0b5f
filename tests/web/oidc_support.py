"""Support for the OpenID Connect tests (not a test module): a real HTTP receiver for
back-channel logout tokens, and the checks a relying party makes on them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt

EVENT = "http://schemas.openid.net/event/backchannel-logout"


@dataclass
class Receiver:
    """What a relying party's back-channel endpoint received; it answers ``fail_first``
    requests with 500 before accepting."""

    url: str
    tokens: list[str] = field(default_factory=list)
    requests: int = 0
    fail_first: int = 0
    arrived: threading.Condition = field(default_factory=threading.Condition)
    release: threading.Event = field(default_factory=threading.Event)  # set: answer at once

    def wait_requests(self, count: int, timeout: float = 20.0) -> int:
        with self.arrived:
            self.arrived.wait_for(lambda: self.requests >= count, timeout)
        return self.requests

    def wait_for(self, count: int, timeout: float = 20.0) -> list[str]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.tokens) >= count, timeout)
        return list(self.tokens)


@contextmanager
def receiver(fail_first: int = 0, *, hold: bool = False) -> Iterator[Receiver]:
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got = box[0]
            body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
            got.release.wait(30)  # a slow relying party, until the test lets it answer
            with got.arrived:
                got.requests += 1
                if got.requests <= got.fail_first:
                    got.arrived.notify_all()
                    self.send_response(500)
                    self.end_headers()
                    return
                assert self.headers["content-type"].startswith("application/x-www-form-urlencoded")
                got.tokens.extend(parse_qs(body)["logout_token"])
                got.arrived.notify_all()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(f"http://127.0.0.1:{server.server_address[1]}/backchannel",
                        fail_first=fail_first))
    if not hold:
        box[0].release.set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        box[0].release.set()
        server.shutdown()
        server.server_close()


def check_logout_token(token: str, jwks: dict[str, Any], *, issuer: str,
                       client_id: str) -> dict[str, Any]:
    """Back-Channel Logout 1.0 §2.6 validation, as an RP does it, with PyJWT."""
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "logout+jwt"
    keys = jwt.PyJWKSet.from_dict(jwks)
    key = next(k for k in keys.keys if k.key_id == header["kid"])
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=[header["alg"]], audience=client_id, issuer=issuer,
        options={"require": ["iss", "aud", "iat", "exp", "jti"]},
    )
    assert claims["events"] == {EVENT: {}}
    assert "nonce" not in claims
    assert claims["sid"] and claims["sub"]
    return claims
