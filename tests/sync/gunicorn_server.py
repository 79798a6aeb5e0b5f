"""A real gunicorn on a free 127.0.0.1 port, started and stopped by a test (not a test
module): its workers, threads and shutdown are the ones a deployment runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import free_port

START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
GRACEFUL = 10

WORKERS = {  # the two worker models that run sync code: processes, and threads in them
    "sync": ["-k", "sync", "-w", "2"],
    "gthread": ["-k", "gthread", "-w", "2", "--threads", "4"],
    "preload": ["-k", "gthread", "-w", "2", "--threads", "4", "--preload"],
}


@dataclass
class Gunicorn:
    url: str
    pid: int
    log: Path
    stopped_in: float | None = None
    exit_code: int | None = None

    def log_text(self) -> str:
        return self.log.read_text("utf-8", "replace")


@contextmanager
def gunicorn(
    target: str, *, chdir: Path, env: dict[str, str], log: Path, workers: str = "sync",
    ready_path: str = "/ping",
) -> Iterator[Gunicorn]:
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", *WORKERS[workers], "-b", f"127.0.0.1:{port}",
               "--chdir", str(chdir), "--graceful-timeout", str(GRACEFUL),
               "--log-level", "warning", target]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        server = Gunicorn(f"http://127.0.0.1:{port}", process.pid, log)
        try:
            _wait_ready(server, process, ready_path)
            yield server
        finally:
            started = time.monotonic()
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)  # graceful: workers finish and exit
            try:
                server.exit_code = process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                server.exit_code = process.wait(5)
            server.stopped_in = time.monotonic() - started


def _wait_ready(server: Gunicorn, process: subprocess.Popen[bytes], path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{server.log_text()}")
        try:
            if httpx.get(server.url + path, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not become ready:\n{server.log_text()}")
