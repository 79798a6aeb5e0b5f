"""Failed-login throttling on every backend: per account, per IP, fixed windows."""

from __future__ import annotations

import pytest

from authstate.clock import FrozenClock
from authstate.errors import Throttled
from authstate.stores import Store
from authstate.throttle import LoginThrottle


@pytest.fixture
def throttle(store: Store, clock: FrozenClock) -> LoginThrottle:
    clock.set(900 * 2_000_000)  # the start of a window, so the arithmetic below is exact
    return LoginThrottle(store, clock=clock, account_limit=5, ip_limit=8, window=900)


async def test_five_failures_per_account_then_throttled_with_retry_after(
    throttle: LoginThrottle, clock: FrozenClock
) -> None:
    for n in range(1, 6):
        await throttle.check("alice@example.com", "198.51.100.1")
        verdict = await throttle.failed("alice@example.com", "198.51.100.1")
        assert verdict.account_failures == n
        assert verdict.tripped is (n == 5)
    clock.advance(100)
    with pytest.raises(Throttled) as caught:
        await throttle.check("Alice@Example.com ", "203.0.113.7")  # any IP, any spelling
    assert caught.value.retry_after == 800
    await throttle.check("bob@example.com", "203.0.113.7")  # other accounts unaffected


async def test_window_ends_and_counting_restarts(throttle: LoginThrottle, clock: FrozenClock) -> None:
    for _ in range(5):
        await throttle.failed("carol@example.com", "198.51.100.2")
    with pytest.raises(Throttled):
        await throttle.check("carol@example.com", None)
    clock.advance(900)
    await throttle.check("carol@example.com", None)
    assert (await throttle.failed("carol@example.com", None)).account_failures == 1


async def test_per_ip_limit_spans_accounts(throttle: LoginThrottle) -> None:
    for n in range(8):
        verdict = await throttle.failed(f"user{n}@example.com", "198.51.100.3")
    assert verdict.ip_failures == 8 and verdict.tripped
    with pytest.raises(Throttled):
        await throttle.check("fresh@example.com", "198.51.100.3")
    await throttle.check("fresh@example.com", "198.51.100.4")


async def test_success_clears_the_account_counter_but_not_the_ip(throttle: LoginThrottle) -> None:
    for _ in range(4):
        await throttle.failed("dave@example.com", "198.51.100.5")
    await throttle.succeeded("dave@example.com")
    assert (await throttle.failed("dave@example.com", "198.51.100.5")).account_failures == 1
    assert (await throttle.failed("x@example.com", "198.51.100.5")).ip_failures == 6


async def test_counters_are_shared_through_the_store(store: Store, clock: FrozenClock) -> None:
    """Two instances on one store see one count (the per-instance objects keep nothing)."""
    a = LoginThrottle(store, clock=clock, account_limit=3, window=900)
    b = LoginThrottle(store, clock=clock, account_limit=3, window=900)
    await a.failed("erin@example.com", "192.0.2.1")
    await b.failed("erin@example.com", "192.0.2.2")
    await a.failed("erin@example.com", "192.0.2.3")
    with pytest.raises(Throttled):
        await b.check("erin@example.com", "192.0.2.4")


async def test_counter_keys_hold_no_address(throttle: LoginThrottle, store: Store) -> None:
    await throttle.failed("secret.person@example.com", "198.51.100.9")
    keys = [r.key for r in await store.scan("throttle")]
    assert keys and not any("secret.person" in k for k in keys)
