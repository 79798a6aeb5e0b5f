"""The core install is what the README promises: `pip install authstate` with no extras.

One fresh venv (module-scoped: built once, about a minute with pip's cache) holds
``pip install <this repository>``; every test below runs in it, through its own Python
and its own ``authstate`` command, so nothing from the development venv can leak in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from authstate.cli.bench import ALGORITHMS_DEFAULT
from authstate.extras import EXTRAS

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("fastapi", "starlette", "uvicorn", "jinja2", "redis", "hiredis", "psycopg",
           "psycopg-binary", "psycopg-pool", "python-multipart", "flask", "django",
           "djangorestframework", "gunicorn")

pytestmark = pytest.mark.slow


class CoreVenv:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.python = str(path / "bin" / "python")
        self.authstate = str(path / "bin" / "authstate")

    def run(self, *args: str, input: str | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSTATE_")}
        env["NO_COLOR"] = "1"
        env["COLUMNS"] = "200"
        return subprocess.run(list(args), capture_output=True, text=True, input=input,
                              cwd=cwd or self.path, env=env, timeout=120)

    def script(self, code: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.python, "-c", code)


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> CoreVenv:
    path = tmp_path_factory.mktemp("core-venv")
    venv.EnvBuilder(with_pip=True).create(path)
    env = CoreVenv(path)
    subprocess.run(
        [env.python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         str(ROOT)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    return env


def test_no_engine_or_framework_is_installed(core: CoreVenv) -> None:
    probe = core.script(
        "import json\nfrom importlib import metadata\nfrom importlib.util import find_spec\n"
        f"names = {ENGINES!r}\n"
        "installed = []\n"
        "for name in names:\n"
        "    try:\n        metadata.version(name)\n        installed.append(name)\n"
        "    except metadata.PackageNotFoundError:\n        pass\n"
        "modules = [m for m in ('fastapi', 'starlette', 'uvicorn', 'jinja2', 'redis',\n"
        "           'psycopg', 'psycopg_pool') if find_spec(m) is not None]\n"
        "print(json.dumps([installed, modules]))"
    )
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == [[], []]


def test_a_jwt_verifies_on_the_core_install(core: CoreVenv) -> None:
    probe = core.script(
        "from authstate import Verifier\n"
        "from authstate.clock import SystemClock\n"
        "from authstate.jwt import AccessTokens\n"
        "from authstate.keys import KeySet\n"
        "keys = KeySet.generate('ES256', now=SystemClock().now())\n"
        "tokens = AccessTokens(keys, issuer='https://i', audience='a', clock=SystemClock())\n"
        "token, claims = tokens.issue('alice')\n"
        "verifier = Verifier.from_jwks(keys.public_jwks(), issuer='https://i', audience='a')\n"
        "assert verifier.verify(token) == claims\n"
        "print(claims['sub'])"
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "alice"


def test_inspect_runs_on_the_core_install(core: CoreVenv, tmp_path: Path) -> None:
    assert core.run(core.authstate, "inspect", "--help").returncode == 0
    made = core.script(
        "import json, sys\n"
        "from authstate.clock import SystemClock\n"
        "from authstate.jwt import AccessTokens\n"
        "from authstate.keys import KeySet\n"
        "keys = KeySet.generate('EdDSA', now=SystemClock().now())\n"
        "tokens = AccessTokens(keys, issuer='https://i', audience='a', clock=SystemClock())\n"
        f"open({str(tmp_path / 'jwks.json')!r}, 'w').write(json.dumps(keys.public_jwks()))\n"
        "print(tokens.issue('bob')[0])"
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    shown = core.run(core.authstate, "inspect", token, "--jwks", str(tmp_path / "jwks.json"),
                     "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    report = json.loads(shown.stdout)
    assert report["claims"]["sub"] == "bob"
    tampered = core.run(core.authstate, "inspect", token[:-2] + ("AA" if token[-2:] != "AA"
                        else "BB"), "--jwks", str(tmp_path / "jwks.json"))
    assert tampered.returncode == 1


def test_the_sqlite_store_and_its_commands_work(core: CoreVenv, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'core.db'}"
    probe = core.script(
        "import asyncio\nfrom authstate import open_store\n"
        "async def main():\n"
        f"    store = await open_store({url!r})\n"
        "    await store.put('session', 'k', {'v': 1})\n"
        "    record = await store.get('session', 'k')\n"
        "    await store.close()\n"
        "    print(record.value)\n"
        "asyncio.run(main())"
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "{'v': 1}"
    added = core.run(core.authstate, "users", "add", "carol@example.com", "--password-stdin",
                     "--store", url, input="correct horse battery staple 1\n")
    assert added.returncode == 0, added.stdout + added.stderr
    listed = core.run(core.authstate, "users", "list", "--store", url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert "carol@example.com" in listed.stdout


@pytest.mark.parametrize(("url", "extra"), [
    ("redis://127.0.0.1:6379/0", "redis"),
    ("postgresql://postgres@127.0.0.1:5432/test", "postgres"),
])
def test_an_engine_store_without_its_extra_names_the_extra(
    core: CoreVenv, url: str, extra: str
) -> None:
    probe = core.script(
        "import asyncio\nfrom authstate import open_store\nfrom authstate.errors import "
        "MissingDependencyError\n"
        "try:\n"
        f"    asyncio.run(open_store({url!r}))\n"
        "except MissingDependencyError as error:\n"
        "    print(error.code, error.extra, error.message)\n"
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split(" ", 2)[:2] == ["missing_dependency", extra]
    assert f"pip install 'authstate[{extra}]'" in probe.stdout
    listed = core.run(core.authstate, "sessions", "list", "--user", "u", "--store", url)
    assert listed.returncode == 1
    assert f"authstate[{extra}]" in listed.stderr
    assert "Traceback" not in listed.stderr


@pytest.mark.parametrize("command", [["serve"], ["bench", "--quick"]])
def test_serving_without_the_server_extra_names_the_extra(
    core: CoreVenv, command: list[str], tmp_path: Path
) -> None:
    result = core.run(core.authstate, *command, cwd=tmp_path)
    assert result.returncode == 1
    assert "pip install 'authstate[server]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "authstate.db").exists()  # refused before touching a store


def test_the_service_module_refuses_with_the_extra_named(core: CoreVenv) -> None:
    probe = core.script(
        "from authstate.errors import MissingDependencyError\n"
        "try:\n    import authstate.web.app\n"
        "except MissingDependencyError as error:\n    print(error.extra)\n"
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "server"


def test_sync_code_and_wsgi_run_on_the_core_install(core: CoreVenv, tmp_path: Path) -> None:
    """``authstate.sync`` and ``authstate.wsgi`` need nothing beyond the core (no anyio, no
    framework): a flow, a bearer check and a WSGI request, on SQLite."""
    probe = core.script(
        "import io, json\n"
        "from authstate import Settings\n"
        "from authstate.authn import BearerJWT\n"
        "from authstate.sync import SyncAuthState\n"
        "from authstate.wsgi import AuthMiddleware\n"
        f"s = Settings(store='sqlite:///{tmp_path / 'core.db'}', issuer='http://127.0.0.1:9',\n"
        "             dev=True, password_time_cost=1, password_memory_kib=1024)\n"
        "auth = SyncAuthState(s)\n"
        "auth.add_user('core@example.com', 'correct horse battery staple', via='test')\n"
        "login = auth.login('core@example.com', 'correct horse battery staple', ip=None,\n"
        "                   user_agent=None)\n"
        "token, _ = auth.issue_for_session(login.session)\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [environ['authstate.identity'].user_id.encode()]\n"
        "wrapped = AuthMiddleware(app, authenticators=lambda: [BearerJWT(auth.state)])\n"
        "body = wrapped({'REQUEST_METHOD': 'GET', 'HTTP_AUTHORIZATION': 'Bearer ' + token,\n"
        "                'wsgi.input': io.BytesIO()}, lambda status, headers: None)\n"
        "print(json.dumps([b''.join(body).decode() == login.user.id,\n"
        "                  auth.authenticate_bearer(token).user_id == login.user.id]))\n"
    )
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == [True, True]


@pytest.mark.parametrize(("module", "extra"), [
    ("authstate.flask", "flask"), ("authstate.django.middleware", "django"),
    ("authstate.django.drf", "django"),
])
def test_the_framework_adapters_name_their_extra(core: CoreVenv, module: str, extra: str) -> None:
    probe = core.script(
        "from authstate.errors import MissingDependencyError\n"
        f"try:\n    import {module}\n"
        "except MissingDependencyError as error:\n    print(error.extra)\n"
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == extra


def test_the_extras_table_matches_pyproject() -> None:
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = declared["optional-dependencies"]
    assert set(EXTRAS) <= set(optional)
    assert optional["dev"][0] == "authstate[redis,postgres,server]"
    core = " ".join(declared["dependencies"])
    for engine in ("redis", "psycopg", "fastapi", "uvicorn", "jinja2"):
        assert engine not in core


def test_the_bench_default_algorithms_match_the_plan() -> None:
    from authstate.bench.plan import ALGORITHMS

    assert ",".join(ALGORITHMS) == ALGORITHMS_DEFAULT


def test_run_py_serve_installs_the_server_and_the_named_engine() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        import run
    finally:
        sys.path.remove(str(ROOT))
    assert run.serve_extras([]) == "server"
    assert run.serve_extras(["--store", "redis://h:6379/0"]) == "server,redis"
    assert run.serve_extras(["--store", "postgresql://h/db"]) == "server,postgres"
