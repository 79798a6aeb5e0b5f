"""Accounts on every backend: unique emails, authentication without enumeration, rehash."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from authstate.clock import FrozenClock
from authstate.errors import AuthenticationFailed, Conflict, InvalidInput
from authstate.passwords import PasswordHasher
from authstate.stores import Store
from authstate.users import KIND_EMAIL, KIND_USER, Users, normalize_email

PASSWORD = "correct horse battery staple"


class CountingHasher(PasswordHasher):
    """A real hasher that also counts verifications (to prove equal work)."""

    def __init__(self, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.verifications = 0

    def verify(self, password_hash: str, password: str) -> bool:
        self.verifications += 1
        return super().verify(password_hash, password)


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher(time_cost=1, memory_kib=1024, parallelism=1)


@pytest.fixture
def users(store: Store, clock: FrozenClock, hasher: CountingHasher) -> Users:
    return Users(store, clock=clock, hasher=hasher)


async def test_create_and_authenticate(users: Users, store: Store, clock: FrozenClock) -> None:
    user = await users.create("  Alice@Example.COM ", PASSWORD, admin=True)
    assert user.email == "alice@example.com" and user.is_admin
    assert user.created_at == clock.now()
    assert await users.authenticate("ALICE@example.com", PASSWORD) == user
    assert await users.get(user.id) == user
    assert await users.by_email("alice@example.com") == user
    record = await store.get(KIND_USER, user.id)
    assert record is not None
    assert record.value["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in str(record.value)
    assert "password_hash" not in user.public() and PASSWORD not in repr(user)
    mapping = await store.get(KIND_EMAIL, "alice@example.com")
    assert mapping is not None and mapping.value == {"user_id": user.id}


async def test_email_is_unique(users: Users) -> None:
    await users.create("bob@example.com", PASSWORD)
    with pytest.raises(Conflict):
        await users.create("BOB@example.com", "another password")
    assert len(await users.list()) == 1


async def test_concurrent_signups_of_one_email_yield_one_user(users: Users) -> None:
    results = await asyncio.gather(
        *(users.create("race@example.com", PASSWORD) for _ in range(5)), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    assert (await users.authenticate("race@example.com", PASSWORD)).id == winners[0].id


async def test_wrong_password_and_unknown_email_are_one_error_after_equal_work(
    users: Users, hasher: CountingHasher
) -> None:
    await users.create("carol@example.com", PASSWORD)
    messages = []
    for email, password in [
        ("carol@example.com", "wrong password!"),
        ("nobody@example.com", PASSWORD),
        ("not an email", PASSWORD),
        ("carol@example.com", "x" * 5000),
    ]:
        before = hasher.verifications
        with pytest.raises(AuthenticationFailed) as caught:
            await users.authenticate(email, password)
        assert hasher.verifications - before == 1, email
        messages.append(str(caught.value))
    assert len(set(messages)) == 1
    assert "carol" not in messages[0]


async def test_unknown_email_takes_about_as_long_as_wrong_password(store: Store, clock: FrozenClock) -> None:
    users = Users(store, clock=clock, hasher=PasswordHasher(time_cost=1, memory_kib=8192, parallelism=1))
    await users.create("dave@example.com", PASSWORD)

    async def timed(email: str) -> float:
        start = time.perf_counter()
        with pytest.raises(AuthenticationFailed):
            await users.authenticate(email, "wrong password!")
        return time.perf_counter() - start

    known, unknown = [], []
    for _ in range(9):  # interleaved, so machine noise hits both alike
        known.append(await timed("dave@example.com"))
        unknown.append(await timed("nobody@example.com"))
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.6 < ratio < 1.6, (statistics.median(known), statistics.median(unknown))


async def test_rehash_on_login_when_parameters_change(store: Store, clock: FrozenClock) -> None:
    old = Users(store, clock=clock, hasher=PasswordHasher(time_cost=1, memory_kib=1024, parallelism=1))
    user = await old.create("erin@example.com", PASSWORD)
    before = (await store.get(KIND_USER, user.id)).value["password_hash"]  # type: ignore[union-attr]
    new = Users(store, clock=clock, hasher=PasswordHasher(time_cost=2, memory_kib=1024, parallelism=1))
    with pytest.raises(AuthenticationFailed):
        await new.authenticate("erin@example.com", "wrong password!")
    assert (await store.get(KIND_USER, user.id)).value["password_hash"] == before  # type: ignore[union-attr]
    await new.authenticate("erin@example.com", PASSWORD)
    after = (await store.get(KIND_USER, user.id)).value["password_hash"]  # type: ignore[union-attr]
    assert "$m=1024,t=1,p=1$" in before and "$m=1024,t=2,p=1$" in after
    await new.authenticate("erin@example.com", PASSWORD)  # still verifies after the rehash


async def test_set_and_check_password(users: Users, clock: FrozenClock) -> None:
    user = await users.create("frank@example.com", PASSWORD)
    clock.advance(10)
    assert await users.check_password(user.id, PASSWORD)
    changed = await users.set_password(user.id, "a brand new password")
    assert changed.password_changed_at == clock.now()
    assert not await users.check_password(user.id, PASSWORD)
    with pytest.raises(AuthenticationFailed):
        await users.authenticate("frank@example.com", PASSWORD)
    await users.authenticate("frank@example.com", "a brand new password")
    assert not await users.check_password("u_" + "x" * 16, PASSWORD)
    with pytest.raises(InvalidInput):
        await users.set_password(user.id, "short")


@pytest.mark.parametrize("bad", ["", "no-at-sign", "two@@example.com", "a b@example.com",
                                 "x@" + "d" * 260, "@example.com", "tab\t@example.com"])
def test_invalid_emails_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_email(bad)


async def test_create_refuses_weak_password_and_bad_email(users: Users) -> None:
    with pytest.raises(InvalidInput):
        await users.create("gina@example.com", "short")
    with pytest.raises(InvalidInput):
        await users.create("not-an-email", PASSWORD)
    assert await users.list() == []


async def test_get_refuses_malformed_ids(users: Users) -> None:
    assert await users.get("../../etc") is None
    assert await users.get("u_" + "0" * 16) is None
