"""The token endpoint's grants per second on each store, through the HTTP app.

    .venv/bin/python benchmarks/oauth_token_endpoint.py [--requests 200]

For each store, sequential ``POST /oauth/token`` requests over httpx's ASGI transport
(the whole service stack, no socket) with ``client_secret_basic``:

- ``authorization_code``: one fresh code per request (issued beforehand, untimed), so
  each request checks the client, the code's bindings and PKCE, takes the code's one
  use (``incr_below``), starts a refresh family, signs an access token and notes what
  the code gave;
- ``refresh_token``: a chain of rotations of one family;
- ``password`` (legacy), beside them, with argon2 at its cheapest (t=1, 8 KiB): the
  argon2 cost, which dominates it at real settings, is excluded on purpose, to compare
  the grants' own work.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import httpx

from authstate.config import Settings
from authstate.oauth.authorization import AuthorizationRequest
from authstate.state import AuthState
from authstate.web.app import create_app

URLS = {
    "memory": "memory://",
    "sqlite": "sqlite:///{tmp}/bench_oauth.db",
    "redis": "redis://127.0.0.1:6379/0",
    "postgres": "postgresql://postgres@127.0.0.1:5432/test",
}
NAMESPACE = "bench_oauth"
REDIRECT = "https://app.example/callback"
PASSWORD = "correct horse battery staple"


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def _rate(n: int, step: object) -> float:
    assert callable(step)
    start = time.perf_counter()
    for i in range(n):
        await step(i)
    return n / (time.perf_counter() - start)


async def bench(name: str, url: str, n: int) -> tuple[str, ...] | None:
    settings = Settings.from_flat(store=url, namespace=NAMESPACE, push_revocation=False,
                        password_time_cost=1, password_memory_kib=8, password_parallelism=1,
                        issuer="http://bench")
    try:
        state = await AuthState.open(settings)
    except Exception as error:  # a benchmark skips an engine it cannot reach
        print(f"skipping {name}: {error}", file=sys.stderr)
        return None
    try:
        user = await state.users.create(f"bench-{secrets.token_hex(4)}@example.com", PASSWORD)
        client, secret = await state.add_client("bench", redirect_uris=(REDIRECT,),
                                                grant_types=("authorization_code",
                                                             "refresh_token", "password"),
                                                first_party=True)
        assert secret is not None
        auth = _basic(client.id, secret)
        _, session = await state.sessions.create(user.id)
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        request = AuthorizationRequest(client, REDIRECT, True, (), None, challenge, None)
        codes = [await state.authorize(request, session, user) for _ in range(n)]
        transport = httpx.ASGITransport(app=create_app(state))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            refresh = {"token": ""}

            async def exchange(i: int) -> None:
                r = await http.post("/oauth/token", headers=auth, data={
                    "grant_type": "authorization_code", "code": codes[i],
                    "redirect_uri": REDIRECT, "code_verifier": verifier})
                assert r.status_code == 200, r.text
                refresh["token"] = r.json()["refresh_token"]

            async def rotate(_: int) -> None:
                r = await http.post("/oauth/token", headers=auth, data={
                    "grant_type": "refresh_token", "refresh_token": refresh["token"]})
                assert r.status_code == 200, r.text
                refresh["token"] = r.json()["refresh_token"]

            async def password(_: int) -> None:
                r = await http.post("/oauth/token", headers=auth, data={
                    "grant_type": "password", "username": user.email, "password": PASSWORD})
                assert r.status_code == 200, r.text

            code_rate = await _rate(n, exchange)
            refresh_rate = await _rate(n, rotate)
            password_rate = await _rate(min(n, 100), password)  # throttle-free: successes
        return (name, f"{code_rate:,.0f}", f"{refresh_rate:,.0f}", f"{password_rate:,.0f}")
    finally:
        drop = getattr(state.store, "drop_namespace", None)
        if drop is not None:
            await drop()
        await state.close()


async def main(n: int, tmp: str) -> None:
    header = ("store", "code exchange/s", "refresh/s", "password (argon2 t=1, 8 KiB)/s")
    rows = [header]
    for name, url in URLS.items():
        row = await bench(name, url.format(tmp=tmp), n)
        if row is not None:
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(args.requests, tmp))
