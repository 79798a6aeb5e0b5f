"""Login throttling on every backend: slots taken before the password check, per account
and per IP, fixed windows; and the login flow's parallel-guess bound through AuthState."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from authstate.clock import FrozenClock
from authstate.errors import AuthenticationFailed, Throttled
from authstate.passwords import PasswordHasher
from authstate.state import AuthState
from authstate.stores import Store
from authstate.throttle import LoginThrottle
from tests.web.api import PASSWORD, api_settings

WINDOW_START = 900 * 2_000_000  # the start of a window, so the arithmetic below is exact


@pytest.fixture
def throttle(store: Store, clock: FrozenClock) -> LoginThrottle:
    clock.set(WINDOW_START)
    return LoginThrottle(store, clock=clock, account_limit=5, ip_limit=8, window=900)


async def test_five_failures_per_account_then_throttled_with_retry_after(
    throttle: LoginThrottle, clock: FrozenClock
) -> None:
    for n in range(1, 6):
        verdict = throttle.failed(await throttle.admit("alice@example.com", "198.51.100.1"))
        assert verdict.account_failures == n
        assert verdict.tripped is (n == 5)
    clock.advance(100)
    with pytest.raises(Throttled) as caught:
        await throttle.admit("Alice@Example.com ", "203.0.113.7")  # any IP, any spelling
    assert caught.value.retry_after == 800
    await throttle.admit("bob@example.com", "203.0.113.7")  # other accounts unaffected


async def test_a_refused_attempt_takes_nothing(throttle: LoginThrottle, store: Store) -> None:
    for _ in range(5):
        await throttle.admit("amy@example.com", "198.51.100.11")
    for _ in range(10):
        with pytest.raises(Throttled):
            await throttle.admit("amy@example.com", "198.51.100.11")
    ip = await store.scan("throttle", prefix="i:198.51.100.11:")
    assert [r.value["n"] for r in ip] == [5]  # refusals spent none of the IP's budget


async def test_window_ends_and_counting_restarts(throttle: LoginThrottle, clock: FrozenClock) -> None:
    for _ in range(5):
        await throttle.admit("carol@example.com", "198.51.100.2")
    with pytest.raises(Throttled):
        await throttle.admit("carol@example.com", None)
    clock.advance(900)
    assert (await throttle.admit("carol@example.com", None)).account_slot == 1


async def test_per_ip_limit_spans_accounts(throttle: LoginThrottle, store: Store) -> None:
    for n in range(8):
        verdict = throttle.failed(await throttle.admit(f"user{n}@example.com", "198.51.100.3"))
    assert verdict.ip_failures == 8 and verdict.tripped
    with pytest.raises(Throttled):
        await throttle.admit("fresh@example.com", "198.51.100.3")
    # the account slot the IP refusal took was given back
    assert (await throttle.admit("fresh@example.com", "198.51.100.4")).account_slot == 1


async def test_success_gives_back_only_its_own_slot(throttle: LoginThrottle) -> None:
    for _ in range(3):
        throttle.failed(await throttle.admit("dave@example.com", "198.51.100.5"))
    await throttle.succeeded(await throttle.admit("dave@example.com", "198.51.100.5"))
    # the three failures still count, for the account and for the IP
    assert (await throttle.admit("dave@example.com", "198.51.100.5")).account_slot == 4
    assert (await throttle.admit("x@example.com", "198.51.100.5")).ip_slot == 5


async def test_a_success_in_flight_does_not_erase_concurrent_failures(
    throttle: LoginThrottle,
) -> None:
    """The success is admitted first and settles last: the four failures admitted while
    it was in flight are all still counted after it, so one more guess is all that is left."""
    success = await throttle.admit("ed@example.com", "198.51.100.6")
    failures = await asyncio.gather(
        *(throttle.admit("ed@example.com", "198.51.100.6") for _ in range(4))
    )
    assert sorted(a.account_slot for a in failures) == [2, 3, 4, 5]
    await throttle.succeeded(success)
    assert (await throttle.admit("ed@example.com", "198.51.100.6")).account_slot == 5
    with pytest.raises(Throttled):
        await throttle.admit("ed@example.com", "198.51.100.6")


async def test_a_late_success_after_the_window_creates_nothing(
    throttle: LoginThrottle, clock: FrozenClock, store: Store
) -> None:
    attempt = await throttle.admit("fay@example.com", "198.51.100.7")
    clock.advance(900)
    await throttle.succeeded(attempt)
    assert await store.scan("throttle") == []


async def test_counters_are_shared_through_the_store(store: Store, clock: FrozenClock) -> None:
    """Two instances on one store see one count (the per-instance objects keep nothing)."""
    a = LoginThrottle(store, clock=clock, account_limit=3, window=900)
    b = LoginThrottle(store, clock=clock, account_limit=3, window=900)
    await a.admit("erin@example.com", "192.0.2.1")
    await b.admit("erin@example.com", "192.0.2.2")
    await a.admit("erin@example.com", "192.0.2.3")
    with pytest.raises(Throttled):
        await b.admit("erin@example.com", "192.0.2.4")


async def test_counter_keys_hold_no_address(throttle: LoginThrottle, store: Store) -> None:
    await throttle.admit("secret.person@example.com", "198.51.100.9")
    keys = [r.key for r in await store.scan("throttle")]
    assert keys and not any("secret.person" in k for k in keys)


# The login flow (AuthState.login), with every attempt launched at once.


class CountingHasher(PasswordHasher):
    """A real argon2 hasher that counts the passwords it checks (from worker threads)."""

    def __init__(self, **cost: Any) -> None:
        super().__init__(**cost)
        self.verified = 0
        self._lock = threading.Lock()

    def verify(self, password_hash: str, password: str) -> bool:
        with self._lock:
            self.verified += 1
        return super().verify(password_hash, password)


@asynccontextmanager
async def state_on(store: Store, clock: FrozenClock, **overrides: Any) -> AsyncIterator[AuthState]:
    """An AuthState on the test's store, its password checks counted."""
    settings = api_settings(push_revocation=False, **overrides)
    state = AuthState(settings, store, clock=clock)
    hasher = CountingHasher(time_cost=1, memory_kib=1024, parallelism=1)
    state.passwords = state.users.hasher = hasher
    await state.start()
    try:
        yield state
    finally:
        await state.revocation.close()  # the store fixture closes the store


