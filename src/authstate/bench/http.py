"""The HTTP side of the bench: the server process and a loopback load generator.

The server is a separate process (``python -m authstate.bench.server``) so that it has
its own interpreter and core, as a deployed service would; it is also the "second
verifier" for revocation delays. The load generator speaks HTTP/1.1 keep-alive over raw
asyncio streams: a Python HTTP client would cost more than the server it measures. It
only ever connects to 127.0.0.1, for a bounded time and a bounded number of connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from authstate.bench.models import ModelSpec

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
MAX_CONNECTIONS = 64
HELLO_LIMIT = 16 * 1024 * 1024  # the server's first line carries every spare credential


class ServerFailed(RuntimeError):
    """The bench server did not start or answered nonsense; carries its stderr tail."""


@dataclass(frozen=True, slots=True)
class Load:
    """What one burst of loopback load measured."""

    latencies_ns: list[int]
    ok: int
    errors: int
    elapsed: float

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0


def request_bytes(path: str, port: int, header: str, value: str, method: str = "GET") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{header}: {value}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode("latin-1")


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def _connection(port: int, request: bytes, deadline: int, into: list[int]) -> tuple[int, int]:
    reader, writer = await asyncio.open_connection(HOST, port)
    ok = errors = 0
    try:
        while time.perf_counter_ns() < deadline:
            start = time.perf_counter_ns()
            writer.write(request)
            status = await read_response(reader)
            into.append(time.perf_counter_ns() - start)
            if status == 200:
                ok += 1
            else:
                errors += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return ok, errors


async def load(port: int, request: bytes, *, connections: int, seconds: float) -> Load:
    """Keep ``connections`` keep-alive connections busy for ``seconds``."""
    connections = max(1, min(connections, MAX_CONNECTIONS))
    latencies: list[int] = []
    begin = time.perf_counter()
    deadline = time.perf_counter_ns() + int(seconds * 1e9)
    results = await asyncio.gather(
        *(_connection(port, request, deadline, latencies) for _ in range(connections))
    )
    elapsed = time.perf_counter() - begin
    return Load(
        latencies, sum(r[0] for r in results), sum(r[1] for r in results), elapsed
    )


class BenchServer:
    """The server process: started with the model list, it mints its own credentials
    (``spares`` per model for revocation runs) and reports them with its port."""

    def __init__(
        self,
        specs: list[ModelSpec],
        *,
        namespace: str,
        algorithm: str,
        overrides: dict[str, Any],
        spares: int,
    ) -> None:
        self._spec = {
            "specs": [asdict(s) for s in specs],
            "namespace": namespace,
            "algorithm": algorithm,
            "overrides": overrides,
            "spares": spares,
        }
        self._process: asyncio.subprocess.Process | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self.port = 0
        self.credentials: dict[str, list[str]] = {}
        self.skipped: dict[str, str] = {}
        self.paths: dict[str, str] = {}
        self.service: dict[str, str] | None = None

    async def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "authstate.bench.server",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            limit=HELLO_LIMIT,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(self._spec).encode() + b"\n")
        await self._process.stdin.drain()
        self._process.stdin.close()
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b""
        if not line:
            await self.stop()
            raise ServerFailed(f"bench server did not start: {self.stderr_tail()}")
        hello = json.loads(line)
        self.port = int(hello["port"])
        self.credentials = hello["credentials"]
        self.skipped = hello["skipped"]
        self.paths = hello["paths"]
        self.service = hello["service"]

    def stderr_tail(self, limit: int = 2000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-limit:].strip()

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        self._stderr.close()


def scratch_dir() -> Path:
    """A private directory for the run's SQLite file, removed by the caller."""
    return Path(tempfile.mkdtemp(prefix="authstate-bench-"))
