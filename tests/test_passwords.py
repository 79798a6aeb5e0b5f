"""argon2id hashing: verify, mismatch, corrupt hashes, and rehash when parameters change."""

from __future__ import annotations

import pytest

from authstate.errors import ConfigurationError, InvalidInput
from authstate.passwords import MAX_LENGTH, MIN_LENGTH, PasswordHasher, check_strength

FAST = {"time_cost": 1, "memory_kib": 1024, "parallelism": 1}


def test_hash_is_argon2id_with_the_configured_parameters() -> None:
    hasher = PasswordHasher(time_cost=1, memory_kib=2048, parallelism=2)
    h = hasher.hash("correct horse battery staple")
    assert h.startswith("$argon2id$v=19$m=2048,t=1,p=2$")
    assert "correct horse" not in h
    assert hasher.verify(h, "correct horse battery staple")
    assert not hasher.verify(h, "correct horse battery stapler")


def test_same_password_hashes_differently_each_time() -> None:
    hasher = PasswordHasher(**FAST)
    assert hasher.hash("same password") != hasher.hash("same password")


@pytest.mark.parametrize("bad", ["", "not a hash", "$argon2id$v=19$m=1024,t=1,p=1$garbage", "$2b$12$abc"])
def test_corrupt_hash_is_a_mismatch_not_a_crash(bad: str) -> None:
    hasher = PasswordHasher(**FAST)
    assert hasher.verify(bad, "whatever password") is False
    assert hasher.needs_rehash(bad) is True


def test_needs_rehash_when_parameters_change() -> None:
    old = PasswordHasher(time_cost=1, memory_kib=1024, parallelism=1)
    new = PasswordHasher(time_cost=2, memory_kib=1024, parallelism=1)
    h = old.hash("a long enough password")
    assert not old.needs_rehash(h)
    assert new.needs_rehash(h)
    assert new.verify(h, "a long enough password")  # old hashes still verify


def test_dummy_hash_uses_current_parameters_and_matches_nothing_guessable() -> None:
    hasher = PasswordHasher(time_cost=1, memory_kib=1536, parallelism=1)
    assert "$m=1536,t=1,p=1$" in hasher.dummy_hash
    assert hasher.dummy_hash is hasher.dummy_hash
    assert not hasher.verify(hasher.dummy_hash, "")
    assert not hasher.verify(hasher.dummy_hash, "password")


async def test_async_wrappers() -> None:
    hasher = PasswordHasher(**FAST)
    h = await hasher.hash_async("password in a thread")
    assert await hasher.verify_async(h, "password in a thread")
    assert not await hasher.verify_async(h, "other password")


def test_strength_bounds() -> None:
    check_strength("x" * MIN_LENGTH)
    check_strength("x" * MAX_LENGTH)
    with pytest.raises(InvalidInput):
        check_strength("x" * (MIN_LENGTH - 1))
    with pytest.raises(InvalidInput):
        check_strength("x" * (MAX_LENGTH + 1))


def test_memory_must_cover_parallelism() -> None:
    with pytest.raises(ConfigurationError):
        PasswordHasher(time_cost=1, memory_kib=8, parallelism=2)