def counted(state: AuthState) -> int:
    assert isinstance(state.users.hasher, CountingHasher)
    return state.users.hasher.verified


async def guess(state: AuthState, password: str, *, ip: str = "198.51.100.20") -> str:
    try:
        await state.login("gina@example.com", password, ip=ip, user_agent="test")
    except Throttled as refused:
        assert refused.retry_after > 0
        return "throttled"
    except AuthenticationFailed:
        return "failed"
    return "ok"


async def test_parallel_guesses_are_bounded_by_the_limit(store: Store, clock: FrozenClock) -> None:
    clock.set(WINDOW_START + 60)
    async with state_on(store, clock) as state:
        await state.users.create("gina@example.com", PASSWORD)
        limit = state.throttle.account_limit
        before = counted(state)
        outcomes = await asyncio.gather(*(guess(state, f"wrong guess {n}") for n in range(24)))
        assert outcomes.count("failed") == limit
        assert outcomes.count("throttled") == 24 - limit
        assert counted(state) - before == limit  # only admitted guesses reached argon2

        events = (await state.audit.query(limit=100)).events
        assert [e.type for e in events].count("login_failed") == limit
        assert [e.type for e in events].count("throttle_tripped") == 1

        checked = counted(state)
        assert await guess(state, PASSWORD) == "throttled"  # the right password too
        assert await guess(state, PASSWORD, ip="203.0.113.50") == "throttled"  # from anywhere
        assert counted(state) == checked
        clock.advance(state.throttle.window - 60 - 1)
        assert await guess(state, PASSWORD) == "throttled"  # until the window ends
        clock.advance(1)
        assert await guess(state, PASSWORD) == "ok"


async def test_parallel_guesses_across_accounts_are_bounded_per_ip(
    store: Store, clock: FrozenClock
) -> None:
    clock.set(WINDOW_START)
    async with state_on(store, clock, throttle_ip_limit=6) as state:
        before = counted(state)

        async def spray(n: int) -> str:
            try:
                await state.login(f"user{n}@example.com", "wrong guess", ip="192.0.2.9",
                                  user_agent=None)
            except Throttled:
                return "throttled"
            except AuthenticationFailed:
                return "failed"
            return "ok"

        outcomes = await asyncio.gather(*(spray(n) for n in range(24)))
        assert outcomes.count("failed") == 6 and outcomes.count("throttled") == 18
        assert counted(state) - before == 6


async def test_a_correct_password_in_flight_keeps_concurrent_failures(
    store: Store, clock: FrozenClock
) -> None:
    """The right password and wrong guesses race: whatever the order, every wrong guess
    admitted stays counted, so the account's budget is not refilled by the success."""
    clock.set(WINDOW_START)
    async with state_on(store, clock) as state:
        await state.users.create("gina@example.com", PASSWORD)
        limit = state.throttle.account_limit
        outcomes = await asyncio.gather(
            guess(state, PASSWORD), *(guess(state, f"wrong {n}") for n in range(limit - 1))
        )
        assert outcomes[0] == "ok" and outcomes[1:] == ["failed"] * (limit - 1)
        # limit - 1 failures remain counted: exactly one more guess is admitted
        assert await guess(state, "one more wrong") == "failed"
        assert await guess(state, PASSWORD) == "throttled"
