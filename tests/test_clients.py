"""Introspection/revocation clients: the secret is shown once and only its hash is kept."""

from __future__ import annotations

import pytest

from authstate.clients import Clients
from authstate.clock import FrozenClock
from authstate.errors import InvalidInput
from authstate.stores import Store


async def test_create_and_authenticate(store: Store, clock: FrozenClock) -> None:
    clients = Clients(store, clock=clock)
    client, secret = await clients.create("resource server")
    assert client.id.startswith("c_") and len(secret) >= 43
    assert await clients.authenticate(client.id, secret) == client
    assert await clients.authenticate(client.id, secret + "x") is None
    assert await clients.authenticate(client.id, "") is None
    assert await clients.authenticate("c_" + "A" * 16, secret) is None
    assert await clients.authenticate("not an id", secret) is None
    record = await store.get("client", client.id)
    assert record is not None and secret not in str(record.value)
    assert [c.name for c in await clients.list()] == ["resource server"]


async def test_names_are_bounded(store: Store, clock: FrozenClock) -> None:
    clients = Clients(store, clock=clock)
    for bad in ["", " leading", "x" * 65, "semi;colon", "new\nline"]:
        with pytest.raises(InvalidInput):
            await clients.create(bad)
