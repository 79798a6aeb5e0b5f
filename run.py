#!/usr/bin/env python3
"""Set up and run authstate with nothing but Python 3.11+ and git.

    python3 run.py serve [ARGS...]   create .venv, install authstate[server], start `authstate serve`
                                     in development mode (--dev, said on start; --no-dev to leave it)
    python3 run.py test [PYTEST ARGS...]   create .venv, install authstate[dev], run the tests
    python3 run.py lint              ruff and mypy --strict, as CI runs them

Each command does its own set-up and reinstalls only when pyproject.toml changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"


def ensure(extra: str) -> None:
    if sys.version_info < (3, 11):
        sys.exit("authstate needs Python 3.11 or newer")
    if not PYTHON.exists():
        print("creating .venv …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    spec = f".[{extra}]" if extra else "."
    fingerprint = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + spec.encode()).hexdigest()
    stamp = VENV / f".installed-{extra.replace(',', '-') or 'base'}"
    if stamp.exists() and stamp.read_text() == fingerprint:
        return
    print(f"installing authstate{spec[1:]} into .venv …", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", spec], check=True, cwd=ROOT)
    stamp.write_text(fingerprint)


def serve_extras(args: list[str]) -> str:
    """The extras `serve` needs: the service, plus the engine of a Redis or PostgreSQL
    store or bus named in the arguments or the environment (SQLite is in the core)."""
    named = " ".join([*args, os.environ.get("AUTHSTATE_STORE", ""), os.environ.get("AUTHSTATE_BUS", "")])
    extras = ["server"]
    if any(f"{scheme}://" in named for scheme in ("redis", "rediss", "unix")):
        extras.append("redis")
    if any(f"{scheme}://" in named for scheme in ("postgresql", "postgres")):
        extras.append("postgres")
    return ",".join(extras)


def dev_args(args: list[str]) -> list[str]:
    """`--dev` for a local try-out over plain HTTP, unless the command line or
    AUTHSTATE_DEV already decides: `authstate serve` itself defaults to production."""
    if "--dev" in args or "--no-dev" in args or "AUTHSTATE_DEV" in os.environ:
        return []
    print("run.py: starting `authstate serve --dev` (development mode: the session cookie "
          "goes without Secure and __Host- so it works over plain HTTP; pass --no-dev to "
          "serve as in production)", file=sys.stderr)
    return ["--dev"]


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("serve", "test", "lint"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "serve":
        ensure(serve_extras(rest))
        serve = [str(BIN / "authstate"), "serve", *dev_args(rest), *rest]
        return subprocess.call(serve, cwd=os.getcwd())
    ensure("dev")
    if command == "lint":
        ruff = subprocess.call([str(BIN / "ruff"), "check", "src", "tests", "benchmarks", "examples"], cwd=ROOT)
        mypy = subprocess.call([str(BIN / "mypy"), "--strict", "-p", "authstate"], cwd=ROOT)
        return ruff or mypy
    return subprocess.call([str(PYTHON), "-m", "pytest", *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
