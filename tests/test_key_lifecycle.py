"""The key lifecycle across instances and stores (issue 10, part 2).

A rotation made by the CLI or by another instance reaches a running instance on every
store (the key-set version poll; the bus besides on Redis and PostgreSQL); a rotated-in
key is published before it signs; revoking a key refuses its tokens everywhere; a
restart keeps accepting what was issued; a Redis that keeps nothing on disk is warned
about and its lost keys are detected. Time moves by the injected clock; waits on a real
background loop are bounded conditions, never asserted durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from authstate import keystore
from authstate.clock import Clock, FrozenClock, SystemClock
from authstate.config import Settings
from authstate.errors import ConfigurationError, InvalidToken
from authstate.jose.jwk import SigningKey
from authstate.keystore import KeySet
from authstate.state import NO_PERSISTENCE_WARNING, AuthState
from authstate.stores import Store, open_store
from tests.conftest import fresh_namespace, require_service
from tests.support import RedisServer

CLI = [sys.executable, "-c", "from authstate.cli import main; main()"]
STORES = ["sqlite", "redis", "postgres"]  # memory is one process: no CLI can reach it
TTL, LEEWAY, MAX_AGE, PREPUBLISH = 600, 30, 120, 180
WAIT = 10.0  # upper bound for a condition on a real loop; the poll interval is 0.1 s


def settings(url: str, namespace: str = "authstate", **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "store": url, "namespace": namespace, "access_token_ttl": TTL, "leeway": LEEWAY,
        "jwks_max_age": MAX_AGE, "key_prepublish": PREPUBLISH, "key_poll_interval": 300,
        "password_time_cost": 1, "password_memory_kib": 1024,
    }
    values.update(overrides)
    return Settings.from_flat(**values)


def store_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'keys.db'}"
    return require_service(backend)


@contextlib.asynccontextmanager
async def instances(
    backend: str, tmp_path: Path, clock: Clock, count: int = 2, **overrides: Any
) -> AsyncIterator[tuple[str, str, list[AuthState]]]:
    """``count`` AuthStates "serving" from one store (own connections, own bus
    subscriptions), the store URL and namespace; the namespace is dropped afterwards."""
    url, namespace = store_url(backend, tmp_path), fresh_namespace()
    opened: list[AuthState] = []
    try:
        for _ in range(count):
            opened.append(await AuthState.open(settings(url, namespace, **overrides),
                                               clock=clock))
        yield url, namespace, opened
    finally:
        for state in opened:
            await state.close()
        if backend != "sqlite":
            cleanup = await open_store(url, clock=clock, namespace=namespace)
            await cleanup.drop_namespace()  # type: ignore[attr-defined]
            await cleanup.close()


async def cli(url: str, namespace: str, *args: str) -> tuple[int, str, str]:
    """``authstate keys ...`` as a separate process against the same store."""
    env = {**os.environ, "AUTHSTATE_NAMESPACE": namespace, "AUTHSTATE_KEY_PREPUBLISH":
           str(PREPUBLISH), "AUTHSTATE_JWKS_MAX_AGE": str(MAX_AGE),
           "AUTHSTATE_ACCESS_TOKEN_TTL": str(TTL), "AUTHSTATE_LEEWAY": str(LEEWAY)}
    proc = await asyncio.create_subprocess_exec(
        *CLI, "keys", *args, "--store", url, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` on a real loop, bounded by ``WAIT``."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT} s: {what}")
        await asyncio.sleep(0.02)


def jwks_kids(state: AuthState) -> set[str]:
    return {k["kid"] for k in state.keys.public_jwks()["keys"]}


def _signed_parts(token: str) -> tuple[bytes, bytes]:
    import base64

    signing_input, _, signature = token.rpartition(".")
    return signing_input.encode(), base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))


def _kid(token: str) -> str:
    import base64
    import json

    header = token.split(".")[0]
    kid = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    assert isinstance(kid, str)
    return kid


@pytest.fixture
def now_clock() -> FrozenClock:
    """A frozen clock at the real time: the CLI in another process stamps keys with the
    system clock, so the instances under test must agree with it on "now"."""
    return FrozenClock(time.time())


# --- a CLI rotation reaches a serving instance, on every store ------------------------


@pytest.mark.parametrize("backend", STORES)
async def test_cli_rotation_reaches_a_running_instance_by_the_poll(
    backend: str, tmp_path: Path, now_clock: FrozenClock
) -> None:
    async with instances(backend, tmp_path, now_clock, count=1,
                         push_revocation=False) as (url, ns, (state,)):
        old = state.keys.signer.kid
        code, out, err = await cli(url, ns, "rotate", "--json")
        assert code == 0, err
        assert len(jwks_kids(state)) == 1, "no bus here: nothing changes before the poll"
        assert await state.poll_keys() is True
        (new,) = jwks_kids(state) - {old}
        assert state.keys.signer.kid == old, "published first, not signing yet"
        assert await state.poll_keys() is False, "an unchanged version reloads nothing"
        published = state.keys.get(new)
        assert published is not None and published.activate_at is not None
        assert published.activate_at - published.created_at == PREPUBLISH
        now_clock.set(published.activate_at - 1)
        assert _kid(state.tokens.issue("u")[0]) == old
        now_clock.set(published.activate_at)
        assert _kid(state.tokens.issue("u")[0]) == new, "signs once the stored time came"


@pytest.mark.parametrize("backend", STORES)
async def test_cli_rotation_reaches_a_running_instance_within_the_poll_interval(
    backend: str, tmp_path: Path
) -> None:
    """The real loops and the real clock: the bus on Redis and PostgreSQL, the 0.1 s
    poll on all three."""
    async with instances(backend, tmp_path, SystemClock(), count=1,
                         key_poll_interval=0.1) as (url, ns, (state,)):
        before = jwks_kids(state)
        code, _, err = await cli(url, ns, "rotate", "--now")
        assert code == 0, err
        await eventually(lambda: jwks_kids(state) != before, "the new key reached the JWKS")
        (new,) = jwks_kids(state) - before
        assert state.keys.signer.kid == new, "--now: it signs at once"


# --- staged rotation ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", *STORES])
async def test_staged_rotation_publishes_then_signs_then_retires(
    backend: str, tmp_path: Path, clock: FrozenClock
) -> None:
    serving = _memory(clock) if backend == "memory" else instances(backend, tmp_path, clock,
                                                                    count=1)
    async with serving as (_, _, (state,)):
        old = state.keys.signer.kid
        old_token, _ = state.tokens.issue("u")
        result = await state.rotate_keys()
        new = result.signer.kid
        assert jwks_kids(state) == {old, new}, "published in the JWKS at once"
        assert result.signer.state(clock.now()) == "published"
        clock.advance(PREPUBLISH - 1)
        assert _kid(state.tokens.issue("u")[0]) == old, "not signing before prepublish"
        clock.advance(1)
        token, _ = state.tokens.issue("u")
        assert _kid(token) == new
        assert state.keys.get(old) is not None
        assert state.keys.get(old).state(clock.now()) == "verify_only"  # type: ignore[union-attr]
        assert (await state.authenticate_bearer(old_token)).user_id == "u"
        clock.advance(LEEWAY)
        await state.poll_keys()
        record = await state.store.get(keystore.KIND, old)
        assert record is not None and "d" not in record.value["jwk"], "private half dropped"
        assert (await state.authenticate_bearer(old_token)).user_id == "u", "still verifies"
        reloaded = await keystore.load(state.store, clock=clock)
        assert reloaded.select(old).verify_signature(*_signed_parts(old_token))
        clock.advance(TTL)
        await state.poll_keys()
        assert jwks_kids(state) == {new} and state.keys.get(old) is None, "retired"
        listed = {k.kid: k.state(clock.now()) for k in
                  (await keystore.load(state.store, clock=clock)).all()}
        assert listed == {old: "retired", new: "signing"}


@contextlib.asynccontextmanager
async def _memory(clock: FrozenClock) -> AsyncIterator[tuple[str, str, list[AuthState]]]:
    state = await AuthState.open(settings("memory://"), clock=clock)
    try:
        yield "memory://", "authstate", [state]
    finally:
        await state.close()


async def test_an_instance_follows_the_stored_times_without_another_poll(
    tmp_path: Path, clock: FrozenClock
) -> None:
    """Transitions come from stored timestamps: once B has heard of the rotation, it
    switches signer at the same instant as A, with no timer and no further read."""
    async with instances("sqlite", tmp_path, clock) as (_, _, (a, b)):
        result = await a.rotate_keys()
        await b.poll_keys()
        clock.advance(PREPUBLISH)
        with _no_store_reads(b):
            assert _kid(b.tokens.issue("u")[0]) == result.signer.kid
        assert _kid(a.tokens.issue("u")[0]) == result.signer.kid


@contextlib.contextmanager
def _no_store_reads(state: AuthState) -> Any:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the store was read")

    original = state.store.get, state.store.scan
    state.store.get, state.store.scan = refuse, refuse  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        state.store.get, state.store.scan = original  # type: ignore[method-assign]


def test_a_key_never_signs_outside_its_window() -> None:
    key = SigningKey.generate("EdDSA", now=0.0)
    keys = KeySet([key], max_token_ttl=TTL, leeway=LEEWAY)
    keys.rotate(now=100.0, prepublish=50.0)
    new = next(k for k in keys.all() if k.kid != key.kid)
    assert keys.signer_at(149.0).kid == key.kid and keys.signer_at(150.0).kid == new.kid
    assert keys.get(key.kid).next_change(149.0) == ("verify_only", 150.0)  # type: ignore[union-attr]
    assert keys.get(key.kid).next_change(150.0) == ("retired", 150.0 + TTL + LEEWAY)  # type: ignore[union-attr]
    keys.revoke(new.kid, now=200.0)
    with pytest.raises(ConfigurationError):
        keys.signer_at(200.0)  # the old key stopped signing at 150: never again


async def test_rotate_now_skips_the_wait(clock: FrozenClock) -> None:
    async with _memory(clock) as (_, _, (state,)):
        old = state.keys.signer.kid
        old_token, _ = state.tokens.issue("u")
        result = await state.rotate_keys(now=True)
        assert _kid(state.tokens.issue("u")[0]) == result.signer.kid != old
        assert (await state.authenticate_bearer(old_token)).user_id == "u", "verify-only"


# --- revoke ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", STORES)
async def test_revoke_refuses_its_tokens_on_another_instance(
    backend: str, tmp_path: Path, clock: FrozenClock
) -> None:
    """Redis and PostgreSQL: the bus carries it (no poll runs: its interval is 300 s).
    SQLite: the poll step does."""
    async with instances(backend, tmp_path, clock) as (_, _, (a, b)):
        token, _ = a.tokens.issue("u")
        kid = _kid(token)
        assert (await b.authenticate_bearer(token)).user_id == "u"
        done = await a.revoke_key(kid)
        assert done.replacement is not None, "revoking the signer puts a new one in at once"
        with pytest.raises(InvalidToken):
            await a.authenticate_bearer(token)
        if backend == "sqlite":
            assert await b.poll_keys() is True
        else:
            await eventually(lambda: kid not in b.keys, "the revocation reached B by bus")
        with pytest.raises(InvalidToken):
            await b.authenticate_bearer(token)
        assert _kid(b.tokens.issue("u")[0]) == done.replacement.kid
        reopened = await AuthState.open(a.settings, clock=clock)
        try:
            with pytest.raises(InvalidToken):
                await reopened.authenticate_bearer(token)
        finally:
            await reopened.close()


async def test_revoking_the_signer_promotes_a_published_key(clock: FrozenClock) -> None:
    async with _memory(clock) as (_, _, (state,)):
        old = state.keys.signer.kid
        waiting = await state.rotate_keys()
        done = await state.revoke_key(old)
        assert done.replacement is not None and done.replacement.kid == waiting.signer.kid
        assert _kid(state.tokens.issue("u")[0]) == waiting.signer.kid
        record = await state.store.get(keystore.KIND, old)
        assert record is not None and record.value["status"] == "revoked"
        assert "d" not in (record.value["jwk"] or {}), "a revoked key keeps no private half"


def test_cli_rotate_now_revoke_and_list(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from authstate.cli import app

    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    (first,) = json.loads(runner.invoke(app, ["keys", "generate", "--store", url, "--json"]
                                        ).stdout)
    rotated = runner.invoke(app, ["keys", "rotate", "--now", "--store", url, "--json"])
    assert rotated.exit_code == 0, rotated.output
    rows = {r["kid"]: r for r in json.loads(rotated.stdout)}
    assert rows[first["kid"]]["state"] == "verify_only"
    assert rows[first["kid"]]["next_state"] == "retired"
    (new,) = [kid for kid, r in rows.items() if r["state"] == "signing"]

    unknown = runner.invoke(app, ["keys", "revoke", "no-such-kid", "--store", url])
    # a kid is a thumbprint (base64url): it may start with "-", which only follows "--"
    dashed = runner.invoke(app, ["keys", "revoke", "--store", url, "--", "-no-such-kid"])
    assert dashed.exit_code == 1, dashed.output
    assert unknown.exit_code == 1 and "no key with kid" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1 and "Traceback" not in unknown.output

    revoked = runner.invoke(app, ["keys", "revoke", "--store", url, "--json", "--", new])
    assert revoked.exit_code == 0, revoked.output
    after = {r["kid"]: r for r in json.loads(revoked.stdout)}
    assert after[new]["state"] == "revoked" and after[new]["revoked_at"]
    assert [r["state"] for r in after.values()].count("signing") == 1, "a replacement signs"
    jwks = json.loads(runner.invoke(app, ["keys", "export-jwks", "--store", url]).stdout)
    assert new not in {k["kid"] for k in jwks["keys"]}


# --- restarts ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", STORES)
async def test_a_restart_keeps_accepting_the_tokens_it_issued(
    backend: str, tmp_path: Path, clock: FrozenClock
) -> None:
    async with instances(backend, tmp_path, clock, count=1) as (url, ns, (state,)):
        before, _ = state.tokens.issue("u")
        await state.rotate_keys()
        clock.advance(PREPUBLISH)
        after, _ = state.tokens.issue("u")
        assert _kid(before) != _kid(after)
        restarted = await AuthState.open(settings(url, ns), clock=clock)
        try:
            for token in (before, after):
                assert (await restarted.authenticate_bearer(token)).user_id == "u"
            assert restarted.keys.signer.kid == _kid(after)
        finally:
            await restarted.close()


# --- the JWKS endpoint ---------------------------------------------------------------


async def test_jwks_endpoint_sends_cache_control_and_published_keys(clock: FrozenClock) -> None:
    from tests.web.api import running

    async with running(clock=clock, jwks_max_age=MAX_AGE, key_prepublish=PREPUBLISH) as api:
        result = await api.state.rotate_keys()
        response = await api.client.get("/.well-known/jwks.json")
        assert response.status_code == 200
        assert response.headers["cache-control"] == f"public, max-age={MAX_AGE}"
        assert result.signer.kid in {k["kid"] for k in response.json()["keys"]}


def test_prepublish_must_cover_the_jwks_max_age() -> None:
    with pytest.raises(ConfigurationError, match="key_prepublish"):
        Settings.from_flat(jwks_max_age=300, key_prepublish=299)
    assert Settings.from_flat(jwks_max_age=300, key_prepublish=300).tokens.key_prepublish == 300


# --- a Redis that keeps nothing on disk ------------------------------------------------


async def test_redis_without_persistence_is_warned_about_and_lost_keys_are_detected(
    redis_server: RedisServer, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    state = await AuthState.open(settings(redis_server.url, push_revocation=False),
                                 clock=clock)
    try:
        assert NO_PERSISTENCE_WARNING in caplog.text
        lost = state.keys.signer.kid
        redis_server.stop()
        redis_server.start()  # a restart of a server with --save "" --appendonly no
        await _retrying(state.poll_keys)
        assert "the store lost the key set" in caplog.text
        assert state.keys.signer.kid != lost and lost not in state.keys
        token, _ = state.tokens.issue("u")
        stored = await keystore.load(state.store, clock=clock)
        assert stored.signer.kid == _kid(token), "it signs with a key the store holds"
    finally:
        await state.close()


async def test_persistence_is_reported_when_redis_keeps_data(clock: FrozenClock) -> None:
    url = require_service("redis")
    store: Store = await open_store(url, clock=clock, namespace=fresh_namespace())
    try:
        state = AuthState(settings(url), store, clock=clock)
        reported = await state.check_persistence()
        raw = store._redis  # type: ignore[attr-defined]
        save = (await raw.execute_command("CONFIG", "GET", "save"))[1]
        aof = (await raw.execute_command("CONFIG", "GET", "appendonly"))[1]
        assert reported == (bool(save.strip()) or aof == b"yes")
    finally:
        await store.close()


async def _retrying(step: Callable[[], Awaitable[object]]) -> None:
    """The first commands after a server restart may meet a stale pooled socket."""
    from authstate.errors import StoreUnavailable

    for _ in range(5):
        try:
            await step()
            return
        except StoreUnavailable:
            continue
    await step()


# --- the issue's case: `keys rotate` beside a running `serve` on SQLite ----------------


def test_keys_rotate_reaches_a_running_serve_on_sqlite(tmp_path: Path) -> None:
    import httpx

    from tests.test_cli_serve_process import Server, environment
    from tests.test_cli_serve_process import cli as run_cli

    env = {**environment(), "AUTHSTATE_KEY_POLL_INTERVAL": "0.2"}
    server = Server([], env, tmp_path)
    try:
        server.wait_ready()
        store = ["--store", f"sqlite:///{tmp_path / 'authstate.db'}"]
        with httpx.Client(base_url=server.url, timeout=10) as http:
            before = {k["kid"] for k in http.get("/.well-known/jwks.json").json()["keys"]}
            rotated = run_cli(["keys", "rotate", "--json", *store], env)
            assert rotated.exit_code == 0, rotated.output
            deadline = time.monotonic() + WAIT
            while True:
                response = http.get("/.well-known/jwks.json")
                kids = {k["kid"] for k in response.json()["keys"]}
                if kids != before:
                    break
                assert time.monotonic() < deadline, "the rotation never reached serve"
                time.sleep(0.05)
            assert response.headers["cache-control"] == "public, max-age=300"
            assert len(kids - before) == 1 and before <= kids
    finally:
        server.stop()


# --- private keys sealed at rest ----------------------------------------------------------


async def test_private_keys_are_sealed_under_the_kek(tmp_path: Path, clock: FrozenClock) -> None:
    from authstate.keywrap import generate_kek

    url = f"sqlite:///{tmp_path / 'sealed.db'}"
    kek = generate_kek()
    state = await AuthState.open(settings(url, key_encryption_key=kek), clock=clock)
    try:
        token, _ = state.tokens.issue("u")
        private_d = state.keys.signer.private_jwk()["d"]
        record = await state.store.get(keystore.KIND, state.keys.signer.kid)
        assert record is not None and "d" not in record.value["jwk"] and "sealed" in record.value
    finally:
        await state.close()
    assert private_d.encode() not in (tmp_path / "sealed.db").read_bytes()

    again = await AuthState.open(settings(url, key_encryption_key=kek), clock=clock)
    try:
        assert (await again.authenticate_bearer(token)).user_id == "u"
    finally:
        await again.close()
    with pytest.raises(ConfigurationError, match="encrypted"):
        await AuthState.open(settings(url), clock=clock)  # without the KEK: refused
    with pytest.raises(ConfigurationError, match="not configured"):
        await AuthState.open(settings(url, key_encryption_key=generate_kek()), clock=clock)


def test_a_sealed_key_does_not_open_on_another_record() -> None:
    from authstate.errors import UnusableKey
    from authstate.keywrap import KeyWrap, generate_kek

    wrap = KeyWrap.from_text(generate_kek())
    sealed = wrap.seal({"kty": "oct", "k": "x"}, aad=b"kid-a\0HS256")
    assert wrap.open(sealed, aad=b"kid-a\0HS256") == {"kty": "oct", "k": "x"}
    with pytest.raises(UnusableKey):
        wrap.open(sealed, aad=b"kid-b\0HS256")
    with pytest.raises(ConfigurationError, match="32 random bytes"):
        KeyWrap.from_text("c2hvcnQ")
    assert generate_kek() not in repr(wrap)


def test_cli_rewrap_seals_plain_keys_and_rotates_the_kek(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from authstate.cli import app
    from authstate.keywrap import KeyWrap, fingerprint

    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    assert runner.invoke(app, ["keys", "generate", "--store", url]).exit_code == 0
    old, new = (runner.invoke(app, ["keys", "generate-kek"]).stdout.strip() for _ in "ab")
    assert old != new and len(KeyWrap.from_text(old)._keks) == 1  # type: ignore[attr-defined]

    def sealed_under() -> set[str | None]:
        async def read() -> set[str | None]:
            store = await open_store(url)
            try:
                return {r.value.get("sealed", {}).get("kek") for r in
                        await store.scan(keystore.KIND)}
            finally:
                await store.close()
        return asyncio.run(read())

    assert sealed_under() == {None}
    unset = runner.invoke(app, ["keys", "rewrap", "--store", url])
    assert unset.exit_code == 1 and "AUTHSTATE_KEY_ENCRYPTION_KEY" in unset.stderr
    first = runner.invoke(app, ["keys", "rewrap", "--store", url],
                          env={"AUTHSTATE_KEY_ENCRYPTION_KEY": old})
    assert first.exit_code == 0, first.output
    assert sealed_under() == {fingerprint(_raw(old))}
    second = runner.invoke(app, ["keys", "rewrap", "--store", url],
                           env={"AUTHSTATE_KEY_ENCRYPTION_KEY": f"{new},{old}"})
    assert second.exit_code == 0, second.output
    assert sealed_under() == {fingerprint(_raw(new))}
    listed = runner.invoke(app, ["keys", "list", "--json", "--store", url])
    assert listed.exit_code == 0 and json.loads(listed.stdout)[0]["state"] == "signing"
    rotated = runner.invoke(app, ["keys", "rotate", "--store", url],
                            env={"AUTHSTATE_KEY_ENCRYPTION_KEY": old})
    assert rotated.exit_code == 1 and "not configured" in rotated.stderr


def _raw(kek: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(kek + "=" * (-len(kek) % 4))
