"""Throwaway PostgreSQL clusters on loopback: one server, or a primary with a streaming
standby made from it (``pg_basebackup -R``) that can be promoted.

Each cluster is an ``initdb`` data directory in a temporary directory, started by
``pg_ctl`` on a free port (as the ``postgres`` user when we are root, since PostgreSQL
refuses to run as root) and stopped with ``-m immediate``: the shared server is never
touched. Used by the fixtures of ``test_sql_postgres.py``, ``test_postgres_multihost.py``
and ``tests/web/test_store_outage.py``, and by ``benchmarks/failover.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import psycopg

from tests.support import free_port

REPLAY_TIMEOUT = 20.0  # seconds for a standby to replay what the primary wrote


def pg_bin() -> Path | None:
    """The directory of ``initdb``/``pg_ctl``: on the PATH, else Debian's newest."""
    initdb = shutil.which("initdb")
    if initdb is None:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        initdb = str(versions[-1]) if versions else None
    return Path(initdb).resolve().parent if initdb else None


class Cluster:
    """A throwaway PostgreSQL cluster, started and stopped by ``pg_ctl`` on its own port."""

    def __init__(self, root: Path, bin_dir: Path, port: int) -> None:
        self.root, self.bin, self.port = root, bin_dir, port
        self.data = root / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["su", "postgres", "-s", "/bin/sh", "-c", subprocess.list2cmdline(command)]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.root} -c fsync=off"
        )
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "30",
                 "-o", options, "start")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")


class Pair:
    """A primary and a streaming standby made from it, each a ``Cluster``."""

    def __init__(self, root: Path, bin_dir: Path) -> None:
        self.primary = Cluster(root / "a", bin_dir, free_port())
        self.standby = Cluster(root / "b", bin_dir, free_port())

    def url(self) -> str:
        """The standby first: target_session_attrs=read-write must skip it."""
        return (
            f"postgresql://postgres@127.0.0.1:{self.standby.port},127.0.0.1:{self.primary.port}"
            "/postgres?target_session_attrs=read-write"
        )

    def start(self) -> None:
        for c in (self.primary, self.standby):
            c.root.mkdir()
            if os.geteuid() == 0:
                shutil.chown(c.root, "postgres")
        self.primary.init()
        self.primary.start()
        self.standby.run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres",
            "-D", str(self.standby.data), "-R", "-X", "stream", "--no-sync",
        )
        self.standby.start()

    def promote(self) -> None:
        """``pg_ctl promote`` on the standby, waiting until it accepts writes."""
        self.standby.run("pg_ctl", "-D", str(self.standby.data), "-w", "-t", "30", "promote")

    def stop(self) -> None:
        for c in (self.primary, self.standby):
            with contextlib.suppress(subprocess.SubprocessError):
                c.stop()

    async def wait_replayed(self) -> None:
        """Bounded wait until the standby replayed everything the primary wrote."""
        async with await psycopg.AsyncConnection.connect(self.primary.url, autocommit=True) as p:
            lsn = (await (await p.execute("SELECT pg_current_wal_lsn()::text")).fetchone() or [""])[0]
        async with await psycopg.AsyncConnection.connect(self.standby.url, autocommit=True) as s:
            deadline = time.monotonic() + REPLAY_TIMEOUT
            while True:
                cur = await s.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)
                )
                row = await cur.fetchone()
                if row and row[0]:
                    return
                assert time.monotonic() < deadline, "the standby did not catch up"
                await asyncio.sleep(0.1)
