"""Push revocation across real processes, over real Redis pub/sub and PostgreSQL NOTIFY.

Each verifier is a separate Python process (``python -m tests.test_push_processes``) with
its own ``AuthState`` on the shared store; the test talks to it over stdin/stdout. Bus
outages use a throwaway redis-server stopped and started by PID, or
``pg_terminate_backend`` on the verifier's own LISTEN connection.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from authstate.config import Settings
from authstate.errors import BusUnavailable, InvalidToken, StoreUnavailable, TokenRevoked
from authstate.state import AuthState
from tests.support import RedisServer

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 3.0


def verifier_settings(config: dict[str, Any]) -> Settings:
    return Settings.from_flat(
        store=config["store"], namespace=config["namespace"], bus=config.get("bus"),
        bus_fallback=config.get("fallback", "store"), access_token_ttl=600, leeway=5,
    )


async def answer(state: AuthState, token: str) -> str:
    try:
        await state.authenticate_bearer(token)
    except TokenRevoked:
        return "revoked"
    except BusUnavailable:
        return "unavailable"
    except StoreUnavailable:
        return "store_down"
    except InvalidToken as error:
        return f"invalid:{error.code}"
    return "ok"


async def serve(config: dict[str, Any]) -> None:
    """The verifier process: one command per stdin line, one answer per stdout line."""
    state = await AuthState.open(verifier_settings(config))
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command, _, arg = line.strip().partition(" ")
            if command == "check":
                reply = await answer(state, arg)
            elif command == "mode":
                reply = state.revocation.mode
            elif command == "resyncs":
                reply = str(state.revocation.resyncs)
            elif command == "watch":
                while await answer(state, arg) == "ok":
                    await asyncio.sleep(0.0005)
                reply = repr(time.monotonic())
            else:
                break
            print(reply, flush=True)
    finally:
        await state.close()


class Verifier:
    """The test's handle on one verifier process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def spawn(cls, config: dict[str, Any]) -> Verifier:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.test_push_processes", json.dumps(config),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )
        verifier = cls(proc)
        assert await verifier.read(20) == "ready"
        return verifier

    async def read(self, timeout: float = 5) -> str:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        return line.decode().strip()

    async def ask(self, command: str, timeout: float = 5) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.read(timeout)

    async def until(self, command: str, expected: str, deadline: float = DEADLINE) -> float:
        """Ask until the answer is ``expected``; the seconds it took."""
        start = time.monotonic()
        while (got := await self.ask(command)) != expected:
            if time.monotonic() - start > deadline:
                raise AssertionError(f"{command!r} still answers {got!r}, not {expected!r}")
            await asyncio.sleep(0.01)
        return time.monotonic() - start

    async def stop(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


Spawner = Callable[..., Awaitable[Verifier]]


@pytest.fixture
async def spawn() -> AsyncIterator[Spawner]:
    running: list[Verifier] = []

    async def start(**config: Any) -> Verifier:
        verifier = await Verifier.spawn(config)
        running.append(verifier)
        return verifier

    yield start
    await asyncio.gather(*(v.stop() for v in running))


@pytest.fixture
async def issuer_for() -> AsyncIterator[Callable[..., Awaitable[AuthState]]]:
    opened: list[AuthState] = []

    async def open_state(**config: Any) -> AuthState:
        state = await AuthState.open(verifier_settings(config))
        opened.append(state)
        return state

    yield open_state
    for state in opened:
        drop = getattr(state.store, "drop_namespace", None)
        if drop is not None:
            await drop()
        await state.close()


def fresh() -> str:
    return "p" + uuid.uuid4().hex[:12]


@pytest.mark.parametrize("engine", ["redis", "postgres"])
async def test_revocation_reaches_other_processes(
    engine: str, spawn: Spawner, issuer_for: Callable[..., Awaitable[AuthState]]
) -> None:
    from tests.conftest import require_service

    config = {"store": require_service(engine), "namespace": fresh()}
    issuer = await issuer_for(**config)
    assert issuer.revocation.mode == "push"
    verifiers = await asyncio.gather(spawn(**config), spawn(**config))
    session_id, session = await issuer.sessions.create("alice")
    token, _ = await issuer.issue_for_session(session)
    _, other_session = await issuer.sessions.create("alice")
    other, _ = await issuer.issue_for_session(other_session)
    for v in verifiers:
        assert await v.ask("mode") == "push"
        assert await v.ask(f"check {token}") == "ok"
    await issuer.sessions.revoke(session_id)
    for v in verifiers:
        await v.until(f"check {token}", "revoked")
        assert await v.ask(f"check {other}") == "ok"
    jwt, _ = await issuer.issue_for_session(other_session)
    await issuer.revoke_token(jwt)
    await issuer.revoke_user("bob")
    for v in verifiers:
        await v.until(f"check {jwt}", "revoked")
        assert await v.ask(f"check {other}") == "ok"


async def test_verifier_losing_its_redis_bus(
    spawn: Spawner, issuer_for: Callable[..., Awaitable[AuthState]], redis_server: RedisServer
) -> None:
    from tests.conftest import require_service

    server = redis_server
    config = {"store": require_service("redis"), "namespace": fresh(), "bus": server.url}
    issuer = await issuer_for(**config)
    lenient, strict = await asyncio.gather(
        spawn(**config, fallback="store"), spawn(**config, fallback="reject")
    )
    _, session = await issuer.sessions.create("alice")
    doomed, _ = await issuer.issue_for_session(session)
    fine, _ = await issuer.issue_for_session(session)
    for v in (lenient, strict):
        assert await v.ask("mode") == "push"
        assert await v.ask(f"check {doomed}") == "ok"

    server.stop()
    await lenient.until("mode", "store")
    await strict.until("mode", "reject")
    await issuer.revoke_token(doomed)  # stored; the publish is lost
    assert await lenient.ask(f"check {doomed}") == "revoked"
    assert await lenient.ask(f"check {fine}") == "ok"
    assert await strict.ask(f"check {doomed}") == "unavailable"
    assert await strict.ask(f"check {fine}") == "unavailable"

    server.start()
    for v in (lenient, strict):
        await v.until("mode", "push", deadline=6)
        assert await v.ask(f"check {doomed}") == "revoked"
        assert await v.ask(f"check {fine}") == "ok"
        assert int(await v.ask("resyncs")) >= 2


async def test_verifier_losing_its_postgres_listener(
    spawn: Spawner, issuer_for: Callable[..., Awaitable[AuthState]]
) -> None:
    from tests.conftest import require_service

    url = require_service("postgres")
    config = {"store": url, "namespace": fresh(), "fallback": "reject"}
    issuer = await issuer_for(**config)
    verifier = await spawn(**config)
    _, session = await issuer.sessions.create("alice")
    doomed, _ = await issuer.issue_for_session(session)
    fine, _ = await issuer.issue_for_session(session)
    assert await verifier.ask(f"check {doomed}") == "ok"
    assert await verifier.ask("resyncs") == "1"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        cur = await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (f"authstate-bus-{config['namespace']}-listen",),
        )
        assert len(await cur.fetchall()) == 2  # the issuer's listener and the verifier's
    await issuer.revoke_token(doomed)
    await verifier.until(f"check {doomed}", "revoked")
    await verifier.until("mode", "push")
    assert int(await verifier.ask("resyncs")) >= 2
    assert await verifier.ask(f"check {fine}") == "ok"


if __name__ == "__main__":
    asyncio.run(serve(json.loads(sys.argv[1])))
