"""A code is single-use under a real race, on every store: many parallel exchanges of one
code through the HTTP app, exactly one 200 (security invariant 8: ``incr_below`` takes the
one use before any token is minted)."""

from __future__ import annotations

import asyncio

import httpx

from authstate.clock import FrozenClock
from authstate.state import AuthState
from authstate.stores import Store
from authstate.web.app import create_app
from tests.web.api import Api, api_settings
from tests.web.oauth_support import EMAIL, add_client, exchange, get_code, new_verifier

RACERS = 24


async def test_parallel_exchanges_of_one_code_give_exactly_one_token(store: Store, clock: FrozenClock) -> None:
    state = AuthState(api_settings(), store, clock=clock)
    await state.start()
    try:
        transport = httpx.ASGITransport(app=create_app(state))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            api = Api(state, http, transport)
            await api.add_user(EMAIL)
            await api.login(EMAIL)
            client, secret = await add_client(api)
            verifier = new_verifier()
            code = await get_code(api, client, verifier)
            answers = await asyncio.gather(*(
                exchange(api, client, secret, code, verifier) for _ in range(RACERS)))
            winner = next(r for r in answers if r.status_code == 200)
            me = await http.get("/auth/me", headers={
                "Authorization": f"Bearer {winner.json()['access_token']}"})
    finally:
        await state.revocation.close()  # the store fixture closes the store
    # the code was used more than once: what it gave is revoked too (RFC 6749 §4.1.2)
    assert me.status_code == 401
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] + [400] * (RACERS - 1), statuses
    assert all(r.json()["error"] == "invalid_grant" for r in answers if r.status_code == 400)
