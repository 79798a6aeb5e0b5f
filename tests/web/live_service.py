"""A real ``authstate serve`` in a subprocess on a free 127.0.0.1 port (not a test module).

Used by the tests that must see the service as a deployment does: over TCP, in another
process, with its own event loop (the browser test, the example apps). The store is a
SQLite file the test can also open in-process to seed users, clients and tokens.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from authstate.config import Settings
from authstate.state import AuthState

PASSWORD = "correct horse battery staple"
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def authstate_command() -> list[str]:
    script = Path(sys.executable).with_name("authstate")
    if script.exists():
        return [str(script)]
    found = shutil.which("authstate")
    return [found] if found else [sys.executable, "-m", "authstate.cli"]


def _serve_command(port: int) -> list[str]:
    # plain HTTP on localhost: development mode, asked for as run.py does
    return [*authstate_command(), "serve", "--dev", "--host", "127.0.0.1", "--port", str(port)]


@dataclass
class LiveService:
    url: str
    port: int
    store: str
    env: dict[str, str]
    log: Path

    def settings(self) -> Settings:
        return Settings.from_flat(store=self.store, issuer=self.url, dev=True,
                        password_time_cost=1, password_memory_kib=1024)

    def seed(self, action: Any) -> Any:
        """Run ``await action(state)`` on an AuthState over the service's store."""

        async def run() -> Any:
            state = await AuthState.open(self.settings())
            try:
                return await action(state)
            finally:
                await state.close()

        return asyncio.run(run())

    async def aseed(self, action: Any) -> Any:
        state = await AuthState.open(self.settings())
        try:
            return await action(state)
        finally:
            await state.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextmanager
def live_service(tmp_path: Path, **env_overrides: str) -> Iterator[LiveService]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = f"sqlite:///{tmp_path / 'authstate.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSTATE_")}
    env.update({
        "AUTHSTATE_STORE": store,
        "AUTHSTATE_ISSUER": url,
        "AUTHSTATE_DEV": "1",
        "AUTHSTATE_PASSWORD_TIME_COST": "1",
        "AUTHSTATE_PASSWORD_MEMORY_KIB": "1024",
        "AUTHSTATE_LOG_LEVEL": "WARNING",
        **env_overrides,
    })
    log = tmp_path / "serve.log"
    service = LiveService(url, port, store, env, log)
    with log.open("wb") as out:
        process = subprocess.Popen(
            _serve_command(port),
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        try:
            _wait_healthy(service, process)
            yield service
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _wait_healthy(service: LiveService, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"authstate serve exited with {process.returncode}:\n{service.log_tail()}"
            )
        try:
            if httpx.get(service.url + "/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"authstate serve did not become healthy:\n{service.log_tail()}")
